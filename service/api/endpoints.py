"""/v1/endpoints: where genvault sends its signed events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api.auth import require_token
from service.api.context import container
from service.db.models import EventEndpoint
from service.errors import FieldError, InvalidRequest
from service.events import endpoints
from service.events.types import EventType
from service.fetch.policy import AddressPolicy

bp = Blueprint("endpoints", __name__, url_prefix="/v1")
bp.before_request(require_token)


class EndpointCreate(BaseModel):
    """The body of POST /v1/endpoints."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)


class EndpointUpdate(BaseModel):
    """The body of PATCH /v1/endpoints/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


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

    since: datetime


class RecoverOut(BaseModel):
    endpoint_id: str
    deliveries: int


def _body(model: type[BaseModel]) -> Any:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(
            [
                FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"])
                for e in exc.errors()
            ]
        ) from None


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


def _json(model: BaseModel, status: int = 200) -> tuple[Response, int]:
    return jsonify(model.model_dump(mode="json")), status


@bp.post("/endpoints")
def create() -> tuple[Response, int]:
    body: EndpointCreate = _body(EndpointCreate)
    _check_url(body.url)
    with container().db.transaction() as session:
        endpoint = endpoints.create(
            session,
            body.url,
            [t.value for t in body.event_types] if body.event_types else None,
            body.description,
        )
    return _json(EndpointCreated(**_out(endpoint).model_dump(), secret=endpoint.secret), 201)


@bp.get("/endpoints")
def index() -> tuple[Response, int]:
    from sqlalchemy import select

    with container().db.transaction() as session:
        rows = list(session.execute(select(EventEndpoint).order_by(EventEndpoint.id)).scalars())
    return _json(EndpointList(endpoints=[_out(e) for e in rows]))


@bp.get("/endpoints/<endpoint_id>")
def show(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoint = endpoints.get(session, endpoint_id)
    return _json(_out(endpoint))


@bp.patch("/endpoints/<endpoint_id>")
def update(endpoint_id: str) -> tuple[Response, int]:
    body: EndpointUpdate = _body(EndpointUpdate)
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
    return _json(_out(endpoint))


@bp.delete("/endpoints/<endpoint_id>")
def remove(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoints.remove(session, endpoint_id)
    return Response(status=204), 204


@bp.get("/endpoints/<endpoint_id>/secret")
def secret(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        endpoint = endpoints.get(session, endpoint_id)
    return _json(SecretOut(secret=endpoint.secret))


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
def rotate(endpoint_id: str) -> tuple[Response, int]:
    with container().db.transaction() as session:
        new = endpoints.rotate(session, endpoint_id)
    return _json(SecretOut(secret=new))


@bp.post("/endpoints/<endpoint_id>/recover")
def recover(endpoint_id: str) -> tuple[Response, int]:
    body: RecoverRequest = _body(RecoverRequest)
    since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
    c = container()
    with c.db.transaction() as session:
        count = endpoints.recover(session, c.queue, endpoint_id, since)
    c.wake_workers()
    return _json(RecoverOut(endpoint_id=endpoint_id, deliveries=count), 202)
