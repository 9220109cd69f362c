"""/v1/endpoints: where genvault sends its signed events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.access.audit_log import AuditAction
from service.access.scopes import Scope
from service.api import auth, bodies
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import NO_CONTENT, Param, Reply, documented
from service.api.schemas import respond
from service.db.models import EventEndpoint
from service.errors import NotFound
from service.events import endpoints
from service.events.types import EventType
from service.fetch.policy import AddressPolicy

bp = Blueprint("endpoints", __name__, url_prefix="/v1")
bp.before_request(auth.guard)
bp.before_request(refuse_control_characters)

# PostgreSQL cannot store NUL in text; a description never needs one.
_NO_NUL = r"^[^\x00]*$"


class EndpointCreate(BaseModel):
    """The body of POST /v1/endpoints."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)
    project: str | None = Field(
        default=None, max_length=40, description="an all-projects key names the project here"
    )


class EndpointUpdate(BaseModel):
    """The body of PATCH /v1/endpoints/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)


class EndpointOut(BaseModel):
    id: str
    project: str
    url: str
    event_types: list[str] | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class EndpointCreated(EndpointOut):
    secret: str


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class SecretOut(BaseModel):
    secret: str


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(description="events from this time on; UTC when no offset is given")

    @field_validator("since")
    @classmethod
    def _in_utc(cls, since: datetime) -> datetime:
        try:
            return since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None


class RecoverOut(BaseModel):
    endpoint_id: str
    deliveries: int


def _check_url(url: str) -> None:
    endpoints.check_url(url, AddressPolicy(container().settings.events_allowed_networks))


def _out(endpoint: EventEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        project=endpoint.project,
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
    )


_ID_ERRORS = (404, 422)


def _get(
    session: Session, endpoint_id: str, scope: Scope, *, for_update: bool = False
) -> EventEndpoint:
    """The endpoint, or 404 when it is another project's (exactly as when it does not exist)."""
    try:
        endpoint = endpoints.get(session, endpoint_id, for_update=for_update)
        auth.require(scope, endpoint.project, what=f"endpoint {endpoint_id}")
    except NotFound:
        raise NotFound(f"no endpoint {endpoint_id}") from None
    return endpoint


def _changes(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True)


@bp.post("/endpoints")
@documented(
    "Register an endpoint for events; the answer is the only one that shows its secret",
    {201: Reply("registered, with its whsec_ signing secret", EndpointCreated)},
    errors=(404, 413, 422),
    body=EndpointCreate,
    scope=Scope.ENDPOINTS_WRITE,
)
def create() -> tuple[Response, int]:
    body = bodies.parse(EndpointCreate)
    project = auth.acting_project(Scope.ENDPOINTS_WRITE, body.project)
    _check_url(body.url)
    with container().db.transaction() as session:
        endpoint = endpoints.create(
            session,
            project,
            body.url,
            [t.value for t in body.event_types] if body.event_types else None,
            body.description,
        )
        auth.audit(
            session,
            AuditAction.ENDPOINT_CREATE,
            project=project,
            target=endpoint.id,
            changes=_changes(body),
        )
    return respond(EndpointCreated(**_out(endpoint).model_dump(), secret=endpoint.secret), 201)


@bp.get("/endpoints")
@documented(
    "List a project's endpoints (without their secrets)",
    {200: EndpointList},
    errors=(404, 422),
    query=[Param("project", "query", description="an all-projects key's project")],
    scope=Scope.EVENTS_READ,
)
def index() -> tuple[Response, int]:
    project = auth.acting_project(Scope.EVENTS_READ, request.args.get("project"))
    with container().db.transaction() as session:
        rows = list(
            session.execute(
                select(EventEndpoint)
                .where(EventEndpoint.project == project)
                .order_by(EventEndpoint.id)
            ).scalars()
        )
    return respond(EndpointList(endpoints=[_out(e) for e in rows]))


