"""The dashboard through Flask's test client: sign-in, CSRF, gallery filters, job, retry."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from flask.testing import FlaskClient

from service.db.types import utcnow
from service.jobs.records import get_job
from service.jobs.states import JobStatus
from service.jobs.submission import create_job
from service.ui.queries import PAGE_SIZE
from service.wiring import Container
from tests.support.app import TOKEN

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CARD = re.compile(r'data-job-id="([0-9a-f]+)" data-status="([a-z]+)"')


def _csrf(client: FlaskClient, path: str = "/ui/login") -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def _sign_in(client: FlaskClient) -> None:
    r = client.post("/ui/login", data={"token": TOKEN, "csrf_token": _csrf(client)})
    assert r.status_code == 302, r.get_data(as_text=True)


def _job(c: Container, prompt: str, **meta: str) -> str:
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint="modelslab/text2img",
        params={"model_id": "m", "prompt": prompt},
        metadata=dict(meta),
    )
    return job.id


def _fail(c: Container, job_id: str) -> None:
    with c.db.transaction() as s:
        job = get_job(s, job_id, for_update=True)
        job.status = JobStatus.FAILED
        job.error_code = "provider_failed"
        job.error_message = "the provider said no"


def _cards(client: FlaskClient, query: str = "") -> list[tuple[str, str]]:
    r = client.get(f"/ui/{query}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return CARD.findall(r.get_data(as_text=True))


def test_pages_need_a_sign_in_and_the_session_cookie_is_safe(client: FlaskClient) -> None:
    r = client.get("/ui/ops")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    bad = client.post("/ui/login", data={"token": "nope", "csrf_token": _csrf(client)})
    assert bad.status_code == 401 and "not valid" in bad.get_data(as_text=True)
    assert client.get("/ui/").status_code == 302

    r = client.post("/ui/login?next=/ui/ops", data={"token": TOKEN, "csrf_token": _csrf(client)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/ui/ops")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # served over plain http here
    assert TOKEN not in cookie
    page = client.get("/ui/ops").get_data(as_text=True)
    assert "Operations" in page and TOKEN not in page
    # Somewhere else is not a place to be sent after sign-in.
    r = client.post(
        "/ui/login?next=//evil.example/", data={"token": TOKEN, "csrf_token": _csrf(client)}
    )
    assert r.headers["Location"].endswith("/ui/")


def test_a_post_without_the_csrf_token_is_refused(
    client: FlaskClient, container: Container
) -> None:
    assert client.post("/ui/login", data={"token": TOKEN}).status_code == 400
    _sign_in(client)
    job_id = _job(container, "fox")
    _fail(container, job_id)
    r = client.post(f"/ui/jobs/{job_id}/retry", data={"csrf_token": "forged"})
    assert r.status_code == 400
    with container.db.transaction() as s:
        assert get_job(s, job_id).status is JobStatus.FAILED
    # With the page's own token it goes through.
    token = _csrf(client, f"/ui/jobs/{job_id}")
    r = client.post(f"/ui/jobs/{job_id}/retry", data={"csrf_token": token})
    assert r.status_code == 302
    with container.db.transaction() as s:
        assert get_job(s, job_id).status is JobStatus.QUEUED
    page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert "Retrying" in page


def test_gallery_filters_and_pages_newest_first(client: FlaskClient, container: Container) -> None:
    _sign_in(client)
    ids = [_job(container, f"a red fox number {i}") for i in range(PAGE_SIZE + 5)]
    cat = _job(container, "a sleeping cat", order="o-17")
    _fail(container, cat)

    # Newest first is id order (ids start with their creation time in ms).
    newest_first = sorted([*ids, cat], reverse=True)
    first = _cards(client)
    assert [i for i, _ in first] == newest_first[:PAGE_SIZE]
    page = client.get("/ui/").get_data(as_text=True)
    older = re.search(r'href="(/ui/\?cursor=[0-9a-f]+)" rel="next"', page)
    assert older
    second = _cards(client, older.group(1).removeprefix("/ui/"))
    assert [i for i, _ in second] == newest_first[PAGE_SIZE:]

    assert _cards(client, "?status=failed") == [(cat, "failed")]
    assert [i for i, _ in _cards(client, "?q=CAT")] == [cat]  # prompt, any case
    assert [i for i, _ in _cards(client, "?q=o-17")] == [cat]  # metadata
    assert _cards(client, "?q=100%25") == []  # a literal %, not a wildcard
    assert _cards(client, "?endpoint=aimlapi/images/generations") == []
    today = utcnow().date()
    assert len(_cards(client, f"?from={today}&to={today}")) == PAGE_SIZE
    assert _cards(client, f"?to={today - timedelta(days=1)}") == []
    assert client.get("/ui/?status=lost").status_code == 400
    assert client.get("/ui/?from=yesterday").status_code == 400


def test_job_page_and_operations(client: FlaskClient, container: Container) -> None:
    _sign_in(client)
    job_id = _job(container, "a lighthouse", order="o-9")
    page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert "a lighthouse" in page and "o-9" in page and "created" in page
    assert "Retry" not in page  # only a failed job offers it
    assert client.get("/ui/jobs/0000nope").status_code == 404
    ops = client.get("/ui/ops").get_data(as_text=True)
    assert re.search(r'<b id="queued">1</b>', ops)  # its submit task
    assert "queued</a></td><td>1<" in ops
    _fail(container, job_id)
    ops = client.get("/ui/ops").get_data(as_text=True)
    assert "the provider said no" in ops


def test_the_cookie_is_secure_when_served_over_https(tmp_path: Path) -> None:
    from service.app import create_app
    from service.db.migrate import upgrade
    from service.wiring import build
    from tests.support.app import make_settings

    c = build(
        make_settings(
            f"sqlite:///{tmp_path / 'g.db'}", tmp_path, public_url="https://vault.example.com"
        )
    )
    upgrade(c.db.engine)
    try:
        client = create_app(container=c).test_client()
        https = "https://vault.example.com"
        page = client.get("/ui/login", base_url=https)
        assert "; Secure" in page.headers["Set-Cookie"]
        csrf = CSRF.search(page.get_data(as_text=True))
        assert csrf
        r = client.post(
            "/ui/login", data={"token": TOKEN, "csrf_token": csrf.group(1)}, base_url=https
        )
        assert r.status_code == 302 and "; Secure" in r.headers["Set-Cookie"]
        assert client.get("/ui/ops", base_url=https).status_code == 200
    finally:
        c.close()


def test_gallery_pages_are_read_off_an_index_not_sorted(tmp_path: Path) -> None:
    """No filter makes SQLite sort the matching rows: page N costs what page 1 costs."""
    from datetime import date

    from sqlalchemy import select, text

    from service.db.migrate import upgrade
    from service.db.models import Job
    from service.ui.queries import Filters
    from service.wiring import build
    from tests.support.app import make_settings

    c = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path))
    upgrade(c.db.engine)
    try:
        cases = {
            Filters(): "sqlite_autoindex_jobs_1",
            Filters(status=JobStatus.FAILED): "ix_jobs_status_id",
            Filters(endpoint="modelslab/text2img"): "ix_jobs_endpoint_id",
            Filters(status=JobStatus.FAILED, since=date(2026, 1, 1)): "ix_jobs_status_id",
            Filters(q="fox"): "sqlite_autoindex_jobs_1",
        }
        for filters, index in cases.items():
            stmt = select(Job).where(*filters.where(), Job.id < "f").order_by(Job.id.desc())
            sql = stmt.limit(49).compile(c.db.engine, compile_kwargs={"literal_binds": True})
            with c.db.engine.connect() as conn:
                plan = " | ".join(r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, (filters, plan)
    finally:
        c.close()


def test_removing_a_token_signs_its_sessions_out(tmp_path: Path) -> None:
    from service.app import create_app
    from service.db.migrate import upgrade
    from service.wiring import build
    from tests.support.app import make_settings

    url = f"sqlite:///{tmp_path / 'g.db'}"
    before = build(make_settings(url, tmp_path, api_tokens=(TOKEN, "retired-token")))
    after = build(make_settings(url, tmp_path, api_tokens=(TOKEN,)))
    upgrade(before.db.engine)
    try:
        old = create_app(container=before).test_client()
        r = old.post("/ui/login", data={"token": "retired-token", "csrf_token": _csrf(old)})
        assert r.status_code == 302 and old.get("/ui/").status_code == 200
        cookie = old.get_cookie("genvault_session", path="/ui")
        assert cookie is not None and "retired-token" not in cookie.value
        new = create_app(container=after).test_client()
        new.set_cookie("genvault_session", cookie.value, path="/ui")
        assert new.get("/ui/").status_code == 302  # back to the sign-in page
    finally:
        before.close()
        after.close()
