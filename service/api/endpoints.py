"""/v1/endpoints: where genvault sends its signed events."""

from __future__ import annotations

from collections.abc import Mapping
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
from service.errors import FieldError, InvalidRequest, NotFound
from service.events import configs, endpoints
from service.events.destinations import http as http_destination
from service.events.formats import BodyFormat, Links
from service.events.types import EventType
from service.fetch.policy import AddressPolicy
from service.security.sealing import SealError

bp = Blueprint("endpoints", __name__, url_prefix="/v1")
bp.before_request(auth.guard)
bp.before_request(refuse_control_characters)

# PostgreSQL cannot store NUL in text; a description never needs one.
_NO_NUL = r"^[^\x00]*$"


_TYPES = "http sqs sns eventbridge rabbitmq nats redis"
_CONFIG = "the type's settings (GET /v1/endpoint-types): queue_url, topic_arn, event_bus_name, …"
_CREDENTIALS = (
    "access_key_id and secret_access_key (AWS; leave out for the default credential chain), "
    "or username and password (brokers); stored encrypted, never shown"
)


class EndpointCreate(BaseModel):
    """The body of POST /v1/endpoints."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(default="http", max_length=20, description=_TYPES)
    url: str | None = Field(default=None, min_length=1, max_length=2000, description="http only")
    config: dict[str, Any] | None = Field(default=None, description=_CONFIG)
    credentials: dict[str, Any] | None = Field(default=None, description=_CREDENTIALS)
    format: BodyFormat = BodyFormat.STANDARD
    links: Links = Links.FRESH
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)
    project: str | None = Field(
        default=None, max_length=40, description="an all-projects key names the project here"
    )


class EndpointUpdate(BaseModel):
    """The body of PATCH /v1/endpoints/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    config: dict[str, Any] | None = Field(default=None, description="replaces the config")
    credentials: dict[str, Any] | None = Field(
        default=None, description="replaces the credentials (null removes them)"
    )
    format: BodyFormat | None = None
    links: Links | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)


class EndpointOut(BaseModel):
    id: str
    project: str
    type: str
    url: str | None = Field(description="http endpoints' URL")
    config: dict[str, Any] = Field(description="the type's config, URLs' userinfo masked")
    format: str
    links: str
    event_types: list[str] | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class EndpointCreated(EndpointOut):
    secret: str


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class TypeField(BaseModel):
    name: str
    type: str
    required: bool
    description: str | None
    default: Any = None


class EndpointType(BaseModel):
    type: str
    summary: str
    config: list[TypeField]
    credentials: list[TypeField]


class EndpointTypeList(BaseModel):
    types: list[EndpointType]


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


def _addresses() -> AddressPolicy:
    return AddressPolicy(container().settings.events_allowed_networks)


def _check_url(url: str) -> None:
    endpoints.check_url(url, _addresses())