@bp.get("/endpoints/<endpoint_id>")
@documented(
    "Show an endpoint (without its secret)",
    {200: EndpointOut},
    errors=_ID_ERRORS,
    scope=Scope.EVENTS_READ,
)
def show(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoint = _get(session, endpoint_id, Scope.EVENTS_READ)
    return respond(_out(endpoint))


@bp.patch("/endpoints/<endpoint_id>")
@documented(
    "Change an endpoint: only the fields given change",
    {200: EndpointOut},
    errors=(*_ID_ERRORS, 413),
    body=EndpointUpdate,
    scope=Scope.ENDPOINTS_WRITE,
)
def update(endpoint_id: str) -> tuple[Response, int]:
    body = bodies.parse(EndpointUpdate)
    given = body.model_fields_set
    if body.url is not None:
        _check_url(body.url)
    with container().db.transaction() as session:
        endpoint = _get(session, endpoint_id, Scope.ENDPOINTS_WRITE, for_update=True)
        if body.url is not None:
            endpoint.url = body.url
        if "event_types" in given:
            endpoint.event_types = [t.value for t in body.event_types] if body.event_types else None
        if "description" in given:
            endpoint.description = body.description
        if body.enabled is not None:
            endpoint.enabled = body.enabled
            if body.enabled:
                # Switched back on: it starts a fresh clock towards auto-disable.
                endpoint.disabled_reason = None
                endpoint.failing_since = None
            else:
                endpoint.disabled_reason = "disabled by an operator"
        endpoint.updated_at = datetime.now(UTC)
        auth.audit(
            session,
            AuditAction.ENDPOINT_UPDATE,
            project=endpoint.project,
            target=endpoint.id,
            changes=_changes(body),
        )
    return respond(_out(endpoint))


@bp.delete("/endpoints/<endpoint_id>")
@documented(
    "Delete an endpoint and its deliveries",
    {204: NO_CONTENT},
    errors=_ID_ERRORS,
    scope=Scope.ENDPOINTS_WRITE,
)
def remove(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        project = _get(session, endpoint_id, Scope.ENDPOINTS_WRITE, for_update=True).project
        endpoints.remove(session, endpoint_id)
        auth.audit(session, AuditAction.ENDPOINT_DELETE, project=project, target=endpoint_id)
    return Response(status=204), 204


@bp.get("/endpoints/<endpoint_id>/secret")
@documented(
    "Show an endpoint's signing secret",
    {200: SecretOut},
    errors=_ID_ERRORS,
    scope=Scope.ENDPOINTS_SECRETS,
)
def secret(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoint = _get(session, endpoint_id, Scope.ENDPOINTS_SECRETS)
        auth.audit(
            session, AuditAction.ENDPOINT_SECRET_READ, project=endpoint.project, target=endpoint_id
        )
    return respond(SecretOut(secret=endpoint.secret))


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
@documented(
    "Rotate the signing secret; the previous one keeps signing for 24 hours",
    {200: Reply("the new secret", SecretOut)},
    errors=_ID_ERRORS,
    scope=Scope.ENDPOINTS_SECRETS,
)
def rotate(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        project = _get(session, endpoint_id, Scope.ENDPOINTS_SECRETS, for_update=True).project
        new = endpoints.rotate(session, endpoint_id)
        auth.audit(session, AuditAction.ENDPOINT_SECRET_ROTATE, project=project, target=endpoint_id)
    return respond(SecretOut(secret=new))


@bp.post("/endpoints/<endpoint_id>/recover")
@documented(
    "Send again every failed delivery to this endpoint of events since a time",
    {202: Reply("queued again: how many deliveries", RecoverOut)},
    errors=(*_ID_ERRORS, 413),
    body=RecoverRequest,
    scope=Scope.ENDPOINTS_WRITE,
)
def recover(endpoint_id: str) -> tuple[Response, int]:
    body = bodies.parse(RecoverRequest)
    since = body.since
    c = container()
    with c.db.transaction() as session:
        project = _get(session, endpoint_id, Scope.ENDPOINTS_WRITE).project
        count = endpoints.recover(session, c.queue, endpoint_id, since)
        auth.audit(
            session,
            AuditAction.ENDPOINT_RECOVER,
            project=project,
            target=endpoint_id,
            changes={"since": since.isoformat(), "deliveries": count},
        )
    c.wake_workers()
    return respond(RecoverOut(endpoint_id=endpoint_id, deliveries=count), 202)
