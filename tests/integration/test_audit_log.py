"""The audit log and the rules of key creation, through Flask's test client, on both databases.

Each administrative action writes exactly one row, with the right actor and no secret; the
log reads back filtered and paged, only within the reader's projects; the database refuses
to change or delete a row; a key never holds more than its creator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint
from flask.testing import FlaskClient
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from service.api import auth
from service.api.openapi import Reply, documented, unscoped
from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import ApiKey, AuditEntry, Job
from service.db.types import utcnow
from service.events import outbox
from service.events.types import EventType
from service.jobs.states import JobStatus
from service.wiring import Container, build
from tests.support.app import TOKEN, make_settings

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LEGACY_ACTOR = "token:#1 (GENVAULT_API_TOKENS)"
TEXT2IMG = {"endpoint": "modelslab/text2img", "params": {"model_id": "flux", "prompt": "a fox"}}
HOOK = "http://127.0.0.1:9/hook"
MAX_DAYS = 30
NEW_ID = object()  # the audit row's target is the id of what the action created


@pytest.fixture
def app_and_container(database_url: str, tmp_path: Path) -> Iterator[tuple[FlaskClient, Container]]:
    settings = make_settings(
        database_url,
        tmp_path,
        events_allowed_networks="127.0.0.1/32",
        key_default_days=7,
        key_max_days=MAX_DAYS,
    )
    c = build(settings)
    upgrade(c.db.engine)
    try:
        yield create_app(container=c).test_client(), c
    finally:
        c.close()


@pytest.fixture
def client(app_and_container: tuple[FlaskClient, Container]) -> FlaskClient:
    return app_and_container[0]


@pytest.fixture
def container(app_and_container: tuple[FlaskClient, Container]) -> Container:
    return app_and_container[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def entries(c: Container, after: int = 0) -> list[dict[str, Any]]:
    """Audit rows with an id above ``after``, oldest first, as plain dicts."""
    with c.db.transaction() as s:
        rows = s.execute(
            select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id)
        ).scalars()
        return [
            {
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "project": r.project,
                "target": r.target,
                "outcome": r.outcome,
                "remote_addr": r.remote_addr,
                "request_id": r.request_id,
                "changes": r.changes,
            }
            for r in rows
        ]


def last_id(c: Container) -> int:
    found = entries(c)
    return found[-1]["id"] if found else 0


def make_key(client: FlaskClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/v1/keys", json={"name": "k", **body}, headers=auth)
    assert r.status_code == 201, r.get_json()
    created: dict[str, Any] = r.get_json()
    return created


def make_project(client: FlaskClient, slug: str) -> None:
    r = client.post("/v1/projects", json={"slug": slug, "name": slug.title()}, headers=ADMIN)
    assert r.status_code == 201, r.get_json()


class Recorder:
    """Runs one action and checks the single audit row it wrote."""

    def __init__(self, client: FlaskClient, c: Container) -> None:
        self.client = client
        self.c = c
        self.secrets: set[str] = {TOKEN}
        self.count = 0

    def one(
        self,
        method: str,
        path: str,
        auth: dict[str, str],
        status: int,
        *,
        action: str,
        actor: str,
        project: str | None,
        target: str | object | None,
        json_body: Any = None,
    ) -> tuple[Any, dict[str, Any]]:
        before = last_id(self.c)
        self.count += 1
        request_id = f"req-{self.count}"
        r = self.client.open(
            path,
            method=method,
            json=json_body,
            headers={**auth, "X-Request-Id": request_id},
        )
        assert r.status_code == status, (method, path, r.status_code, r.get_data(as_text=True))
        written = entries(self.c, before)
        assert len(written) == 1, (action, written)
        row = written[0]
        assert row["action"] == action
        assert row["actor"] == actor
        assert row["project"] == project
        body = r.get_json() if r.data else None
        assert row["target"] == (body["id"] if target is NEW_ID and body else target)
        assert row["outcome"] == "success"
        assert row["remote_addr"] == "127.0.0.1"
        assert row["request_id"] == request_id
        assert abs(row["at"] - datetime.now(UTC)) < timedelta(minutes=1)
        return body, row

    def nothing(self, method: str, path: str, auth: dict[str, str], json_body: Any = None) -> int:
        """A read, or a refused action: no row of a successful action."""
        before = last_id(self.c)
        r = self.client.open(path, method=method, json=json_body, headers=auth)
        assert [e for e in entries(self.c, before) if e["outcome"] == "success"] == [], path
        return r.status_code

    def assert_no_secret_anywhere(self) -> None:
        dumped = json.dumps(entries(self.c), default=str)
        for secret in self.secrets:
            assert secret not in dumped, secret[:12]
        assert "whsec_" not in dumped
        assert "gvk_" not in dumped


def failed_job(c: Container, job_id: str) -> None:
    """Mark a queued job failed before it reached the provider: a retry resubmits it."""
    with c.db.transaction() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.FAILED, error_code="x", error_message="x")
        )


def an_event(c: Container, project: str, job_id: str) -> str:
    with c.db.transaction() as s:
        event = outbox.emit(
            s, EventType.JOB_SUBMITTED, {"id": job_id}, project=project, job_id=job_id
        )
        return event.id


def test_each_administrative_action_writes_exactly_one_row_with_its_actor_and_no_secret(
    client: FlaskClient, container: Container
) -> None:
    rec = Recorder(client, container)
    # By the legacy token: the project and the first key.
    rec.one(
        "POST",
        "/v1/projects",
        ADMIN,
        201,
        action="project.create",
        actor=LEGACY_ACTOR,
        project="alpha",
        target="alpha",
        json_body={"slug": "alpha", "name": "Alpha"},
    )
    made, row = rec.one(
        "POST",
        "/v1/keys",
        ADMIN,
        201,
        action="key.create",
        actor=LEGACY_ACTOR,
        project="alpha",
        target=NEW_ID,
        json_body={"name": "ops", "project": "alpha", "role": "admin"},
    )
    assert row["changes"]["name"] == "ops" and len(row["changes"]["scopes"]) == 10
    assert made["created_by"] == LEGACY_ACTOR
    rec.secrets.add(made["key"])
    ops = bearer(made["key"])
    actor = f"key:{made['id']} (ops)"

    # By the project's admin key: every endpoint action.
    created, row = rec.one(
        "POST",
        "/v1/endpoints",
        ops,
        201,
        action="endpoint.create",
        actor=actor,
        project="alpha",
        target=NEW_ID,
        json_body={"url": HOOK, "description": "first"},
    )
    endpoint_id = created["id"]
    rec.secrets.add(created["secret"])
    assert row["changes"] == {"url": HOOK, "description": "first"}

    _, row = rec.one(
        "PATCH",
        f"/v1/endpoints/{endpoint_id}",
        ops,
        200,
        action="endpoint.update",
        actor=actor,
        project="alpha",
        target=endpoint_id,
        json_body={"description": "second", "enabled": False, "url": f"{HOOK}?token=qs-s3cr3t"},
    )
    rec.secrets.add("qs-s3cr3t")  # a token in the endpoint's query string
    assert row["changes"] == {
        "description": "second",
        "enabled": False,
        "url": f"{HOOK}?token=[redacted]",
    }
    shown, _ = rec.one(
        "GET",
        f"/v1/endpoints/{endpoint_id}/secret",
        ops,
        200,
        action="endpoint.secret.read",
        actor=actor,
        project="alpha",
        target=endpoint_id,
    )
    assert shown["secret"] == created["secret"]
    rotated, _ = rec.one(
        "POST",
        f"/v1/endpoints/{endpoint_id}/rotate-secret",
        ops,
        200,
        action="endpoint.secret.rotate",
        actor=actor,
        project="alpha",
        target=endpoint_id,
    )
    rec.secrets.add(rotated["secret"])
    _, row = rec.one(
        "POST",
        f"/v1/endpoints/{endpoint_id}/recover",
        ops,
        202,
        action="endpoint.recover",
        actor=actor,
        project="alpha",
        target=endpoint_id,
        json_body={"since": "2020-01-01T00:00:00Z"},
    )
    assert row["changes"]["deliveries"] == 0

    # Jobs and events: a retry, a resend.
    submitted = client.post("/v1/jobs", json=TEXT2IMG, headers=ops)
    assert submitted.status_code == 202
    job_id = submitted.get_json()["id"]
    failed_job(container, job_id)
    rec.one(
        "POST",
        f"/v1/jobs/{job_id}/retry",
        ops,
        202,
        action="job.retry",
        actor=actor,
        project="alpha",
        target=job_id,
    )
    event_id = an_event(container, "alpha", job_id)
    _, row = rec.one(
        "POST",
        f"/v1/events/{event_id}/resend",
        ops,
        202,
        action="event.resend",
        actor=actor,
        project="alpha",
        target=event_id,
        json_body={"endpoint_id": endpoint_id},
    )
    assert row["changes"] == {"endpoint_ids": [endpoint_id]}

    # A key made by a key, and revoked by it.
    child, row = rec.one(
        "POST",
        "/v1/keys",
        ops,
        201,
        action="key.create",
        actor=actor,
        project="alpha",
        target=NEW_ID,
        json_body={"name": "child", "scopes": ["jobs:read"]},
    )
    rec.secrets.add(child["key"])
    assert row["changes"]["scopes"] == ["jobs:read"]
    assert child["created_by"] == actor
    rec.one(
        "DELETE",
        f"/v1/keys/{child['id']}",
        ops,
        204,
        action="key.revoke",
        actor=actor,
        project="alpha",
        target=child["id"],
    )
    rec.one(
        "DELETE",
        f"/v1/endpoints/{endpoint_id}",
        ops,
        204,
        action="endpoint.delete",
        actor=actor,
        project="alpha",
        target=endpoint_id,
    )

    # Reads write nothing; neither do refused or failed actions.
    for path in ("/v1/jobs", "/v1/endpoints", "/v1/events", "/v1/keys", "/v1/audit-log"):
        assert rec.nothing("GET", path, ops) == 200
    assert rec.nothing("GET", f"/v1/jobs/{job_id}", ops) == 200
    assert rec.nothing("GET", f"/v1/endpoints/{endpoint_id}/secret", ops) == 404
    assert rec.nothing("DELETE", f"/v1/keys/{child['id']}x", ops) == 404
    assert rec.nothing("POST", f"/v1/jobs/{job_id}/retry", ops) == 409  # not failed now
    viewer = make_key(client, ops, role="viewer")
    rec.secrets.add(viewer["key"])
    assert rec.nothing("POST", "/v1/endpoints", bearer(viewer["key"]), {"url": HOOK}) == 403
    assert rec.nothing("POST", "/v1/projects", ops, {"slug": "gamma", "name": "G"}) == 403

    rec.assert_no_secret_anywhere()
    actions = [e["action"] for e in entries(container) if e["outcome"] == "success"]
    assert sorted(set(actions)) == sorted(
        {
            "project.create",
            "key.create",
            "key.revoke",
            "endpoint.create",
            "endpoint.update",
            "endpoint.delete",
            "endpoint.secret.read",
            "endpoint.secret.rotate",
            "endpoint.recover",
            "event.resend",
            "job.retry",
        }
    )


def _page(client: FlaskClient, auth: dict[str, str], **query: Any) -> dict[str, Any]:
    r = client.get("/v1/audit-log", query_string=query, headers=auth)
    assert r.status_code == 200, r.get_json()
    body: dict[str, Any] = r.get_json()
    assert set(body) == {"entries", "next_cursor"}
    return body


def test_the_log_reads_back_filtered_and_paged_newest_first(
    client: FlaskClient, container: Container
) -> None:
    make_project(client, "alpha")
    make_project(client, "beta")
    alpha_admin = make_key(client, ADMIN, name="alpha-admin", project="alpha", role="admin")
    beta_admin = make_key(client, ADMIN, name="beta-admin", project="beta", role="admin")
    auditor = make_key(client, ADMIN, name="auditor", project="alpha", scopes=["audit:read"])
    for i in range(3):
        for admin in (alpha_admin, beta_admin):
            r = client.post(
                "/v1/endpoints",
                json={"url": f"{HOOK}{i}"},
                headers=bearer(admin["key"]),
            )
            assert r.status_code == 201
    everything = entries(container)
    assert len(everything) == 2 + 3 + 6

    # Newest first, paged with the cursor, nothing lost or repeated.
    seen: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 4}
    pages = 0
    while True:
        page = _page(client, ADMIN, **query)
        pages += 1
        seen.extend(page["entries"])
        if page["next_cursor"] is None:
            break
        query["cursor"] = page["next_cursor"]
    assert pages == 3
    assert [e["id"] for e in seen] == [e["id"] for e in reversed(everything)]
    assert seen[0]["action"] == "endpoint.create"
    assert seen[-1] == {
        **seen[-1],
        "action": "project.create",
        "actor": LEGACY_ACTOR,
        "project": "alpha",
        "target": "alpha",
    }

    # action=
    keys_made = _page(client, ADMIN, action="key.create")["entries"]
    assert [e["target"] for e in keys_made] == [auditor["id"], beta_admin["id"], alpha_admin["id"]]
    # actor= (its beginning: key:ID)
    by_alpha = _page(client, ADMIN, actor=f"key:{alpha_admin['id']}")["entries"]
    assert len(by_alpha) == 3
    assert {e["actor"] for e in by_alpha} == {f"key:{alpha_admin['id']} (alpha-admin)"}
    assert (
        _page(client, ADMIN, actor="token:")["entries"]
        == _page(client, ADMIN, actor=LEGACY_ACTOR)["entries"]
    )
    assert len(_page(client, ADMIN, actor="token:")["entries"]) == 5
    # An actor filter is a prefix, not a pattern.
    assert _page(client, ADMIN, actor="%")["entries"] == []
    assert _page(client, ADMIN, actor="key:_")["entries"] == []
    # since=
    cut = everything[5]["at"]
    recent = _page(client, ADMIN, since=cut.isoformat())["entries"]
    assert [e["id"] for e in recent] == [e["id"] for e in reversed(everything) if e["at"] >= cut]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _page(client, ADMIN, since=future) == {"entries": [], "next_cursor": None}
    # Filters combine.
    combined = _page(client, ADMIN, action="endpoint.create", actor=f"key:{beta_admin['id']}")
    assert len(combined["entries"]) == 3
    assert {e["project"] for e in combined["entries"]} == {"beta"}
    # Nothing matches: an empty page, not an error.
    assert _page(client, ADMIN, action="job.retry") == {"entries": [], "next_cursor": None}

    # A project-bound key reads its project's entries only.
    mine = _page(client, bearer(auditor["key"]), limit=100)["entries"]
    assert mine and {e["project"] for e in mine} == {"alpha"}
    assert {e["id"] for e in mine} == {e["id"] for e in everything if e["project"] == "alpha"}
    assert _page(client, bearer(auditor["key"]), actor=f"key:{beta_admin['id']}")["entries"] == []
    # ...and a key without audit:read none at all.
    r = client.get("/v1/audit-log", headers=bearer(alpha_admin["key"]))
    assert r.status_code == 200  # an admin role holds audit:read
    viewer = make_key(client, ADMIN, project="alpha", role="viewer")
    r = client.get("/v1/audit-log", headers=bearer(viewer["key"]))
    assert r.status_code == 403 and "audit:read" in r.get_json()["error"]["message"]

    # Bad filters are 422, one entry per field.
    r = client.get(
        "/v1/audit-log",
        query_string={"action": "key.eat", "since": "yesterday", "cursor": "!!", "limit": 0},
        headers=ADMIN,
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.get_json()["error"]["errors"]} == {
        "action",
        "since",
        "cursor",
        "limit",
    }


def test_a_page_with_no_entries_is_empty_not_an_error(client: FlaskClient) -> None:
    make_project(client, "quiet")
    auditor = make_key(client, ADMIN, project="quiet", scopes=["audit:read"])
    page = _page(client, bearer(auditor["key"]), action="endpoint.create")
    assert page == {"entries": [], "next_cursor": None}


def test_the_database_refuses_to_change_or_delete_an_audit_row(
    client: FlaskClient, container: Container
) -> None:
    make_project(client, "alpha")
    [row] = entries(container)
    for statement in (
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        f"UPDATE audit_log SET outcome = 'failure' WHERE id = {row['id']}",
        f"DELETE FROM audit_log WHERE id = {row['id']}",
    ):
        with pytest.raises(DBAPIError), container.db.engine.begin() as conn:
            conn.execute(text(statement))
    if container.db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError), container.db.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
    assert entries(container) == [row]
    # Appending still works.
    make_project(client, "beta")
    assert len(entries(container)) == 2


# -- the rules of key creation ----------------------------------------------------------------


def test_a_key_never_holds_more_than_its_creator(client: FlaskClient) -> None:
    make_project(client, "alpha")
    make_project(client, "beta")
    # An operator who may also make keys.
    lead = make_key(
        client,
        ADMIN,
        project="alpha",
        scopes=["jobs:read", "events:read", "jobs:write", "jobs:retry", "keys:write"],
    )
    auth = bearer(lead["key"])
    r = client.post("/v1/keys", json={"name": "x", "role": "admin"}, headers=auth)
    assert r.status_code == 403, r.get_json()
    r = client.post("/v1/keys", json={"name": "x", "scopes": ["audit:read"]}, headers=auth)
    assert r.status_code == 403 and "audit:read" in r.get_json()["error"]["message"]
    ok = make_key(client, auth, role="operator")
    assert ok["project"] == "alpha"
    assert sorted(ok["scopes"]) == ["events:read", "jobs:read", "jobs:retry", "jobs:write"]
    # Another project is not there at all.
    r = client.post(
        "/v1/keys", json={"name": "x", "project": "beta", "role": "viewer"}, headers=auth
    )
    assert r.status_code == 404
    # A plain operator makes no keys.
    operator = make_key(client, ADMIN, project="alpha", role="operator")
    r = client.post(
        "/v1/keys", json={"name": "x", "role": "viewer"}, headers=bearer(operator["key"])
    )
    assert r.status_code == 403 and "keys:write" in r.get_json()["error"]["message"]
    # Even a project's admin cannot make a key for every project.
    alpha_admin = make_key(client, ADMIN, project="alpha", role="admin")
    for body in ({"role": "viewer"}, {"scopes": ["jobs:read"]}, {"role": "admin"}):
        r = client.post(
            "/v1/keys",
            json={"name": "x", "project": "*", **body},
            headers=bearer(alpha_admin["key"]),
        )
        assert r.status_code == 403, (body, r.get_json())
    # The legacy token (an admin of every project) can.
    everywhere = make_key(client, ADMIN, project="*", role="viewer")
    assert everywhere["project"] is None


def test_key_lifetimes_are_bounded(client: FlaskClient) -> None:
    make_project(client, "alpha")
    for days in (MAX_DAYS + 1, 10_000, 0, -1):
        r = client.post(
            "/v1/keys",
            json={"name": "x", "project": "alpha", "role": "viewer", "expires_in_days": days},
            headers=ADMIN,
        )
        assert r.status_code == 422, (days, r.get_json())
        assert r.get_json()["error"]["errors"][0]["field"] == "expires_in_days"
    longest = make_key(client, ADMIN, project="alpha", role="viewer", expires_in_days=MAX_DAYS)
    default = make_key(client, ADMIN, project="alpha", role="viewer")

    def days_left(k: dict[str, Any]) -> float:
        expires = datetime.fromisoformat(k["expires_at"].replace("Z", "+00:00"))
        return (expires - datetime.now(UTC)) / timedelta(days=1)

    assert MAX_DAYS - 1 < days_left(longest) <= MAX_DAYS
    assert 6 < days_left(default) <= 7  # key_default_days


def test_a_revoked_or_expired_key_is_refused_at_once(
    client: FlaskClient, container: Container
) -> None:
    make_project(client, "alpha")
    made = make_key(client, ADMIN, project="alpha", role="viewer")
    auth = bearer(made["key"])
    assert client.get("/v1/jobs", headers=auth).status_code == 200
    assert client.delete(f"/v1/keys/{made['id']}", headers=ADMIN).status_code == 204
    r = client.get("/v1/jobs", headers=auth)
    assert r.status_code == 401
    # Revoking again is harmless; the first revocation's time stays.
    listed = client.get("/v1/keys", query_string={"project": "alpha"}, headers=ADMIN).get_json()
    first = next(k for k in listed["keys"] if k["id"] == made["id"])["revoked_at"]
    assert first is not None
    assert client.delete(f"/v1/keys/{made['id']}", headers=ADMIN).status_code == 204
    listed = client.get("/v1/keys", query_string={"project": "alpha"}, headers=ADMIN).get_json()
    assert next(k for k in listed["keys"] if k["id"] == made["id"])["revoked_at"] == first

    expiring = make_key(client, ADMIN, project="alpha", role="viewer", expires_in_days=1)
    assert client.get("/v1/jobs", headers=bearer(expiring["key"])).status_code == 200
    with container.db.transaction() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == expiring["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert client.get("/v1/jobs", headers=bearer(expiring["key"])).status_code == 401

    # A key with a right shape but a wrong secret, and one whose checksum is wrong.
    live = make_key(client, ADMIN, project="alpha", role="viewer")
    from service.access import keys

    body = live["key"][: -keys.CHECKSUM_LENGTH - 1] + ("A" if live["key"][-7] != "A" else "B")
    forged = body + keys.checksum(body)
    assert keys.parse(forged) == live["id"]
    assert client.get("/v1/jobs", headers=bearer(forged)).status_code == 401
    # One checksum character changed (to another one: "0" may already be the last).
    bad_checksum = live["key"][:-1] + ("0" if live["key"][-1] != "0" else "1")
    assert client.get("/v1/jobs", headers=bearer(bad_checksum)).status_code == 401
    assert client.get("/v1/jobs", headers=bearer(live["key"])).status_code == 200


def test_last_used_at_is_written_about_once_a_minute(
    client: FlaskClient, container: Container
) -> None:
    make_project(client, "alpha")
    made = make_key(client, ADMIN, project="alpha", role="viewer")
    assert made["last_used_at"] is None

    def stored() -> datetime | None:
        with container.db.transaction() as s:
            value: datetime | None = s.get(ApiKey, made["id"]).last_used_at  # type: ignore[union-attr]
            return value

    assert stored() is None
    assert client.get("/v1/jobs", headers=bearer(made["key"])).status_code == 200
    first = stored()
    assert first is not None
    assert abs(first - datetime.now(UTC)) < timedelta(seconds=30)
    time.sleep(0.01)
    for _ in range(3):
        assert client.get("/v1/jobs", headers=bearer(made["key"])).status_code == 200
    assert stored() == first
    listed = client.get("/v1/keys", query_string={"project": "alpha"}, headers=ADMIN).get_json()
    shown = next(k for k in listed["keys"] if k["id"] == made["id"])
    assert shown["last_used_at"] is not None
    # Over a minute later it moves.
    with container.db.transaction() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == made["id"])
            .values(last_used_at=utcnow() - timedelta(seconds=61))
        )
    assert client.get("/v1/jobs", headers=bearer(made["key"])).status_code == 200
    moved = stored()
    assert moved is not None and moved > first


def test_keys_are_shown_once_and_listed_without_secrets(
    client: FlaskClient, container: Container
) -> None:
    make_project(client, "alpha")
    made = make_key(client, ADMIN, name="render", project="alpha", role="operator")
    assert made["key"].startswith(f"gvk_{made['id']}_")
    listed = client.get("/v1/keys", query_string={"project": "alpha"}, headers=ADMIN)
    assert listed.status_code == 200
    [shown] = listed.get_json()["keys"]
    assert "key" not in shown and "secret_hash" not in shown
    assert made["key"] not in listed.get_data(as_text=True)
    assert {k: v for k, v in made.items() if k != "key"} == shown
    with container.db.transaction() as s:
        row = s.get(ApiKey, made["id"])
        assert row is not None and made["key"] not in row.secret_hash


# -- routes and projects ----------------------------------------------------------------------


def test_every_non_public_route_declares_a_scope(container: Container) -> None:
    app = create_app(container=container)
    assert unscoped(app) == []
    # A /v1 route declared without a scope is listed, and refused to every caller meanwhile.
    extra = Blueprint("unscoped_extra", __name__, url_prefix="/v1")
    extra.before_request(auth.guard)

    @extra.get("/extras")
    @documented("An extra", {200: Reply("ok", media_type="text/plain")})
    def extras() -> str:
        return "[]"

    app.register_blueprint(extra)
    assert unscoped(app) == ["/v1/extras"]
    r = app.test_client().get("/v1/extras", headers=ADMIN)
    assert r.status_code == 403, r.get_data(as_text=True)
    assert app.test_client().get("/v1/extras").status_code == 401


def test_a_project_that_does_not_exist_is_404_for_an_all_projects_credential(
    client: FlaskClient,
) -> None:
    make_project(client, "alpha")
    everywhere = make_key(client, ADMIN, project="*", role="admin")
    for caller in (ADMIN, bearer(everywhere["key"])):
        for method, path, body in (
            ("POST", "/v1/jobs", {**TEXT2IMG, "project": "nope"}),
            ("POST", "/v1/endpoints", {"url": HOOK, "project": "nope"}),
            ("POST", "/v1/keys", {"name": "x", "role": "viewer", "project": "nope"}),
            ("GET", "/v1/jobs?project=nope", None),
            ("GET", "/v1/endpoints?project=nope", None),
            ("GET", "/v1/events?project=nope", None),
            ("GET", "/v1/keys?project=nope", None),
        ):
            r = client.open(path, method=method, json=body, headers=caller)
            assert r.status_code == 404, (method, path, r.get_data(as_text=True))
            assert r.get_json()["error"]["message"] == "no project nope"
    # Named and existing, it acts there.
    r = client.post("/v1/jobs", json={**TEXT2IMG, "project": "alpha"}, headers=ADMIN)
    assert r.status_code == 202
    listed = client.get("/v1/jobs", query_string={"project": "alpha"}, headers=ADMIN)
    assert [j["id"] for j in listed.get_json()["jobs"]] == [r.get_json()["id"]]
    assert client.get("/v1/jobs", headers=ADMIN).get_json()["jobs"] == []  # default's
