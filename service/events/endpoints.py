"""Managing endpoints: create with a checked URL, update, delete, rotate, recover, resend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.db.models import DeliveryAttempt, Event, EventDelivery, EventEndpoint
from service.db.types import utcnow
from service.errors import FieldError, InvalidRequest, NotFound
from service.events import outbox, signing
from service.events.sender import check_address
from service.events.types import DeliveryStatus, new_endpoint_id
from service.fetch.pinned import Resolver, system_resolver
from service.fetch.policy import AddressPolicy, DownloadRefused, parse_target
from service.security import sealing
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue

# After a rotation the previous secret signs too, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)

_RULE_TEXT = {
    "scheme": "must be an http or https URL",
    "userinfo": "must not carry a user name or password",
    "unresolvable": "does not resolve to any address",
}


def check_url(
    url: str,
    addresses: AddressPolicy,
    resolve: Resolver = system_resolver,
    *,
    field_name: str = "url",
) -> None:
    """Refuse a URL the sender would refuse, with a 422 naming the rule."""
    try:
        check_address(parse_target(url), addresses, resolve)
    except DownloadRefused as exc:
        raise refused(field_name, exc) from None


def check_host(
    host: str,
    port: int,
    addresses: AddressPolicy,
    resolve: Resolver = system_resolver,
    *,
    field_name: str,
) -> None:
    """Refuse a broker host the address policy refuses, with a 422 naming the rule."""
    bracketed = f"[{host}]" if ":" in host else host
    try:
        check_address(parse_target(f"http://{bracketed}:{port}/"), addresses, resolve)
    except DownloadRefused as exc:
        raise refused(field_name, exc) from None


def refused(field_name: str, exc: DownloadRefused) -> InvalidRequest:
    text = _RULE_TEXT.get(exc.rule, f"resolves to an address refused by the {exc.rule} rule")
    message = f"{text} (rule {exc.rule}; GENVAULT_EVENTS_ALLOWED_NETWORKS admits private networks)"
    return InvalidRequest([FieldError(field_name, message)], f"{field_name} refused: {exc.rule}")


def get(session: Session, endpoint_id: str, *, for_update: bool = False) -> EventEndpoint:
    endpoint = session.get(EventEndpoint, endpoint_id, with_for_update=for_update or None)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint


@dataclass(frozen=True)
class Where:
    """Where an endpoint sends, checked: its type, its URL (http) or config, its secrets."""

    type: str = "http"
    url: str | None = None
    config: Mapping[str, Any] | None = None  # userinfo masked
    hidden: Mapping[str, str] = field(default_factory=dict)  # credentials, real URLs
    format: str = "standard"
    links: str = "fresh"


def create(
    session: Session,
    project: str,
    where: Where | str,
    event_types: Sequence[str] | None,
    description: str | None,
    sealing_key: bytes | None = None,
) -> EventEndpoint:
    """A new endpoint; ``where`` is an http URL, or any type's checked destination."""
    if isinstance(where, str):
        where = Where(url=where)
    now = utcnow()
    endpoint_id = new_endpoint_id()
    endpoint = EventEndpoint(
        id=endpoint_id,
        project=project,
        url=where.url,
        type=where.type,
        config=dict(where.config) if where.config is not None else None,
        credentials=_sealed(sealing_key, endpoint_id, where.hidden),
        format=where.format,
        links=where.links,
        event_types=list(event_types) if event_types is not None else None,
        description=description,
        enabled=True,
        secret=signing.new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    return endpoint


def _sealed(key: bytes | None, endpoint_id: str, hidden: Mapping[str, str]) -> str | None:
    if not hidden:
        return None
    if key is None:
        raise ValueError("credentials need the server secret to be sealed")
    return sealing.seal(key, hidden, endpoint_id)


def set_secrets(endpoint: EventEndpoint, key: bytes, hidden: Mapping[str, str] | None) -> None:
    """Replace what is sealed on an endpoint (None or empty: nothing is)."""
    endpoint.credentials = _sealed(key, endpoint.id, hidden or {})


def opened(endpoint: EventEndpoint, key: bytes) -> dict[str, str]:
    """What is sealed on an endpoint, opened (for a PATCH that keeps part of it)."""
    return sealing.unseal(key, endpoint.credentials, endpoint.id) if endpoint.credentials else {}


def remove(session: Session, endpoint_id: str) -> None:
    get(session, endpoint_id, for_update=True)
    ids = select(EventDelivery.id).where(EventDelivery.endpoint_id == endpoint_id)
    session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
    session.execute(delete(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id))
    session.execute(delete(EventEndpoint).where(EventEndpoint.id == endpoint_id))


def rotate(session: Session, endpoint_id: str) -> str:
    endpoint = get(session, endpoint_id, for_update=True)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = utcnow() + ROTATION_OVERLAP
    endpoint.secret = signing.new_secret()
    endpoint.updated_at = utcnow()
    return endpoint.secret


def _send_again(session: Session, queue: TaskQueue, delivery: EventDelivery) -> None:
    now = utcnow()
    delivery.status = DeliveryStatus.PENDING.value
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.sending_until = None
    delivery.updated_at = now
    # The same task comes back (revive): the event keeps its id, so receivers deduplicate.
    queue.enqueue(
        session,
        TaskKind.DELIVER_EVENT,
        job_id=None,
        payload={"event_id": delivery.event_id, "endpoint_id": delivery.endpoint_id},
        dedupe_key=outbox.delivery_key(delivery.event_id, delivery.endpoint_id),
        revive=True,
        max_attempts=outbox.DELIVERY_MAX_ATTEMPTS,
    )


def recover(session: Session, queue: TaskQueue, endpoint_id: str, since: datetime) -> int:
    """Send every failed delivery to this endpoint of events since ``since`` again."""
    get(session, endpoint_id, for_update=True)
    failed = session.execute(
        select(EventDelivery)
        .join(Event, Event.id == EventDelivery.event_id)
        .where(
            EventDelivery.endpoint_id == endpoint_id,
            EventDelivery.status == DeliveryStatus.FAILED.value,
            Event.created_at >= since,
        )
    ).scalars()
    count = 0
    for delivery in failed:
        _send_again(session, queue, delivery)
        count += 1
    return count


def resend(session: Session, queue: TaskQueue, event_id: str, endpoint_id: str | None) -> list[str]:
    """Send an event again: to one endpoint, or to every enabled endpoint that wants it."""
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    if endpoint_id is not None:
        target = get(session, endpoint_id)
        if target.project != event.project:
            # An event goes only to endpoints of its own project.
            raise NotFound(f"no endpoint {endpoint_id}")
        targets = [target]
    else:
        targets = [
            e
            for e in session.execute(
                select(EventEndpoint).where(
                    EventEndpoint.enabled.is_(True), EventEndpoint.project == event.project
                )
            ).scalars()
            if e.event_types is None or event.type in e.event_types
        ]
    for endpoint in targets:
        delivery = session.execute(
            select(EventDelivery).where(
                EventDelivery.event_id == event_id, EventDelivery.endpoint_id == endpoint.id
            )
        ).scalar_one_or_none()
        if delivery is None:
            outbox.add_delivery(session, event_id, endpoint.id)
        elif delivery.status != DeliveryStatus.PENDING.value:
            _send_again(session, queue, delivery)
    return [e.id for e in targets]
