"""The dashboard through Flask's test client: sign-in, CSRF, gallery filters, job, retry."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from service.archive import layout
from service.db.models import DeliveryAttempt, Event, EventDelivery, EventEndpoint
from service.db.types import utcnow
from service.events import endpoints
from service.jobs import records
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
            Filters(): "ix_jobs_project_id",
            Filters(status=JobStatus.FAILED): "ix_jobs_project_status_id",
            Filters(endpoint="modelslab/text2img"): "ix_jobs_project_endpoint_id",
            Filters(status=JobStatus.FAILED, since=date(2026, 1, 1)): "ix_jobs_project_status_id",
            # q reads the FTS5 table (migration 0009) for the matching ids, then the page
            # in id order off the primary key.
            Filters(q="fox"): "ix_jobs_project_id",
        }
        for filters, index in cases.items():
            where = filters.where("sqlite")
            stmt = select(Job).where(*where, Job.id < "f").order_by(Job.id.desc())
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


def _archive(c: Container, job_id: str, *, signed: bool = True) -> str:
    """Archive a job the way the pipeline ends one: manifest, signature, recorded digest.

    ``signed=False`` makes a job from before manifests were signed (no .sig, no digest).
    """
    with c.db.transaction() as s:
        job = get_job(s, job_id, for_update=True)
        assert records.advance(job, JobStatus.PROCESSING)  # job.submitted
    with c.db.transaction() as s:
        job = get_job(s, job_id, for_update=True)
        key = layout.for_job(job).manifest_key()
        body = json.dumps({"job_id": job.id, "assets": []}).encode()
        meta = {"job-id": job.id}
        c.store.put_bytes(key, body, content_type="application/json", metadata=meta)
        if signed:
            sig = c.archiver.signer.sign(body)
            c.store.put_bytes(key + ".sig", sig, content_type="application/json", metadata=meta)
        assert records.advance(job, JobStatus.ARCHIVED)  # job.archived
        job.manifest_key = key
        job.manifest_sha256 = hashlib.sha256(body).hexdigest() if signed else None
        job.archived_at = utcnow()
    return key


def _store_path(c: Container, key: str) -> Path:
    # A file URI percent-encodes its path (an OCFL object's directory holds '%').
    return Path(unquote(urlparse(c.store.uri(key)).path))


def _signature(page: str) -> str:
    match = re.search(r'<dd id="signature" class="(ok|bad)">([^<]*)</dd>', page)
    assert match, page
    return f"{match.group(1)}: {match.group(2)}"


@pytest.mark.damages_archive
def test_job_page_shows_the_manifest_signature_status(
    client: FlaskClient, container: Container
) -> None:
    _sign_in(client)
    job_id = _job(container, "a signed lighthouse")
    key = _archive(container, job_id)
    page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert _signature(page) == "ok: valid"
    assert "matches the SHA-256 recorded when it was written" in page

    # Someone rewrites manifest.json in the store: the signature and the digest both say so.
    path = _store_path(container, key)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"[]", b'[{"key": "x"}]'))
    page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert _signature(page) == "bad: invalid: the signature does not match the manifest"
    assert "differs from the SHA-256 recorded when it was written" in page

    _store_path(container, key + ".sig").unlink()
    page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert _signature(page) == "bad: missing"

    old = _job(container, "archived before signing")
    _archive(container, old, signed=False)
    page = client.get(f"/ui/jobs/{old}").get_data(as_text=True)
    assert _signature(page) == "ok: not signed (archived before signing)"
    assert "no SHA-256 recorded" in page
    # Not archived: nothing to check, and the gallery never reads manifests.
    queued = client.get(f"/ui/jobs/{_job(container, 'not yet')}").get_data(as_text=True)
    assert 'id="signature"' not in queued and "Not archived yet." in queued


def _endpoint(c: Container, url: str, **changes: object) -> str:
    with c.db.transaction() as s:
        endpoint = endpoints.create(s, "default", url, None, None)
        for name, value in changes.items():
            setattr(endpoint, name, value)
        return endpoint.id


def _deliveries(c: Container, endpoint_id: str) -> dict[str, EventDelivery]:
    """The endpoint's deliveries by their event's type (the outbox made them)."""
    with c.db.transaction() as s:
        rows = s.execute(
            select(Event.type, EventDelivery)
            .join(EventDelivery, EventDelivery.event_id == Event.id)
            .where(EventDelivery.endpoint_id == endpoint_id)
        ).all()
    return {str(kind): delivery for kind, delivery in rows}


def _attempts(c: Container, delivery_id: int, status: str, *answers: int | str) -> None:
    """Record attempts (an HTTP status or an error) and the delivery's outcome."""
    with c.db.transaction() as s:
        for i, answer in enumerate(answers):
            s.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    at=utcnow() + timedelta(seconds=i + 1),
                    response_status=answer if isinstance(answer, int) else None,
                    error=answer if isinstance(answer, str) else None,
                    duration_ms=12,
                )
            )
        delivery = s.get(EventDelivery, delivery_id)
        assert delivery is not None
        delivery.status = status
        delivery.attempts = len(answers)
        delivery.next_attempt_at = None if status != "pending" else utcnow() + timedelta(hours=1)


