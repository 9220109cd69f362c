"""/v1/events: the events genvault sent, their deliveries, and resending."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from service.access.audit_log import AuditAction
from service.access.scopes import Scope
from service.api import auth, bodies
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import Param, Reply, documented
from service.api.paging import MAX_LIMIT, page_limit
from service.api.schemas import respond
from service.db.models import DeliveryAttempt, Event, EventDelivery
from service.errors import FieldError, InvalidRequest, NotFound
from service.events import endpoints, outbox
from service.events.types import EventType

bp = Blueprint("events", __name__, url_prefix="/v1")
bp.before_request(auth.guard)
bp.before_request(refuse_control_characters)


class EventOut(BaseModel):
    id: str
    project: str
    type: str
    created_at: datetime
    data: dict[str, Any]


class EventList(BaseModel):
    events: list[EventOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    at: datetime
    response_status: int | None
    receipt: str | None = None  # what a broker answered: SQS MessageId, NATS sequence, ...
    duration_ms: int
    error: str | None


class DeliveryOut(BaseModel):
    endpoint_id: str
    status: str
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


class ResendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: str | None = Field(
        default=None,
        max_length=40,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]*$",
        description="only this endpoint; every enabled endpoint that wants the event if absent",
    )


class ResendOut(BaseModel):
    event_id: str
    endpoint_ids: list[str]


def _out(event: Event) -> EventOut:
    c = container()
    data = event.data
    if event.type.startswith("job."):
        data = outbox.with_links(data, c.store, c.settings.presign_expires_seconds)
    return EventOut(
        id=event.id, project=event.project, type=event.type, created_at=event.created_at, data=data
    )


def _get(event_id: str, scope: Scope = Scope.EVENTS_READ) -> Event:
    """The event, or 404 when it is another project's (exactly as when it does not exist)."""
    with container().db.transaction() as session:
        event = session.get(Event, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    auth.require(scope, event.project, what=f"event {event_id}")
    return event


_ID_ERRORS = (404, 422)


@bp.get("/events")
@documented(
    "List events, newest first",
    {200: EventList},
    errors=(404, 422),
    query=[
        Param("type", "query", {"enum": [t.value for t in EventType]}),
        Param("job_id", "query", description="only the events of this job"),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        Param("cursor", "query", description="next_cursor of the previous page"),
        Param("project", "query", description="an all-projects key's project"),
    ],
    scope=Scope.EVENTS_READ,
)
def index() -> tuple[Response, int]:
    args = request.args
    errors: list[FieldError] = []
    kind = args.get("type")
    if kind is not None and kind not in set(EventType):
        errors.append(FieldError("type", f"must be one of {', '.join(EventType)}"))
    limit = page_limit(args, errors)
    if errors:
        raise InvalidRequest(errors)
    project = auth.acting_project(Scope.EVENTS_READ, args.get("project"))
    stmt = select(Event).where(Event.project == project).order_by(Event.id.desc()).limit(limit + 1)
    if kind:
        stmt = stmt.where(Event.type == kind)
    if job_id := args.get("job_id"):
        stmt = stmt.where(Event.job_id == job_id)
    if cursor := args.get("cursor"):
        stmt = stmt.where(Event.id < cursor)  # ids are time-ordered: newest first, stably
    with container().db.transaction() as session:
        rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return respond(
        EventList(events=[_out(e) for e in rows], next_cursor=rows[-1].id if more else None)
    )


@bp.get("/events/<event_id>")
@documented(
    "Show an event as it was sent", {200: EventOut}, errors=_ID_ERRORS, scope=Scope.EVENTS_READ
)
def show(event_id: str) -> tuple[Response, int]:
    return respond(_out(_get(event_id)))


@bp.get("/events/<event_id>/deliveries")
@documented(
    "An event's deliveries, one per endpoint, with their attempts",
    {200: DeliveryList},
    errors=_ID_ERRORS,
    scope=Scope.EVENTS_READ,
)
def deliveries(event_id: str) -> tuple[Response, int]:
    _get(event_id)
    with container().db.transaction() as session:
        rows = list(
            session.execute(
                select(EventDelivery)
                .where(EventDelivery.event_id == event_id)
                .order_by(EventDelivery.id)
            ).scalars()
        )
        attempts: dict[int, list[AttemptOut]] = {d.id: [] for d in rows}
        for a in session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.id)
        ).scalars():
            attempts[a.delivery_id].append(
                AttemptOut(
                    at=a.at,
                    response_status=a.response_status,
                    receipt=a.receipt,
                    duration_ms=a.duration_ms,
                    error=a.error,
                )
            )
    return respond(
        DeliveryList(
            deliveries=[
                DeliveryOut(
                    endpoint_id=d.endpoint_id,
                    status=d.status,
                    attempts=attempts[d.id],
                    next_attempt_at=d.next_attempt_at,
                )
                for d in rows
            ]
        )
    )


@bp.post("/events/<event_id>/resend")
@documented(
    "Send an event again, with the same id: to one endpoint, or to every one that wants it",
    {202: Reply("queued again: to which endpoints", ResendOut)},
    errors=(*_ID_ERRORS, 413),
    body=ResendRequest,
    body_required=False,
    scope=Scope.ENDPOINTS_WRITE,
)
def resend(event_id: str) -> tuple[Response, int]:
    body = bodies.parse(ResendRequest, optional=True)
    project = _get(event_id, Scope.ENDPOINTS_WRITE).project
    c = container()
    with c.db.transaction() as session:
        targets = endpoints.resend(session, c.queue, event_id, body.endpoint_id)
        auth.audit(
            session,
            AuditAction.EVENT_RESEND,
            project=project,
            target=event_id,
            changes={"endpoint_ids": targets},
        )
    c.wake_workers()
    return respond(ResendOut(event_id=event_id, endpoint_ids=targets), 202)