def _out(endpoint: EventEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        project=endpoint.project,
        type=endpoint.type,
        url=endpoint.url,
        config=endpoint.config or ({"url": endpoint.url} if endpoint.url else {}),
        format=endpoint.format,
        links=endpoint.links,
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


def _changes(body: BaseModel, shown: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the audit row keeps: never the credentials, and config URLs as shown (masked)."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    if "credentials" in changes:
        given = changes.pop("credentials")
        changes["credentials_changed"] = sorted(given) if isinstance(given, dict) else []
    if "config" in changes and shown is not None:
        changes["config"] = dict(shown)
    return changes


def _http_where(body: EndpointCreate) -> endpoints.Where:
    url = body.url or (body.config or {}).get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest([FieldError("url", "is required for http endpoints")])
    if body.config is not None and set(body.config) - {"url"}:
        extra = sorted(set(body.config) - {"url"})[0]
        raise InvalidRequest([FieldError(f"config.{extra}", "http endpoints take only url")])
    if body.credentials is not None:
        raise InvalidRequest([FieldError("credentials", "http endpoints take none")])
    url = configs.validated(http_destination.Config, {"url": url}, "config")["url"]
    _check_url(url)
    return endpoints.Where("http", url, None, {}, body.format, body.links)


def _where(body: EndpointCreate) -> endpoints.Where:
    if body.type == "http":
        return _http_where(body)
    if body.url is not None:
        raise InvalidRequest(
            [FieldError("url", f"only for http endpoints; {body.type} uses config")]
        )
    return configs.checked(
        body.type,
        body.config,
        body.credentials,
        _addresses(),
        format=body.format,
        links=body.links,
    )


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
    where = _where(body)
    with container().db.transaction() as session:
        endpoint = endpoints.create(
            session,
            project,
            where,
            [t.value for t in body.event_types] if body.event_types else None,
            body.description,
            container().settings.secret if where.hidden else None,
        )
        auth.audit(
            session,
            AuditAction.ENDPOINT_CREATE,
            project=project,
            target=endpoint.id,
            changes=_changes(body, where.config),
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
    shown: dict[str, Any] | None = None
    with container().db.transaction() as session:
        endpoint = _get(session, endpoint_id, Scope.ENDPOINTS_WRITE, for_update=True)
        if endpoint.type == "http":
            _update_http(endpoint, body)
        elif given & {"url", "config", "credentials"}:
            shown = _update_destination(endpoint, body)
        if body.format is not None:
            endpoint.format = body.format.value
        if body.links is not None:
            endpoint.links = body.links.value
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
                endpoint.config_failures = 0
            else:
                endpoint.disabled_reason = "disabled by an operator"
        endpoint.updated_at = datetime.now(UTC)
        auth.audit(
            session,
            AuditAction.ENDPOINT_UPDATE,
            project=endpoint.project,
            target=endpoint.id,
            changes=_changes(body, shown),
        )
    return respond(_out(endpoint))


def _update_http(endpoint: EventEndpoint, body: EndpointUpdate) -> None:
    if body.credentials is not None:
        raise InvalidRequest([FieldError("credentials", "http endpoints take none")])
    url = body.url or (body.config or {}).get("url")
    if body.config is not None and set(body.config) - {"url"}:
        extra = sorted(set(body.config) - {"url"})[0]
        raise InvalidRequest([FieldError(f"config.{extra}", "http endpoints take only url")])
    if url is not None:
        url = configs.validated(http_destination.Config, {"url": url}, "config")["url"]
        _check_url(url)
        endpoint.url = url


def _update_destination(endpoint: EventEndpoint, body: EndpointUpdate) -> dict[str, Any]:
    """A new config and/or credentials; a URL given back masked keeps its sealed original."""
    if body.url is not None:
        raise InvalidRequest(
            [FieldError("url", f"only for http endpoints; {endpoint.type} uses config")]
        )
    key = container().settings.secret
    try:
        before = endpoints.opened(endpoint, key)
    except SealError:
        before = {}  # sealed under another secret key: whatever is given now replaces it
    config = dict(body.config) if body.config is not None else dict(endpoint.config or {})
    for name, value in list(config.items()):
        if value == (endpoint.config or {}).get(name) and f"config.{name}" in before:
            config[name] = before[f"config.{name}"]
    if "credentials" in body.model_fields_set:
        credentials = body.credentials
    else:
        credentials = {k: v for k, v in before.items() if not k.startswith("config.")} or None
    where = configs.checked(
        endpoint.type, config, credentials, _addresses(), format="standard", links="fresh"
    )
    endpoint.config = dict(where.config or {})
    endpoints.set_secrets(endpoint, key, where.hidden)
    endpoint.config_failures = 0  # a new configuration starts a fresh count
    return endpoint.config


@bp.get("/endpoint-types")
@documented(
    "Describe each endpoint type: its config and credentials fields",
    {200: EndpointTypeList},
    scope=Scope.EVENTS_READ,
)
def types() -> tuple[Response, int]:
    # The guard has checked the scope; the types are the same in every project.
    return respond(EndpointTypeList.model_validate({"types": configs.describe()}))


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
