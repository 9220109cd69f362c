"""The isolation matrix: every /v1 route x every kind of caller, over HTTP against gunicorn.

On SQLite and on PostgreSQL, with one stack per database. The routes come from the running
app's /openapi.json, so a route added without a scope (or without a row in ``MATRIX``) fails
here. For each route:

    no key 401 · revoked key 401 · expired key 401 · wrong scope 403 (naming the scope)
    · other project 404 (exactly like an id that does not exist) · right key 2xx

"other project" is a key of ``alpha`` holding the right scope that addresses ``beta``'s
resource (id routes) or names ``project=beta`` (lists: the query; creates: the body).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
import requests
from sqlalchemy import update

from service.access import keys
from service.access.scopes import Scope
from service.db.models import ApiKey
from service.db.session import Database, make_engine
from service.db.types import utcnow
from tests.support.db import create_pg_database, drop_pg_database, sqlite_url
from tests.support.receivers import Receiver, start_receiver
from tests.support.stack import TOKEN, Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TEXT2IMG = "modelslab/text2img"
PARAMS = {"model_id": "flux", "prompt": "a lighthouse", "width": 256, "height": 256}
MISSING_ID = "0000000000000000doesnotexist"
MISSING_PROJECT = "no-such-project"

# Routes that need no credential at all (security: []), outside the matrix by design.
PUBLIC = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/files/{key}"),  # an expiring signed link is its own credential
    ("post", "/webhooks/{provider}/{track_id}"),  # the webhook token is its own credential
}


# -- the world the matrix runs in -------------------------------------------------------------


@dataclass
class Owned:
    """One project's resources."""

    job: str = ""
    endpoint: str = ""
    event: str = ""
    key: str = ""  # a key's id (for DELETE /v1/keys/{id})


