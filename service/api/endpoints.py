"""/v1/endpoints: where genvault sends its signed events."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from service.api import bodies
from service.api.auth import require_token
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import NO_CONTENT, Reply, documented
from service.api.schemas import respond
from service.db.models import EventEndpoint
from service.events import endpoints
from service.events.types import EventType
from service.fetch.policy import AddressPolicy

bp = Blueprint("endpoints", __name__, url_prefix="/v1")
bp.before_request(require_token)
bp.before_request(refuse_control_characters)

# PostgreSQL cannot store NUL in text; a description never needs one.
_NO_NUL = r"^[^\x00]*$"


class EndpointCreate(BaseModel):
    """The body of POST /v1/endpoints."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)


class EndpointUpdate(BaseModel):
    """The body of PATCH /v1/endpoints/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)


class EndpointOut(BaseModel):
    id: str
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
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
    )


_ID_ERRORS = (404, 422)


@bp.post("/endpoints")
@documented(
    "Register an endpoint for events; the answer is the only one that shows its secret",
    {201: Reply("registered, with its whsec_ signing secret", EndpointCreated)},
    errors=(413, 422),
    body=EndpointCreate,
)
def create() -> tuple[Response, int]:
    body = bodies.parse(EndpointCreate)
    _check_url(body.url)
    with container().db.transaction() as session:
        endpoint = endpoints.create(
            session,
            body.url,
            [t.value for t in body.event_types] if body.event_types else None,
            body.description,
        )
    return respond(EndpointCreated(**_out(endpoint).model_dump(), secret=endpoint.secret), 201)


@bp.get("/endpoints")
@documented("List endpoints (without their secrets)", {200: EndpointList}, errors=(422,))
def index() -> tuple[Response, int]:
    with container().db.transaction() as session:
        rows = list(session.execute(select(EventEndpoint).order_by(EventEndpoint.id)).scalars())
    return respond(EndpointList(endpoints=[_out(e) for e in rows]))


@bp.get("/endpoints/<endpoint_id>")
@documented("Show an endpoint (without its secret)", {200: EndpointOut}, errors=_ID_ERRORS)
def show(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoint = endpoints.get(session, endpoint_id)
    return respond(_out(endpoint))


@bp.patch("/endpoints/<endpoint_id>")
@documented(
    "Change an endpoint: only the fields given change",
    {200: EndpointOut},
    errors=(*_ID_ERRORS, 413),
    body=EndpointUpdate,
)
def update(endpoint_id: str) -> tuple[Response, int]:
    body = bodies.parse(EndpointUpdate)
    given = body.model_fields_set
    if body.url is not None:
        _check_url(body.url)
    with container().db.transaction() as session:
        endpoint = endpoints.get(session, endpoint_id, for_update=True)
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
    return respond(_out(endpoint))


@bp.delete("/endpoints/<endpoint_id>")
@documented("Delete an endpoint and its deliveries", {204: NO_CONTENT}, errors=_ID_ERRORS)
def remove(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoints.remove(session, endpoint_id)
    return Response(status=204), 204


@bp.get("/endpoints/<endpoint_id>/secret")
@documented("Show an endpoint's signing secret", {200: SecretOut}, errors=_ID_ERRORS)
def secret(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoint = endpoints.get(session, endpoint_id)
    return respond(SecretOut(secret=endpoint.secret))


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
@documented(
    "Rotate the signing secret; the previous one keeps signing for 24 hours",
    {200: Reply("the new secret", SecretOut)},
    errors=_ID_ERRORS,
)
def rotate(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        new = endpoints.rotate(session, endpoint_id)
    return respond(SecretOut(secret=new))


@bp.post("/endpoints/<endpoint_id>/recover")
@documented(
    "Send again every failed delivery to this endpoint of events since a time",
    {202: Reply("queued again: how many deliveries", RecoverOut)},
    errors=(*_ID_ERRORS, 413),
    body=RecoverRequest,
)
def recover(endpoint_id: str) -> tuple[Response, int]:
    body = bodies.parse(RecoverRequest)
    since = body.since
    c = container()
    with c.db.transaction() as session:
        count = endpoints.recover(session, c.queue, endpoint_id, since)
    c.wake_workers()
    return respond(RecoverOut(endpoint_id=endpoint_id, deliveries=count), 202)
