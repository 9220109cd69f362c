"""/v1/events: the events genvault sent, their deliveries, and resending."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from service.api.auth import require_token
from service.api.context import container
from service.db.models import DeliveryAttempt, Event, EventDelivery
from service.errors import FieldError, InvalidRequest, NotFound
from service.events import endpoints, outbox
from service.events.types import EventType

bp = Blueprint("events", __name__, url_prefix="/v1")
bp.before_request(require_token)

MAX_LIMIT = 200


class EventOut(BaseModel):
    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]


class EventList(BaseModel):
    events: list[EventOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    at: datetime
    response_status: int | None
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

    endpoint_id: str | None = Field(default=None, max_length=40)


class ResendOut(BaseModel):
    event_id: str
    endpoint_ids: list[str]


def _out(event: Event) -> EventOut:
    c = container()
    data = event.data
    if event.type.startswith("job."):
        data = outbox.with_links(data, c.store, c.settings.presign_expires_seconds)
    return EventOut(id=event.id, type=event.type, created_at=event.created_at, data=data)


def _json(model: BaseModel, status: int = 200) -> tuple[Response, int]:
    return jsonify(model.model_dump(mode="json")), status


def _get(event_id: str) -> Event:
    with container().db.transaction() as session:
        event = session.get(Event, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


@bp.get("/events")
def index() -> tuple[Response, int]:
    args = request.args
    errors: list[FieldError] = []
    kind = args.get("type")
    if kind is not None and kind not in set(EventType):
        errors.append(FieldError("type", f"must be one of {', '.join(EventType)}"))
    try:
        limit = int(args.get("limit", "50"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        errors.append(FieldError("limit", f"must be an integer from 1 to {MAX_LIMIT}"))
        limit = 0
    if errors:
        raise InvalidRequest(errors)
    stmt = select(Event).order_by(Event.id.desc()).limit(limit + 1)
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
    return _json(
        EventList(events=[_out(e) for e in rows], next_cursor=rows[-1].id if more else None)
    )


@bp.get("/events/<event_id>")
def show(event_id: str) -> tuple[Response, int]:
    return _json(_out(_get(event_id)))


@bp.get("/events/<event_id>/deliveries")
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
                    duration_ms=a.duration_ms,
                    error=a.error,
                )
            )
    return _json(
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
def resend(event_id: str) -> tuple[Response, int]:
    payload = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(payload, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    try:
        body = ResendRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(
            [FieldError(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    c = container()
    with c.db.transaction() as session:
        targets = endpoints.resend(session, c.queue, event_id, body.endpoint_id)
    c.wake_workers()
    return _json(ResendOut(event_id=event_id, endpoint_ids=targets), 202)