def test_job_timeline_shows_events_and_their_deliveries(
    client: FlaskClient, container: Container
) -> None:
    _sign_in(client)
    crm = _endpoint(container, "https://crm.example.com/hooks")
    job_id = _job(container, "an evented fox")
    _archive(container, job_id)
    sent = _deliveries(container, crm)
    assert set(sent) == {"job.submitted", "job.archived"}
    _attempts(container, sent["job.submitted"].id, "failed", "connection refused", 500)
    _attempts(container, sent["job.archived"].id, "succeeded", 503, 204)

    page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    items = re.findall(r"<li[^>]*><time[^>]*>[^<]*</time> ([^<]*)</li>", page)
    url = "https://crm.example.com/hooks"
    assert items == [
        "created",
        "event job.submitted",
        "archived",
        "event job.archived",  # written as the archiving transaction commits
        f"job.submitted failed to reach {url} after 2 attempts (last: HTTP 500)",
        f"job.archived delivered to {url}, 2 attempts",
    ], items
    times = re.findall(r'<li[^>]*><time datetime="([^"]+)"', page)
    assert times == sorted(times)  # one time order for the job's steps and its events

    # A delivery not yet tried: pending, with when it goes out.
    late = _job(container, "later")
    _archive(container, late)
    page = client.get(f"/ui/jobs/{late}").get_data(as_text=True)
    assert f"job.archived to {url} pending, 0 attempts so far, next attempt " in page


def test_operations_show_endpoint_delivery_health(
    client: FlaskClient, container: Container
) -> None:
    _sign_in(client)
    assert "Event endpoints" not in client.get("/ui/ops").get_data(as_text=True)
    crm = _endpoint(container, "https://crm.example.com/hooks", description="the CRM")
    off = _endpoint(
        container, "https://gone.example.com/", enabled=False, disabled_reason="answered 410 Gone"
    )
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/genvault"
    sqs = _endpoint(container, "-", type="sqs", config={"queue_url": queue, "region": "eu-west-1"})
    for prompt in ("one", "two", "three"):
        _archive(container, _job(container, prompt))
    with container.db.transaction() as s:
        rows = list(
            s.execute(
                select(EventDelivery)
                .where(EventDelivery.endpoint_id == crm)
                .order_by(EventDelivery.id)
            ).scalars()
        )
        s.get(EventEndpoint, crm).last_success_at = utcnow()  # type: ignore[union-attr]
    assert len(rows) == 6  # submitted and archived for each job
    _attempts(container, rows[0].id, "succeeded", 204)
    _attempts(container, rows[1].id, "succeeded", 204)
    _attempts(container, rows[2].id, "failed", "timed out")
    # One delivery from two days ago: outside the window, still the oldest pending.
    with container.db.transaction() as s:
        old = s.get(EventDelivery, rows[3].id)
        assert old is not None
        old.created_at = utcnow() - timedelta(days=2)

    page = client.get("/ui/ops").get_data(as_text=True)
    assert "Event endpoints" in page
    row = re.search(rf'<tr data-endpoint-id="{crm}">(.*?)</tr>', page, re.S)
    assert row, page
    cells = row.group(1)
    assert "https://crm.example.com/hooks" in cells and "the CRM" in cells and "enabled" in cells
    assert '<td class="endpoint-type">http</td>' in cells
    queued = re.search(rf'<tr data-endpoint-id="{sqs}">(.*?)</tr>', page, re.S)
    assert queued and f"sqs:{queue}" in queued.group(1)
    assert '<td class="endpoint-type">sqs</td>' in queued.group(1)
    assert '<td class="n-succeeded">2</td>' in cells
    assert '<td class="n-failed">1</td>' in cells
    assert '<td class="n-pending">2</td>' in cells  # the two-day-old one is outside the window
    assert re.search(r"<td>\d+s ago</td>\s*<td>2d ago</td>", cells), cells
    disabled = re.search(rf'<tr data-endpoint-id="{off}">(.*?)</tr>', page, re.S)
    assert disabled
    assert "disabled" in disabled.group(1) and "answered 410 Gone" in disabled.group(1)
    assert "<td>never</td>" in disabled.group(1) and "<td>none</td>" in disabled.group(1)


def test_endpoint_health_is_read_off_an_index(tmp_path: Path) -> None:
    """The health panel reads the window and the backlog by (status, created_at), no scan."""
    from sqlalchemy import func, text

    from service.db.migrate import upgrade
    from service.wiring import build
    from tests.support.app import make_settings

    c = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path))
    upgrade(c.db.engine)
    try:
        statements = [
            select(EventDelivery.endpoint_id, EventDelivery.status, func.count())
            .where(
                EventDelivery.status.in_(["pending", "succeeded", "failed"]),
                EventDelivery.created_at >= utcnow() - timedelta(hours=24),
            )
            .group_by(EventDelivery.endpoint_id, EventDelivery.status),
            select(EventDelivery.endpoint_id, func.min(EventDelivery.created_at))
            .where(EventDelivery.status == "pending")
            .group_by(EventDelivery.endpoint_id),
        ]
        for stmt in statements:
            sql = stmt.compile(c.db.engine, compile_kwargs={"literal_binds": True})
            with c.db.engine.connect() as conn:
                plan = " | ".join(r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "USING INDEX ix_event_deliveries_status" in plan, plan
    finally:
        c.close()
