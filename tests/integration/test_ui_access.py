"""The dashboard's access rules through Flask's test client: the same scopes as the API.

Who may open the admin pages (keys, projects, audit log) and what they do; the token form,
audited, and off when an identity provider is configured; the Retry button and its POST.
The OpenID Connect sign-in itself runs against a real provider in tests/e2e/test_oidc_signin.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from service.access import permissions, store
from service.access.audit_log import AuditAction, Origin, record
from service.access.principal import Principal
from service.access.scopes import ROLE_SCOPES, Role, Scope
from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import AuditEntry, Project
from service.db.types import utcnow
from service.jobs.records import get_job
from service.jobs.states import JobStatus
from service.jobs.submission import create_job
from service.wiring import Container, build
from tests.support.app import TOKEN, make_settings

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_KEY = re.compile(r'<code id="key">(gvk_[^<]+)</code>')
OIDC = {
    "oidc_issuer": "http://127.0.0.1:9",  # nothing listens there
    "oidc_client_id": "genvault",
    "oidc_client_secret": "test-client-secret",
    "oidc_role_map": "genvault-admins:admin",
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Container]:
    c = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


def _client(c: Container) -> FlaskClient:
    return create_app(container=c).test_client()


def _csrf(client: FlaskClient, path: str = "/ui/login") -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def _key(c: Container, name: str, project: str | None, scopes: frozenset[Scope]) -> tuple[str, str]:
    """A key straight in the database (the API's own tests cover issuing): (id, key)."""
    with c.db.transaction() as s:
        if project is not None and s.get(Project, project) is None:
            # Set up directly: the project.create audit rows the tests count come from pages.
            s.add(Project(slug=project, name=project.title(), created_at=utcnow()))
    with c.db.transaction() as s:
        issued = store.create_key(
            s,
            c.settings.secret,
            name=name,
            project=project,
            scopes=scopes,
            created_by="test",
            lifetime=timedelta(days=7),
        )
        return issued.row.id, issued.key


def _signed_in(c: Container, credential: str) -> FlaskClient:
    client = _client(c)
    r = client.post("/ui/login", data={"token": credential, "csrf_token": _csrf(client)})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


def _audit(c: Container, action: AuditAction) -> list[AuditEntry]:
    with c.db.transaction() as s:
        return list(
            s.execute(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            ).scalars()
        )


def _failed_job(c: Container) -> str:
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint="modelslab/text2img",
        params={"model_id": "m", "prompt": "a fox"},
        metadata={},
    )
    with c.db.transaction() as s:
        row = get_job(s, job.id, for_update=True)
        row.status = JobStatus.FAILED
        row.error_code = "provider_failed"
        row.error_message = "the provider said no"
    return job.id


NAV = {"Keys": "/ui/keys", "Projects": "/ui/projects", "Audit log": "/ui/audit-log"}


def _nav(client: FlaskClient) -> set[str]:
    page = client.get("/ui/").get_data(as_text=True)
    return {label for label, href in NAV.items() if f'href="{href}"' in page}


def _statuses(client: FlaskClient) -> dict[str, int]:
    return {href: client.get(href).status_code for href in NAV.values()}


def test_each_admin_page_needs_its_scope_and_its_link_shows_only_then(stack: Container) -> None:
    viewer = _signed_in(stack, _key(stack, "v", "default", ROLE_SCOPES[Role.VIEWER])[1])
    assert _nav(viewer) == set()
    assert _statuses(viewer) == dict.fromkeys(NAV.values(), 403)
    assert "lacks the keys:write scope" in viewer.get("/ui/keys").get_data(as_text=True)

    # An admin of one project manages its keys and reads its log; projects span every one.
    alpha = _signed_in(stack, _key(stack, "a", "alpha", ROLE_SCOPES[Role.ADMIN])[1])
    assert _nav(alpha) == {"Keys", "Audit log"}
    assert _statuses(alpha) == {"/ui/keys": 200, "/ui/projects": 403, "/ui/audit-log": 200}
    assert alpha.get("/ui/keys?project=default").status_code == 404  # not a project it sees

    auditor = _signed_in(stack, _key(stack, "au", None, frozenset({Scope.AUDIT_READ}))[1])
    assert _nav(auditor) == {"Audit log"}
    assert _statuses(auditor) == {"/ui/keys": 403, "/ui/projects": 403, "/ui/audit-log": 200}

    admin = _signed_in(stack, TOKEN)  # GENVAULT_API_TOKENS: an admin of every project
    assert _nav(admin) == set(NAV)
    assert _statuses(admin) == dict.fromkeys(NAV.values(), 200)


