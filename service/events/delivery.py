"""The `deliver_event` task: one attempt of one event to one endpoint, then what follows.

Retries follow GENVAULT_EVENTS_RETRY_SCHEDULE (not the generic task policy): the handler
answers Reschedule with the schedule's wait, so the queue only carries the task. An endpoint
may have at most ``endpoint_concurrency`` attempts on the wire at once; a task that finds it
busy steps aside for a moment, so a hanging endpoint holds at most that many worker slots
and every other endpoint keeps its deliveries flowing.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import metrics
from service.db.models import DeliveryAttempt, Event, EventDelivery, EventEndpoint
from service.db.session import Database
from service.db.types import utcnow
from service.events import outbox, signing
from service.events.sender import Answer, Sender
from service.events.types import DeliveryStatus, EventType
from service.storage.base import ArchiveStore
from service.tasks.outcomes import Reschedule
from service.tasks.queue import ClaimedTask

log = logging.getLogger(__name__)

# How long a task steps aside when its endpoint already has its share of attempts in flight:
# short at first (a fast endpoint frees its slot in milliseconds), doubling up to a cap so a
# backlog for a hanging endpoint does not spin the queue.
BUSY_WAIT_FIRST = 0.1
BUSY_WAIT_MAX = 5.0


def busy_wait(claims: int) -> float:
    ceiling = min(BUSY_WAIT_MAX, BUSY_WAIT_FIRST * 2.0 ** min(claims, 10))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrecy


# An attempt's slot outlives its timeout by this much, then counts as abandoned (a crash).
SLOT_MARGIN_SECONDS = 30.0


def event_body(event: Event, store: ArchiveStore, expires_in: int) -> bytes:
    """The bytes sent and signed: ``{"type", "timestamp", "data"}``."""
    data: dict[str, Any] = event.data
    if event.type.startswith("job."):
        data = outbox.with_links(data, store, expires_in)
    body = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":")).encode()


def active_secrets(endpoint: EventEndpoint) -> list[str]:
    """The current secret, and for its overlap the one it replaced."""
    keys = [endpoint.secret]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and until > utcnow():
        keys.append(endpoint.previous_secret)
    return keys


def disable(session: Session, endpoint: EventEndpoint, reason: str) -> None:
    """Turn an endpoint off and tell the other endpoints (``endpoint.disabled``)."""
    if not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = utcnow()
    log.warning("event endpoint disabled: %s", reason, extra={"endpoint_id": endpoint.id})
    outbox.emit(
        session,
        EventType.ENDPOINT_DISABLED,
        {"endpoint_id": endpoint.id, "description": endpoint.description, "reason": reason},
        project=endpoint.project,
        exclude_endpoint=endpoint.id,
    )


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    event: Event
    url: str
    keys: list[str]


@dataclass
class Deliverer:
    db: Database
    store: ArchiveStore
    sender: Sender
    schedule: tuple[float, ...]
    disable_after: float
    endpoint_concurrency: int
    presign_expires: int

    def __call__(self, task: ClaimedTask) -> Reschedule | None:
        event_id = str(task.payload["event_id"])
        endpoint_id = str(task.payload["endpoint_id"])
        claimed = self._take_slot(event_id, endpoint_id, task.attempts)
        if isinstance(claimed, Reschedule) or claimed is None:
            return claimed
        body = event_body(claimed.event, self.store, self.presign_expires)
        headers = signing.headers(claimed.keys, claimed.event.id, body)
        started = time.monotonic()
        answer = self.sender.post(claimed.url, headers, body)
        seconds = time.monotonic() - started
        metrics.EVENT_ATTEMPT_SECONDS.observe(seconds)
        return self._record(claimed.delivery_id, endpoint_id, answer, seconds)

    def _take_slot(
        self, event_id: str, endpoint_id: str, claims: int
    ) -> _Claimed | Reschedule | None:
        with self.db.transaction() as session:
            # Locking the endpoint row serialises the slot count across workers.
            endpoint = session.get(EventEndpoint, endpoint_id, with_for_update=True)
            delivery = session.execute(
                select(EventDelivery).where(
                    EventDelivery.event_id == event_id, EventDelivery.endpoint_id == endpoint_id
                )
            ).scalar_one_or_none()
            if endpoint is None or delivery is None:
                return None  # the endpoint was deleted
            if delivery.status != DeliveryStatus.PENDING:
                return None
            now = utcnow()
            if not endpoint.enabled:
                self._give_up(session, delivery, "endpoint disabled", now)
                return None
            busy = session.execute(
                select(func.count())
                .select_from(EventDelivery)
                .where(
                    EventDelivery.endpoint_id == endpoint_id,
                    EventDelivery.sending_until > now,
                    EventDelivery.id != delivery.id,
                )
            ).scalar_one()
            if busy >= self.endpoint_concurrency:
                return Reschedule(busy_wait(claims))
            delivery.sending_until = now + timedelta(
                seconds=self.sender.timeout + SLOT_MARGIN_SECONDS
            )
            event = session.get(Event, event_id)
            if event is None:
                return None
            session.expunge(event)
            return _Claimed(delivery.id, event, endpoint.url, active_secrets(endpoint))

    def _record(
        self, delivery_id: int, endpoint_id: str, answer: Answer, seconds: float
    ) -> Reschedule | None:
        now = utcnow()
        with self.db.transaction() as session:
            endpoint = session.get(EventEndpoint, endpoint_id, with_for_update=True)
            delivery = session.get(EventDelivery, delivery_id, with_for_update=True)
            if delivery is None or endpoint is None:
                return None
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    at=now,
                    response_status=answer.status,
                    duration_ms=round(seconds * 1000),
                    error=answer.error
                    or (None if answer.ok else f"HTTP {answer.status} is not a success"),
                )
            )
            delivery.sending_until = None
            delivery.attempts += 1
            delivery.updated_at = now
            if answer.ok:
                delivery.status = DeliveryStatus.SUCCEEDED.value
                delivery.next_attempt_at = None
                endpoint.last_success_at = now
                endpoint.failing_since = None
                metrics.EVENT_DELIVERIES.labels("succeeded").inc()
                return None
            metrics.EVENT_ENDPOINT_FAILURES.labels(endpoint_id).inc()
            if answer.status == 410:
                disable(session, endpoint, "the endpoint answered 410 Gone")
                self._give_up(session, delivery, None, now)
                metrics.EVENT_DELIVERIES.labels("disabled").inc()
                return None
            endpoint.failing_since = endpoint.failing_since or now
            if (now - endpoint.failing_since).total_seconds() >= self.disable_after:
                disable(
                    session,
                    endpoint,
                    f"no successful delivery for {self.disable_after:g} seconds",
                )
                self._give_up(session, delivery, None, now)
                metrics.EVENT_DELIVERIES.labels("disabled").inc()
                return None
            if delivery.attempts > len(self.schedule):
                self._give_up(session, delivery, None, now)
                metrics.EVENT_DELIVERIES.labels("failed").inc()
                return None
            wait = self.schedule[delivery.attempts - 1]
            if answer.retry_after is not None:
                # The receiver said when; but never later than the schedule's longest wait.
                wait = min(answer.retry_after, max(self.schedule))
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            metrics.EVENT_DELIVERIES.labels("retry").inc()
            return Reschedule(wait)

    @staticmethod
    def _give_up(session: Session, delivery: EventDelivery, error: str | None, now: Any) -> None:
        delivery.status = DeliveryStatus.FAILED.value
        delivery.next_attempt_at = None
        delivery.sending_until = None
        delivery.updated_at = now
        if error is not None:
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    at=now,
                    response_status=None,
                    duration_ms=0,
                    error=error,
                )
            )
