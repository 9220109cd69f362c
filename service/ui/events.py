"""What the dashboard reads about events: a job's events and deliveries, endpoints' health.

Every query here is read off an index (models.py): events by ``job_id``, deliveries by
``event_id``, attempts by ``delivery_id``, and the health panel by (status, created_at),
so it reads only the last day's deliveries and the ones still pending, never the history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import DeliveryAttempt, Event, EventDelivery, EventEndpoint
from service.events.types import DeliveryStatus

HEALTH_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str
    tone: str = ""  # "ok" | "bad" | "wait" | "": how the page colours it


_WHERE_FIELDS = ("queue_url", "topic_arn", "event_bus_name", "url", "stream", "subject")


def where(endpoint: EventEndpoint) -> str:
    """Where an endpoint sends: its URL, or its type and queue, topic, bus (userinfo masked)."""
    if endpoint.type == "http" or not endpoint.config:
        return endpoint.url or ""
    config = endpoint.config
    target = next((str(config[k]) for k in _WHERE_FIELDS if config.get(k)), "")
    return f"{endpoint.type}:{target}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def job_timeline(session: Session, job_id: str) -> list[TimelineEntry]:
    """The job's events and, for each, how its delivery to each endpoint went."""
    events = list(
        session.execute(
            select(Event).where(Event.job_id == job_id).order_by(Event.created_at, Event.id)
        ).scalars()
    )
    if not events:
        return []
    deliveries = session.execute(
        select(EventDelivery, EventEndpoint)
        .join(EventEndpoint, EventEndpoint.id == EventDelivery.endpoint_id)
        .where(EventDelivery.event_id.in_([e.id for e in events]))
        .order_by(EventDelivery.id)
    ).all()
    attempts: dict[int, list[DeliveryAttempt]] = defaultdict(list)
    if deliveries:
        for a in session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_([d.id for d, _ in deliveries]))
            .order_by(DeliveryAttempt.id)
        ).scalars():
            attempts[a.delivery_id].append(a)
    types = {e.id: e.type for e in events}
    entries = [TimelineEntry(e.created_at, f"event {e.type}") for e in events]
    for delivery, endpoint in deliveries:
        url = where(endpoint)
        tried = attempts[delivery.id]
        kind = types[delivery.event_id]
        count = _plural(len(tried), "attempt")
        last = tried[-1] if tried else None
        if delivery.status == DeliveryStatus.SUCCEEDED:
            at = last.at if last else delivery.updated_at
            entries.append(TimelineEntry(at, f"{kind} delivered to {url}, {count}", "ok"))
        elif delivery.status == DeliveryStatus.FAILED:
            why = (last.error or f"HTTP {last.response_status}") if last else "no attempt"
            at = last.at if last else delivery.updated_at
            what = f"{kind} failed to reach {url} after {count} (last: {why})"
            entries.append(TimelineEntry(at, what, "bad"))
        else:
            at = last.at if last else delivery.created_at
            then = (
                f", next attempt {delivery.next_attempt_at:%Y-%m-%d %H:%M:%S}"
                if delivery.next_attempt_at
                else ""
            )
            entries.append(
                TimelineEntry(at, f"{kind} to {url} pending, {count} so far{then}", "wait")
            )
    return entries


@dataclass
class EndpointHealth:
    endpoint: EventEndpoint
    counts: dict[str, int] = field(default_factory=dict)  # by status, created in the window
    oldest_pending: datetime | None = None  # of any age

    @property
    def where(self) -> str:
        return where(self.endpoint)

    @property
    def succeeded(self) -> int:
        return self.counts.get(DeliveryStatus.SUCCEEDED, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(DeliveryStatus.FAILED, 0)

    @property
    def pending(self) -> int:
        return self.counts.get(DeliveryStatus.PENDING, 0)


def endpoint_health(session: Session, now: datetime) -> list[EndpointHealth]:
    """Every endpoint with its deliveries of the last 24 h by outcome and its oldest pending one.

    Empty when no endpoint exists (the operations page then leaves the panel out).
    """
    endpoints = list(
        session.execute(select(EventEndpoint).order_by(EventEndpoint.created_at)).scalars()
    )
    if not endpoints:
        return []
    health = {e.id: EndpointHealth(e) for e in endpoints}
    statuses = [s.value for s in DeliveryStatus]
    # (status, created_at) index: one range per status over the window.
    for endpoint_id, status, n in session.execute(
        select(EventDelivery.endpoint_id, EventDelivery.status, func.count())
        .where(EventDelivery.status.in_(statuses), EventDelivery.created_at >= now - HEALTH_WINDOW)
        .group_by(EventDelivery.endpoint_id, EventDelivery.status)
    ).all():
        if endpoint_id in health:
            health[endpoint_id].counts[status] = int(n)
    # Pending deliveries of any age: the same index, only the backlog is read.
    for endpoint_id, oldest in session.execute(
        select(EventDelivery.endpoint_id, func.min(EventDelivery.created_at))
        .where(EventDelivery.status == DeliveryStatus.PENDING.value)
        .group_by(EventDelivery.endpoint_id)
    ).all():
        if endpoint_id in health:
            health[endpoint_id].oldest_pending = oldest
    return list(health.values())