def test_keys_page_lists_creates_shows_once_and_revokes(stack: Container) -> None:
    own_id, _ = _key(stack, "render script", "default", frozenset({Scope.JOBS_WRITE}))
    other_id, _ = _key(stack, "beta's", "beta", ROLE_SCOPES[Role.VIEWER])
    admin = _signed_in(stack, TOKEN)
    page = admin.get("/ui/keys").get_data(as_text=True)
    assert own_id in page and other_id in page  # every key, for an admin of every project
    page = admin.get("/ui/keys?project=beta").get_data(as_text=True)
    assert other_id in page and own_id not in page

    token = _csrf(admin, "/ui/keys")
    assert admin.post("/ui/keys", data={"name": "x", "role": "viewer"}).status_code == 400
    r = admin.post(
        "/ui/keys",
        data={
            "csrf_token": token,
            "name": "nightly export",
            "project": "default",
            "role": "viewer",
            "expires_in_days": "30",
        },
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    match = NEW_KEY.search(r.get_data(as_text=True))
    assert match, r.get_data(as_text=True)
    key = match.group(1)
    assert "no-store" in r.headers["Cache-Control"]
    api = _client(stack)
    bearer = {"Authorization": f"Bearer {key}"}
    assert api.get("/v1/jobs", headers=bearer).status_code == 200
    assert api.post("/v1/jobs", headers=bearer, json={}).status_code == 403  # a viewer
    assert key not in admin.get("/ui/keys").get_data(as_text=True)  # shown that once only

    (created,) = _audit(stack, AuditAction.KEY_CREATE)
    assert created.actor == "token:#1 (GENVAULT_API_TOKENS)"
    assert created.project == "default"
    assert created.changes is not None and created.changes["scopes"] == ["events:read", "jobs:read"]
    assert key not in str(created.changes)
    new_id = created.target
    assert new_id is not None

    r = admin.post(f"/ui/keys/{new_id}/revoke", data={"csrf_token": token})
    assert r.status_code == 302
    assert api.get("/v1/jobs", headers=bearer).status_code == 401
    assert "Revoked the key nightly export" in admin.get("/ui/keys").get_data(as_text=True)
    (revoked,) = _audit(stack, AuditAction.KEY_REVOKE)
    assert (revoked.target, revoked.project) == (new_id, "default")

    # Form mistakes come back on the page, with what was typed.
    r = admin.post(
        "/ui/keys",
        data={"csrf_token": token, "name": "both", "role": "viewer", "scopes": ["jobs:read"]},
    )
    assert r.status_code == 400
    assert "give either scopes or a role" in r.get_data(as_text=True)
    assert (
        admin.post(
            "/ui/keys",
            data={"csrf_token": token, "name": "long", "role": "viewer", "expires_in_days": "9999"},
        ).status_code
        == 400
    )
    assert len(_audit(stack, AuditAction.KEY_CREATE)) == 1


def test_a_key_manager_of_one_project_is_bounded_by_its_scopes(stack: Container) -> None:
    scopes = frozenset({Scope.KEYS_WRITE, Scope.JOBS_READ})
    _, manager_key = _key(stack, "manager", "alpha", scopes)
    beta_id, _ = _key(stack, "beta key", "beta", ROLE_SCOPES[Role.VIEWER])
    manager = _signed_in(stack, manager_key)
    token = _csrf(manager, "/ui/keys")

    page = manager.get("/ui/keys").get_data(as_text=True)
    assert 'value="alpha"' in page and 'value="*"' not in page and beta_id not in page
    more = manager.post(
        "/ui/keys", data={"csrf_token": token, "name": "bigger", "role": "operator"}
    )
    assert more.status_code == 403
    assert "cannot hold more than its creator" in more.get_data(as_text=True)
    every = manager.post(
        "/ui/keys",
        data={"csrf_token": token, "name": "all", "project": "*", "scopes": ["jobs:read"]},
    )
    assert every.status_code == 403
    assert manager.post(f"/ui/keys/{beta_id}/revoke", data={"csrf_token": token}).status_code == 404
    ok = manager.post(
        "/ui/keys", data={"csrf_token": token, "name": "reader", "scopes": ["jobs:read"]}
    )
    assert ok.status_code == 200 and NEW_KEY.search(ok.get_data(as_text=True))
    (created,) = _audit(stack, AuditAction.KEY_CREATE)
    assert created.project == "alpha"
    assert _audit(stack, AuditAction.KEY_REVOKE) == []


def test_projects_page_creates_projects_for_admins_of_every_project(stack: Container) -> None:
    admin = _signed_in(stack, TOKEN)
    token = _csrf(admin, "/ui/projects")
    r = admin.post("/ui/projects", data={"csrf_token": token, "slug": "mobile-app", "name": "App"})
    assert r.status_code == 302
    page = admin.get("/ui/projects").get_data(as_text=True)
    assert 'data-project="mobile-app"' in page and 'data-project="default"' in page
    assert "Created the project mobile-app" in page
    bad = admin.post("/ui/projects", data={"csrf_token": token, "slug": "No Spaces", "name": "x"})
    assert bad.status_code == 400
    again = admin.post(
        "/ui/projects", data={"csrf_token": token, "slug": "mobile-app", "name": "y"}
    )
    assert again.status_code == 409 and "exists already" in again.get_data(as_text=True)
    (row,) = _audit(stack, AuditAction.PROJECT_CREATE)
    assert (row.target, row.project, row.changes) == ("mobile-app", "mobile-app", {"name": "App"})

    alpha = _signed_in(stack, _key(stack, "a", "alpha", ROLE_SCOPES[Role.ADMIN])[1])
    refused = alpha.post(
        "/ui/projects", data={"csrf_token": _csrf(alpha, "/ui/"), "slug": "x", "name": "x"}
    )
    assert refused.status_code == 403
    assert len(_audit(stack, AuditAction.PROJECT_CREATE)) == 1


def test_audit_log_page_filters_pages_and_keeps_to_the_readers_projects(
    stack: Container,
) -> None:
    with stack.db.transaction() as s:
        for i in range(60):
            record(
                s,
                AuditAction.JOB_RETRY,
                actor=f"key:k{i % 2} (script)",
                project="alpha" if i % 2 else "default",
                target=f"job-{i}",
                origin=Origin("10.0.0.1"),
            )
    admin = _signed_in(stack, TOKEN)
    first = admin.get("/ui/audit-log?action=job.retry").get_data(as_text=True)
    targets = re.findall(r"<code>(job-\d+)</code>", first)
    assert targets == [f"job-{i}" for i in range(59, 9, -1)]  # newest first, 50 a page
    older = re.search(r'href="([^"]+)" id="older"', first)
    assert older
    second = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r"<code>(job-\d+)</code>", second) == [f"job-{i}" for i in range(9, -1, -1)]
    assert 'id="older"' not in second

    mine = admin.get("/ui/audit-log?actor=key:k1").get_data(as_text=True)
    assert len(re.findall(r"<code>job-\d+</code>", mine)) == 30
    assert admin.get("/ui/audit-log?action=nope").status_code == 400

    # A reader of one project sees its rows only, and no sign-in of anyone else.
    _, alpha_key = _key(stack, "alpha auditor", "alpha", frozenset({Scope.AUDIT_READ}))
    alpha = _signed_in(stack, alpha_key)
    page = alpha.get("/ui/audit-log").get_data(as_text=True)
    rows = re.findall(r'<tr data-action="([a-z.]+)"', page)
    assert rows and all(r in ("job.retry", "signin.success") for r in rows)
    seen = set(re.findall(r"<code>(job-\d+)</code>", page))
    assert seen and all(int(t.split("-")[1]) % 2 for t in seen)
    assert "token:#1" not in page


