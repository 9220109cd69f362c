"""/v1/projects, /v1/keys and /v1/audit-log: who may do what, and what they did."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from service.access import audit_log, issuing, permissions, store
from service.access.audit_log import AuditAction, AuditQuery
from service.access.scopes import Authenticated, Role, Scope
from service.api import auth, bodies
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import NO_CONTENT, Param, Reply, documented
from service.api.paging import MAX_LIMIT, page_limit
from service.api.schemas import respond
from service.db.models import ApiKey, AuditEntry, Project
from service.errors import FieldError, Forbidden, InvalidRequest
from service.jobs.shape import Timestamp

bp = Blueprint("access", __name__, url_prefix="/v1")
bp.before_request(auth.guard)
bp.before_request(refuse_control_characters)

_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(
        pattern=r"^[a-z0-9-]{1,40}$", description="permanent; names the archive prefix"
    )
    name: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)


class ProjectOut(BaseModel):
    slug: str
    name: str
    created_at: Timestamp


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=_NO_CONTROL)
    project: str | None = Field(
        default=None,
        max_length=40,
        description="the key's project; `*` for every project (admins only); "
        "default: the caller's own project, or `default`",
    )
    scopes: list[Scope] | None = Field(default=None, description="exact scopes, or give a role")
    role: Role | None = Field(default=None, description="viewer, operator or admin")
    expires_in_days: int | None = Field(default=None, ge=1, description="default 90, at most 365")


class KeyOut(BaseModel):
    id: str
    name: str
    project: str | None = Field(description="null: every project")
    scopes: list[str]
    created_by: str
    created_at: Timestamp
    expires_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, never again")


class KeyList(BaseModel):
    keys: list[KeyOut]


class AuditEntryOut(BaseModel):
    id: int
    at: Timestamp
    actor: str
    action: str
    project: str | None
    target: str | None
    outcome: str
    remote_addr: str | None
    request_id: str | None
    changes: dict[str, object] | None


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None


def _project_out(p: Project) -> ProjectOut:
    return ProjectOut(slug=p.slug, name=p.name, created_at=p.created_at)


def _key_out(k: ApiKey) -> KeyOut:
    return KeyOut(
        id=k.id,
        name=k.name,
        project=k.project,
        scopes=list(k.scopes),
        created_by=k.created_by,
        created_at=k.created_at,
        expires_at=k.expires_at,
        last_used_at=k.last_used_at,
        revoked_at=k.revoked_at,
    )


@bp.post("/projects")
@documented(
    "Create a project",
    {201: ProjectOut},
    errors=(409, 413, 422),
    body=ProjectCreate,
    scope=Scope.PROJECTS_WRITE,
)
def create_project() -> tuple[Response, int]:
    body = bodies.parse(ProjectCreate)
    caller = auth.principal()
    if not permissions.everywhere(caller, Scope.PROJECTS_WRITE):
        raise Forbidden(
            "creating a project needs the projects:write scope on every project;"
            " this credential holds it on one project only",
            scope=Scope.PROJECTS_WRITE.value,
        )
    with container().db.transaction() as session:
        project = store.create_project(
            session, body.slug, body.name, creator=caller, origin=auth.origin()
        )
    return respond(_project_out(project), 201)


@bp.get("/projects")
@documented("The projects this credential can see", {200: ProjectList}, scope=Authenticated.ANY)
def list_projects() -> tuple[Response, int]:
    visible = auth.principal().projects()
    with container().db.transaction() as session:
        rows = list(session.execute(store.select_projects(visible)).scalars())
    return respond(ProjectList(projects=[_project_out(p) for p in rows]))


@bp.post("/keys")
@documented(
    "Create an API key; the answer is the only one that shows it",
    {201: Reply("created, with the key itself", KeyCreated)},
    errors=(404, 413, 422),
    body=KeyCreate,
    scope=Scope.KEYS_WRITE,
)
def create_key() -> tuple[Response, int]:
    body = bodies.parse(KeyCreate)
    c = container()
    caller = auth.principal()
    # "*": every project, which issuing.issue allows only to an admin of every project.
    every = body.project == "*"
    project = None if every else auth.acting_project(Scope.KEYS_WRITE, body.project)
    wanted = issuing.KeyRequest(
        name=body.name,
        project=project,
        scopes=issuing.scopes_of(body.scopes, body.role),
        expires_in_days=body.expires_in_days,
    )
    with c.db.transaction() as session:
        issued = issuing.issue_audited(
            session,
            c.settings.secret,
            caller,
            wanted,
            origin=auth.origin(),
            default_days=c.settings.key_default_days,
            max_days=c.settings.key_max_days,
        )
    return respond(KeyCreated(**_key_out(issued.row).model_dump(), key=issued.key), 201)


@bp.get("/keys")
@documented(
    "A project's keys (never their secrets); an all-projects admin with project=* sees all",
    {200: KeyList},
    errors=(404, 422),
    query=[Param("project", "query", description="a project, or * for every key")],
    scope=Scope.KEYS_WRITE,
)
def list_keys() -> tuple[Response, int]:
    caller = auth.principal()
    asked = request.args.get("project")
    every = asked == "*" and permissions.everywhere(caller, Scope.KEYS_WRITE)
    project = None if every else auth.acting_project(Scope.KEYS_WRITE, asked)
    with container().db.transaction() as session:
        rows = list(session.execute(store.select_keys(project, every_project=every)).scalars())
    return respond(KeyList(keys=[_key_out(k) for k in rows]))


@bp.delete("/keys/<key_id>")
@documented("Revoke a key (at once)", {204: NO_CONTENT}, errors=(404, 422), scope=Scope.KEYS_WRITE)
def revoke_key(key_id: str) -> tuple[Response, int]:
    caller = auth.principal()
    with container().db.transaction() as session:
        issuing.revoke_audited(session, caller, key_id, auth.origin())
    return Response(status=204), 204


def _cursor(raw: str | None, errors: list[FieldError]) -> int | None:
    if not raw:
        return None
    try:
        return int(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        errors.append(FieldError("cursor", "is not a cursor this API gave out"))
        return None


def _since(raw: str | None, errors: list[FieldError]) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(FieldError("since", "must be an ISO 8601 date or time"))
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@bp.get("/audit-log")
@documented(
    "The audit log, newest first",
    {200: AuditPage},
    errors=(422,),
    query=[
        Param("action", "query", {"enum": [a.value for a in AuditAction]}),
        Param("actor", "query", description="the actor's beginning, e.g. key:ID or user:email"),
        Param("since", "query", {"type": "string", "format": "date-time"}),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        Param("cursor", "query", description="next_cursor of the previous page"),
    ],
    scope=Scope.AUDIT_READ,
)
def read_audit_log() -> tuple[Response, int]:
    args = request.args
    errors: list[FieldError] = []
    action = args.get("action") or None
    if action is not None and action not in set(AuditAction):
        errors.append(FieldError("action", f"must be one of {', '.join(AuditAction)}"))
    limit = page_limit(args, errors)
    before = _cursor(args.get("cursor"), errors)
    since = _since(args.get("since"), errors)
    if errors:
        raise InvalidRequest(errors)
    # Every entry only for whoever reads the log on every project (entries of no project,
    # sign-ins, included); otherwise the entries of the projects where it may read it.
    readable = permissions.projects_with(auth.principal(), Scope.AUDIT_READ)
    query = AuditQuery(readable, action, args.get("actor") or None, since, before)
    with container().db.transaction() as session:
        rows: list[AuditEntry] = list(
            session.execute(audit_log.select_entries(query, limit + 1)).scalars()
        )
    more = len(rows) > limit
    rows = rows[:limit]
    # Only a full page has a next one (and an empty page has no last row to point past).
    cursor = (
        base64.urlsafe_b64encode(str(rows[-1].id).encode()).decode().rstrip("=") if more else None
    )
    return respond(
        AuditPage(
            entries=[
                AuditEntryOut(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    project=r.project,
                    target=r.target,
                    outcome=r.outcome,
                    remote_addr=r.remote_addr,
                    request_id=r.request_id,
                    changes=r.changes,
                )
                for r in rows
            ],
            next_cursor=cursor,
        )
    )