@dataclass
class World:
    stack: Stack
    database: str
    http: requests.Session
    alpha: Owned = field(default_factory=Owned)
    beta: Owned = field(default_factory=Owned)
    failed_job: str = ""  # alpha's, retryable
    doomed_job: str = ""  # alpha's, failed, there to be erased by the "right key" case
    # alpha's, there to be deleted or rotated by the "right key" case
    doomed_endpoint: str = ""
    rotated_endpoint: str = ""
    scoped: dict[Scope, str] = field(default_factory=dict)  # alpha keys, one scope each
    everywhere: dict[Scope, str] = field(default_factory=dict)  # all-projects keys
    revoked: str = ""
    expired: str = ""

    @property
    def url(self) -> str:
        return self.stack.web_url

    def call(
        self,
        method: str,
        path: str,
        key: str | None = TOKEN,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.http.request(
            method.upper(),
            f"{self.url}{path}",
            params=query,
            json=body,
            headers=headers,
            timeout=30,
        )

    def ok(self, method: str, path: str, status: int, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None


def _key(world: World, project: str, **body: Any) -> dict[str, Any]:
    made: dict[str, Any] = world.ok(
        "post", "/v1/keys", 201, body={"name": "matrix", "project": project, **body}
    )
    return made


def _wait(cond: Callable[[], Any], what: str, stack: Stack, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.tail_logs()}")
        time.sleep(0.1)
    return found


def _build(world: World, receiver: Receiver, db_url: str) -> None:
    """Everything through the API with the legacy admin token (and one UPDATE for expiry)."""
    w = world
    for slug in ("alpha", "beta"):
        w.ok("post", "/v1/projects", 201, body={"slug": slug, "name": slug.title()})
    for slug, owned in (("alpha", w.alpha), ("beta", w.beta)):
        owned.endpoint = w.ok(
            "post", "/v1/endpoints", 201, body={"url": receiver.url, "project": slug}
        )["id"]
        owned.job = w.ok(
            "post",
            "/v1/jobs",
            202,
            body={"endpoint": TEXT2IMG, "params": PARAMS, "project": slug},
        )["id"]
        owned.key = _key(w, slug, role="viewer")["id"]
    w.failed_job = w.ok(
        "post",
        "/v1/jobs",
        202,
        body={
            "endpoint": TEXT2IMG,
            "params": {**PARAMS, "prompt": "refused [sandbox:error]"},
            "project": "alpha",
        },
    )["id"]
    w.doomed_job = w.ok(
        "post",
        "/v1/jobs",
        202,
        body={
            "endpoint": TEXT2IMG,
            "params": {**PARAMS, "prompt": "erased [sandbox:error]"},
            "project": "alpha",
        },
    )["id"]
    w.doomed_endpoint = w.ok(
        "post", "/v1/endpoints", 201, body={"url": receiver.url, "project": "alpha"}
    )["id"]
    w.rotated_endpoint = w.ok(
        "post", "/v1/endpoints", 201, body={"url": receiver.url, "project": "alpha"}
    )["id"]
    for scope in Scope:
        w.scoped[scope] = _key(w, "alpha", scopes=[scope.value])["key"]
        w.everywhere[scope] = _key(w, "*", scopes=[scope.value])["key"]
    revoked = _key(w, "alpha", role="admin")
    w.ok("delete", f"/v1/keys/{revoked['id']}", 204)
    w.revoked = revoked["key"]
    expired = _key(w, "alpha", role="admin", expires_in_days=1)
    assert w.call("get", "/v1/jobs", expired["key"]).status_code == 200  # valid until now
    db = Database(make_engine(db_url))
    try:
        with db.transaction() as s:
            s.execute(
                update(ApiKey)
                .where(ApiKey.id == expired["id"])
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
    finally:
        db.dispose()
    w.expired = expired["key"]

    # The jobs settle (one archived per project, the refused one failed) and each project
    # gets its events.
    for job_id, wanted in ((w.alpha.job, "archived"), (w.beta.job, "archived")):
        done = w.stack.wait_status(job_id, "archived", "failed", timeout=45)
        assert done["status"] == wanted, done
    for job_id in (w.failed_job, w.doomed_job):
        done = w.stack.wait_status(job_id, "archived", "failed", timeout=45)
        assert done["status"] == "failed", done
    for slug, owned in (("alpha", w.alpha), ("beta", w.beta)):
        query = {"project": slug, "job_id": owned.job}

        def events(query: dict[str, str] = query) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = w.ok("get", "/v1/events", 200, query=query)["events"]
            return found

        owned.event = _wait(events, f"{slug}'s events", w.stack)[-1]["id"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> Iterator[World]:
    started = time.monotonic()
    database: str = request.param
    tmp: Path = tmp_path_factory.mktemp(f"matrix-{database}")
    db_url = create_pg_database() if database == "postgres" else sqlite_url(tmp)
    bucket = f"genvault-matrix-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    receiver = start_receiver()
    stack = None
    try:
        stack = start_stack(
            tmp, s3_endpoint, bucket, db_url, GENVAULT_EVENTS_ALLOWED_NETWORKS="127.0.0.1/32"
        )
        with requests.Session() as http:
            w = World(stack, database, http)
            _build(w, receiver, db_url)
            print(f"\n[{database}] stack and world ready in {time.monotonic() - started:.1f} s")
            yield w
    finally:
        if stack is not None:
            stack.stop()
        receiver.server.shutdown()
        receiver.server.server_close()
        if database == "postgres":
            drop_pg_database(db_url)
        print(f"\n[{database}] whole module {time.monotonic() - started:.1f} s")


# -- the matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request's varying parts: the path's parameters, the query, the body."""

    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    body: Any = None


@dataclass(frozen=True)
class Row:
    """What one operation needs, and how to call it as each kind of caller."""

    scope: Scope | None  # None: any valid credential (Authenticated.ANY)
    status: int  # the right key's answer
    right: Callable[[World], Call]
    # Another project's resource, and (to compare the 404 with) one that does not exist.
    other: Callable[[World], tuple[Call, Call]] | None = None
    # Whose key is "right": alpha's, or (for what only an all-projects key may do) everywhere.
    by: Literal["alpha", "everywhere"] = "alpha"


def _job(w: World) -> Call:
    return Call({"job_id": w.alpha.job})


def _other_job(w: World) -> tuple[Call, Call]:
    return Call({"job_id": w.beta.job}), Call({"job_id": MISSING_ID})


def _endpoint(endpoint_id: str, body: Any = None) -> Call:
    return Call({"endpoint_id": endpoint_id}, body=body)


def _other_endpoint(body: Any = None) -> Callable[[World], tuple[Call, Call]]:
    return lambda w: (_endpoint(w.beta.endpoint, body), _endpoint(MISSING_ID, body))


def _other_event(body: Any = None) -> Callable[[World], tuple[Call, Call]]:
    return lambda w: (
        Call({"event_id": w.beta.event}, body=body),
        Call({"event_id": MISSING_ID}, body=body),
    )


def _in_query(w: World) -> tuple[Call, Call]:
    return Call(query={"project": "beta"}), Call(query={"project": MISSING_PROJECT})


def _in_body(body: dict[str, Any]) -> Callable[[World], tuple[Call, Call]]:
    return lambda w: (
        Call(body={**body, "project": "beta"}),
        Call(body={**body, "project": MISSING_PROJECT}),
    )


JOB = {"endpoint": TEXT2IMG, "params": PARAMS}
HOOK_URL = "http://127.0.0.1:9/matrix"  # admitted by GENVAULT_EVENTS_ALLOWED_NETWORKS
SINCE = {"since": "2020-01-01T00:00:00Z"}
NEW_KEY = {"name": "made-by-matrix", "scopes": ["keys:write"]}
ERASE = {"reason": "erased by the matrix"}

# operationId → row. A route in /openapi.json without a row here fails the matrix.
MATRIX: dict[str, Row] = {
    # jobs
    "jobs_submit": Row(Scope.JOBS_WRITE, 202, lambda w: Call(body=JOB), _in_body(JOB)),
    "jobs_index": Row(Scope.JOBS_READ, 200, lambda w: Call(), _in_query),
    "jobs_show": Row(Scope.JOBS_READ, 200, _job, _other_job),
    "jobs_audit_get": Row(Scope.JOBS_READ, 200, _job, _other_job),
    "jobs_audit_post": Row(Scope.JOBS_READ, 200, _job, _other_job),
    "jobs_retry": Row(Scope.JOBS_RETRY, 202, lambda w: Call({"job_id": w.failed_job}), _other_job),
    "jobs_remove": Row(
        Scope.JOBS_DELETE,
        200,
        lambda w: Call({"job_id": w.doomed_job}, body=ERASE),
        lambda w: (
            Call({"job_id": w.beta.job}, body=ERASE),
            Call({"job_id": MISSING_ID}, body=ERASE),
        ),
    ),
    # endpoints
    "endpoints_create": Row(
        Scope.ENDPOINTS_WRITE,
        201,
        lambda w: Call(body={"url": HOOK_URL}),
        _in_body({"url": HOOK_URL}),
    ),
    "endpoints_index": Row(Scope.EVENTS_READ, 200, lambda w: Call(), _in_query),
    "endpoints_types": Row(Scope.EVENTS_READ, 200, lambda w: Call()),
    "endpoints_show": Row(
        Scope.EVENTS_READ, 200, lambda w: _endpoint(w.alpha.endpoint), _other_endpoint()
    ),
    "endpoints_update": Row(
        Scope.ENDPOINTS_WRITE,
        200,
        lambda w: _endpoint(w.alpha.endpoint, {"description": "changed by the matrix"}),
        _other_endpoint({"description": "changed by the matrix"}),
    ),
    "endpoints_remove": Row(
        Scope.ENDPOINTS_WRITE, 204, lambda w: _endpoint(w.doomed_endpoint), _other_endpoint()
    ),
    "endpoints_secret": Row(
        Scope.ENDPOINTS_SECRETS, 200, lambda w: _endpoint(w.alpha.endpoint), _other_endpoint()
    ),
    "endpoints_rotate": Row(
        Scope.ENDPOINTS_SECRETS, 200, lambda w: _endpoint(w.rotated_endpoint), _other_endpoint()
    ),
    "endpoints_recover": Row(
        Scope.ENDPOINTS_WRITE,
        202,
        lambda w: _endpoint(w.alpha.endpoint, SINCE),
        _other_endpoint(SINCE),
    ),
    # events
    "events_index": Row(Scope.EVENTS_READ, 200, lambda w: Call(), _in_query),
    "events_show": Row(
        Scope.EVENTS_READ, 200, lambda w: Call({"event_id": w.alpha.event}), _other_event()
    ),
    "events_deliveries": Row(
        Scope.EVENTS_READ, 200, lambda w: Call({"event_id": w.alpha.event}), _other_event()
    ),
    "events_resend": Row(
        Scope.ENDPOINTS_WRITE,
        202,
        lambda w: Call({"event_id": w.alpha.event}, body={}),
        _other_event({}),
    ),
    # keys, projects, the audit log
    "access_create_key": Row(
        Scope.KEYS_WRITE, 201, lambda w: Call(body=NEW_KEY), _in_body(NEW_KEY)
    ),
    "access_list_keys": Row(Scope.KEYS_WRITE, 200, lambda w: Call(), _in_query),
    "access_revoke_key": Row(
        Scope.KEYS_WRITE,
        204,
        lambda w: Call({"key_id": w.alpha.key}),
        lambda w: (Call({"key_id": w.beta.key}), Call({"key_id": MISSING_ID})),
    ),
    # No project parameter: what a project key reads is checked in the lists test.
    "access_read_audit_log": Row(Scope.AUDIT_READ, 200, lambda w: Call()),
    # Only an all-projects key creates projects; a project has no "other project".
    "access_create_project": Row(
        Scope.PROJECTS_WRITE,
        201,
        lambda w: Call(body={"slug": "gamma", "name": "Gamma"}),
        by="everywhere",
    ),
    # Any valid credential.
    "access_list_projects": Row(None, 200, lambda w: Call()),
    "signing_key_signing_key": Row(None, 200, lambda w: Call()),
}


@dataclass(frozen=True)
class Operation:
    id: str
    method: str
    path: str
    scope: Scope | None

    def path_for(self, call: Call) -> str:
        path = self.path
        for name, value in call.params.items():
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, (path, call)
        return path


def operations(doc: dict[str, Any]) -> tuple[list[Operation], set[tuple[str, str]]]:
    """The document's /v1 operations (with their scope), and every other (public) one."""
    found, public = [], set()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            security = op.get("security")
            if security == []:
                public.add((method, path))
                continue
            declared = op.get("x-genvault-scope")
            if declared is None:
                # Authenticated.ANY: the bearer scheme with no scope, here or inherited.
                assert security in (None, [{"bearer": []}]), (method, path, security)
            else:
                assert security == [{"bearer": [declared]}], (method, path, security)
            found.append(
                Operation(op["operationId"], method, path, Scope(declared) if declared else None)
            )
    return found, public


def _message(r: requests.Response) -> str:
    message: str = r.json()["error"]["message"]
    return message


@dataclass
class Tally:
    cells: int = 0
    failures: list[str] = field(default_factory=list)

    def expect(self, what: str, r: requests.Response, status: int) -> bool:
        self.cells += 1
        if r.status_code != status:
            self.failures.append(f"{what}: {r.status_code} (wanted {status}) {r.text[:200]}")
            return False
        return True

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        if not ok:
            self.failures.append(f"{what}: {detail}")


def _run(w: World, op: Operation, row: Row, tally: Tally) -> None:
    right = row.right(w)
    path = op.path_for(right)

    def send(key: str | None, call: Call, at: str | None = None) -> requests.Response:
        return w.call(op.method, at or path, key, query=call.query, body=call.body)

    name = f"{op.method.upper()} {op.path}"
    tally.expect(f"{name} · no key", send(None, right), 401)
    tally.expect(f"{name} · revoked", send(w.revoked, right), 401)
    tally.expect(f"{name} · expired", send(w.expired, right), 401)
    garbage = w.revoked[:-1] + ("0" if w.revoked[-1] != "0" else "1")
    tally.expect(f"{name} · bad checksum", send(garbage, right), 401)

    # Wrong scope: every other single-scope key of alpha is refused, with the scope named.
    if row.scope is not None:
        for scope, key in w.scoped.items():
            if scope is row.scope:
                continue
            r = send(key, right)
            if tally.expect(f"{name} · wrong scope ({scope})", r, 403):
                tally.check(f"{name} · 403 names {row.scope}", row.scope.value in _message(r))
            if row.by == "everywhere":
                r = send(w.everywhere[scope], right)
                tally.expect(f"{name} · wrong scope everywhere ({scope})", r, 403)
    else:
        # Any valid credential: each scope will do.
        for scope, key in w.scoped.items():
            tally.expect(f"{name} · any credential ({scope})", send(key, right), row.status)

    # Other project: 404, the same answer as for what does not exist.
    if row.other is not None:
        assert row.scope is not None
        theirs, nothing = row.other(w)
        key = w.scoped[row.scope]
        r_theirs = send(key, theirs, op.path_for(theirs))
        r_nothing = send(key, nothing, op.path_for(nothing))
        if tally.expect(f"{name} · other project", r_theirs, 404) and tally.expect(
            f"{name} · nonexistent", r_nothing, 404
        ):
            told = {
                "beta": "X",
                MISSING_PROJECT: "X",
                **dict.fromkeys(theirs.params.values(), "X"),
                **dict.fromkeys(nothing.params.values(), "X"),
            }

            def blank(body: dict[str, Any]) -> str:
                text = repr(body)
                for value, mark in told.items():
                    text = text.replace(value, mark)
                return text

            tally.check(
                f"{name} · other project answers like nonexistent",
                blank(r_theirs.json()) == blank(r_nothing.json()),
                f"{r_theirs.text} vs {r_nothing.text}",
            )
    # Right key: 2xx.
    assert row.scope is not None or row.by == "alpha"
    key = (
        w.scoped[Scope.JOBS_READ]
        if row.scope is None
        else (w.everywhere if row.by == "everywhere" else w.scoped)[row.scope]
    )
    tally.expect(f"{name} · right key", send(key, right), row.status)


def test_every_route_is_in_the_matrix_and_declares_a_scope(world: World) -> None:
    doc = world.ok("get", "/openapi.json", 200, key=None)
    found, public = operations(doc)
    assert public == PUBLIC, "a route without a credential appeared (or went)"
    ids = {op.id for op in found}
    assert all(op.path.startswith("/v1/") for op in found)
    assert ids - MATRIX.keys() == set(), "routes without a row in MATRIX (add one)"
    assert MATRIX.keys() - ids == set(), "rows in MATRIX for routes that are gone"
    for op in found:
        assert op.scope == MATRIX[op.id].scope, (op.id, op.scope, MATRIX[op.id].scope)


def test_the_isolation_matrix(world: World) -> None:
    started = time.monotonic()
    doc = world.ok("get", "/openapi.json", 200, key=None)
    found, _ = operations(doc)
    assert {op.id for op in found} == MATRIX.keys()
    w = world

    def beta_state() -> tuple[Any, ...]:
        endpoint = w.ok("get", f"/v1/endpoints/{w.beta.endpoint}", 200)
        secret = w.ok("get", f"/v1/endpoints/{w.beta.endpoint}/secret", 200)["secret"]
        job = w.ok("get", f"/v1/jobs/{w.beta.job}", 200)
        return endpoint, secret, job["status"], job["updated_at"]

    beta_before = beta_state()
    tally = Tally()
    for op in sorted(found, key=lambda o: (o.path, o.method)):
        _run(world, op, MATRIX[op.id], tally)

    # Refused requests did nothing: beta's endpoint, its secret and its job are as they were,
    # and the matrix's keys are in the audit log once per right-key action, and for no other.
    assert beta_state() == beta_before
    matrix_keys = {keys.parse(k) for k in (*w.scoped.values(), *w.everywhere.values())}
    logged = [
        e["action"]
        for e in w.ok("get", "/v1/audit-log", 200, query={"limit": "200"})["entries"]
        if e["actor"].split(" ")[0].removeprefix("key:") in matrix_keys
    ]
    assert sorted(logged) == sorted(
        [
            "endpoint.create",
            "endpoint.update",
            "endpoint.delete",
            "endpoint.secret.read",
            "endpoint.secret.rotate",
            "endpoint.recover",
            "event.resend",
            "job.retry",
            "job.delete",
            "key.create",
            "key.revoke",
            "project.create",
        ]
    )

    # What the destructive rows must not have touched: beta's things, still there.
    assert world.ok("get", f"/v1/endpoints/{world.beta.endpoint}", 200)["project"] == "beta"
    beta_keys = world.ok("get", "/v1/keys", 200, query={"project": "beta"})["keys"]
    assert next(k for k in beta_keys if k["id"] == world.beta.key)["revoked_at"] is None
    # What the right keys did, they did to alpha.
    assert world.call("get", f"/v1/endpoints/{world.doomed_endpoint}").status_code == 404
    revoked = world.ok("get", "/v1/keys", 200, query={"project": "alpha"})["keys"]
    assert next(k for k in revoked if k["id"] == world.alpha.key)["revoked_at"] is not None

    elapsed = time.monotonic() - started
    print(
        f"\n[{world.database}] matrix: {len(found)} routes, {tally.cells} requests "
        f"checked in {elapsed:.1f} s"
    )
    assert tally.failures == [], "\n".join(tally.failures)


def test_a_project_key_never_lists_another_projects_rows(world: World) -> None:
    w = world
    # The all-projects view: both projects have rows.
    for path, field_name in (("/v1/jobs", "jobs"), ("/v1/endpoints", "endpoints")):
        for slug in ("alpha", "beta"):
            rows = w.ok("get", path, 200, query={"project": slug})[field_name]
            assert rows and {r.get("project", slug) for r in rows} == {slug}, (path, slug)

    def listed(path: str, scope: Scope, field_name: str, **query: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = w.ok("get", path, 200, key=w.scoped[scope], query=query)[
            field_name
        ]
        return rows

    for query in ({}, {"project": "alpha"}):
        jobs = listed("/v1/jobs", Scope.JOBS_READ, "jobs", **query)
        assert {j["id"] for j in jobs} >= {w.alpha.job, w.failed_job}
        assert w.beta.job not in {j["id"] for j in jobs}
        endpoints = listed("/v1/endpoints", Scope.EVENTS_READ, "endpoints", **query)
        assert {e["project"] for e in endpoints} == {"alpha"}
        assert w.alpha.endpoint in {e["id"] for e in endpoints}
        events = listed("/v1/events", Scope.EVENTS_READ, "events", **query)
        assert events and {e["project"] for e in events} == {"alpha"}
        assert w.beta.event not in {e["id"] for e in events}
        keys = listed("/v1/keys", Scope.KEYS_WRITE, "keys", **query)
        assert keys and {k["project"] for k in keys} == {"alpha"}
        assert w.beta.key not in {k["id"] for k in keys}
    # Filters cannot reach across either: beta's job id as a filter finds nothing.
    assert listed("/v1/events", Scope.EVENTS_READ, "events", job_id=w.beta.job) == []
    # An all-projects key's "*" is not for a project key.
    r = w.call("get", "/v1/keys", w.scoped[Scope.KEYS_WRITE], query={"project": "*"})
    assert r.status_code == 404
    # Projects: its own only.
    for key in w.scoped.values():
        projects = w.ok("get", "/v1/projects", 200, key=key)["projects"]
        assert [p["slug"] for p in projects] == ["alpha"]
    # The audit log: alpha's entries only (beta has its own).
    everything = w.ok("get", "/v1/audit-log", 200, query={"limit": "200"})["entries"]
    assert {"alpha", "beta"} <= {e["project"] for e in everything}
    mine = w.ok("get", "/v1/audit-log", 200, key=w.scoped[Scope.AUDIT_READ], query={"limit": "200"})
    assert mine["entries"] and {e["project"] for e in mine["entries"]} == {"alpha"}
    # A resend of alpha's event cannot be pointed at beta's endpoint.
    r = w.call(
        "post",
        f"/v1/events/{w.alpha.event}/resend",
        w.scoped[Scope.ENDPOINTS_WRITE],
        body={"endpoint_id": w.beta.endpoint},
    )
    assert r.status_code == 404, r.text


def test_a_project_key_holding_projects_write_still_creates_no_project(world: World) -> None:
    r = world.call(
        "post",
        "/v1/projects",
        world.scoped[Scope.PROJECTS_WRITE],
        body={"slug": "delta", "name": "Delta"},
    )
    assert r.status_code == 403, r.text
    assert "projects:write" in _message(r)