def test_token_sign_ins_are_audited_without_the_token(stack: Container) -> None:
    key_id, key = _key(stack, "ci", "alpha", ROLE_SCOPES[Role.VIEWER])
    client = _client(stack)
    bad = client.post("/ui/login", data={"token": "gvk_not-a-key", "csrf_token": _csrf(client)})
    assert bad.status_code == 401
    _signed_in(stack, key)

    (refused,) = _audit(stack, AuditAction.SIGNIN_REFUSED)
    assert (refused.actor, refused.outcome, refused.project) == ("anonymous", "refused", None)
    assert "gvk_not-a-key" not in str(refused.changes)
    (success,) = _audit(stack, AuditAction.SIGNIN_SUCCESS)
    assert success.actor == f"key:{key_id} (ci)"
    assert success.project == "alpha"
    assert key not in str(success.changes) and success.changes == {"via": "token form"}


def test_with_oidc_the_login_page_offers_the_provider_and_no_token_field(
    tmp_path: Path,
) -> None:
    c = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, **OIDC))
    upgrade(c.db.engine)
    try:
        page = _client(c).get("/ui/login?next=/ui/ops")
        text = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "Sign in with your company account" in text
        assert 'action="/ui/auth/login"' in text and 'value="/ui/ops"' in text
        assert 'name="token"' not in text
    finally:
        c.close()


def test_with_oidc_a_posted_token_opens_no_session(tmp_path: Path) -> None:
    # A form page to take a CSRF token from: the dashboard without OIDC, same secret key.
    plain = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path))
    upgrade(plain.db.engine)
    oidc = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, **OIDC))
    try:
        client = _client(plain)
        csrf = _csrf(client)
        client.application = create_app(container=oidc)  # same cookie jar, OIDC on
        r = client.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf})
        assert r.status_code == 403
        assert "Tokens are not accepted here" in r.get_data(as_text=True)
        assert client.get("/ui/").status_code == 302  # still signed out
        assert _audit(oidc, AuditAction.SIGNIN_SUCCESS) == []
    finally:
        plain.close()
        oidc.close()


def test_oidc_routes_exist_only_with_oidc_and_refuse_a_callback_not_started_here(
    stack: Container, tmp_path: Path
) -> None:
    assert _client(stack).get("/ui/auth/login").status_code == 404
    c = build(make_settings(f"sqlite:///{tmp_path / 'o.db'}", tmp_path, **OIDC))
    upgrade(c.db.engine)
    try:
        client = _client(c)
        forged = client.get("/ui/auth/callback?code=abc&state=forged")
        assert forged.status_code == 400
        assert "not started here" in forged.get_data(as_text=True)
        assert client.get("/ui/").status_code == 302
        (row,) = _audit(c, AuditAction.SIGNIN_REFUSED)
        assert row.actor == "anonymous" and row.changes == {
            "via": "oidc",
            "reason": "state mismatch",
        }
        # The provider is down: a page that says so, not a stack trace.
        down = client.get("/ui/auth/login")
        assert down.status_code == 502 and "could not be reached" in down.get_data(as_text=True)
    finally:
        c.close()


def test_the_retry_button_and_its_post_follow_the_jobs_retry_scope(stack: Container) -> None:
    job_id = _failed_job(stack)
    viewer = _signed_in(stack, _key(stack, "v", "default", ROLE_SCOPES[Role.VIEWER])[1])
    page = viewer.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert 'id="retry"' not in page
    token = CSRF.search(page)
    assert token
    r = viewer.post(f"/ui/jobs/{job_id}/retry", data={"csrf_token": token.group(1)})
    assert r.status_code == 403 and "jobs:retry" in r.get_data(as_text=True)
    with stack.db.transaction() as s:
        assert get_job(s, job_id).status is JobStatus.FAILED

    operator = _signed_in(stack, _key(stack, "o", "default", ROLE_SCOPES[Role.OPERATOR])[1])
    assert 'id="retry"' in operator.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    # An operator of another project does not even see the job.
    other = _signed_in(stack, _key(stack, "b", "beta", ROLE_SCOPES[Role.OPERATOR])[1])
    assert other.get(f"/ui/jobs/{job_id}").status_code == 404


def test_permissions_everywhere_is_not_somewhere() -> None:
    person = Principal(
        "user",
        "p@example.test",
        "P",
        {None: ROLE_SCOPES[Role.VIEWER], "alpha": ROLE_SCOPES[Role.ADMIN]},
    )
    assert permissions.can(person, Scope.KEYS_WRITE)
    assert not permissions.everywhere(person, Scope.KEYS_WRITE)
    assert permissions.everywhere(person, Scope.JOBS_READ)
    assert permissions.projects_with(person, Scope.AUDIT_READ) == {"alpha"}
    assert permissions.projects_with(person, Scope.JOBS_READ) is None
    assert not permissions.everywhere(None, Scope.JOBS_READ)


OPEN_PAGES = {"/ui/login", "/ui/auth/login", "/ui/auth/callback", "/ui/static/<path:filename>"}


def test_every_dashboard_page_but_the_sign_in_ones_needs_a_sign_in(tmp_path: Path) -> None:
    c = build(make_settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, **OIDC))
    upgrade(c.db.engine)
    try:
        client = _client(c)
        rules = [r for r in client.application.url_map.iter_rules() if r.rule.startswith("/ui")]
        assert {r.rule for r in rules} >= OPEN_PAGES
        for rule in rules:
            if rule.rule in OPEN_PAGES:
                continue
            path = re.sub(r"<[^>]+>", "x", rule.rule)
            if "GET" in (rule.methods or set()):
                r = client.get(path)
                assert r.status_code == 302, rule.rule
                assert r.headers["Location"].startswith("/ui/login"), rule.rule
            else:  # a change: refused before anything else without the session's CSRF token
                assert client.post(path).status_code == 400, rule.rule
    finally:
        c.close()
