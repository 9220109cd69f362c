"""The `deliver_event` task: one attempt of one event to one endpoint, then what follows.

Retries follow GENVAULT_EVENTS_RETRY_SCHEDULE (not the generic task policy): the handler
answers Reschedule with the schedule's wait, so the queue only carries the task. An endpoint
may have at most ``endpoint_concurrency`` attempts on the wire at once; a task that finds it
busy steps aside for a moment, so a hanging endpoint holds at most that many worker slots
and every other endpoint keeps its deliveries flowing.

The attempt goes out through the endpoint's destination (service.events.destinations): the
same signed body and headers on every transport. What failed decides what follows: a
``gone`` endpoint (HTTP 410) is disabled at once; ``configuration`` failures (a missing
queue, refused credentials) disable it after CONFIGURATION_FAILURES_TO_DISABLE in a row;
``transient`` ones after GENVAULT_EVENTS_DISABLE_AFTER_SECONDS without a success.
"""

from __future__ import annotations

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
from service.events import formats, outbox, signing
from service.events.destinations import registry
from service.events.destinations.base import Failure, Message, Outcome, Target
from service.events.destinations.registry import Destinations
from service.events.types import DeliveryStatus, EventType
from service.security.sealing import SealError
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


# Configuration failures in a row (no success or other failure between) that disable an
# endpoint: a missing queue or refused credentials will not fix themselves on a schedule.
CONFIGURATION_FAILURES_TO_DISABLE = 3


def event_body(event: Event, store: ArchiveStore, expires_in: int) -> bytes:
    """The standard body with fresh links: ``{"type", "timestamp", "data"}``."""
    return formats.event_body(event, store, expires_in)[0]


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
    keys: list[str]
    type: str
    config: dict[str, Any] | None
    sealed: str | None
    url: str | None
    format: str
    links: str


@dataclass
class Deliverer:
    db: Database
    store: ArchiveStore
    destinations: Destinations
    secret: bytes  # opens the endpoints' sealed credentials
    public_url: str
    timeout: float
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
        started = time.monotonic()
        outcome = self._send(endpoint_id, claimed)
        seconds = time.monotonic() - started
        metrics.EVENT_ATTEMPT_SECONDS.observe(seconds)
        return self._record(claimed.delivery_id, endpoint_id, claimed.type, outcome, seconds)

    def _send(self, endpoint_id: str, claimed: _Claimed) -> Outcome:
        event = claimed.event
        body, content_type = formats.event_body(
            event,
            self.store,
            self.presign_expires,
            format=claimed.format,
            links=claimed.links,
            public_url=self.public_url,
        )
        headers = signing.headers(claimed.keys, event.id, body)
        message = Message(
            event_id=event.id,
            event_type=event.type,
            project=event.project,
            job_id=event.job_id,
            body=body,
            headers={**headers, "content-type": content_type},
            content_type=content_type,
        )
        try:
            target: Target = registry.target(
                endpoint_id,
                claimed.type,
                claimed.config,
                claimed.sealed,
                self.secret,
                url=claimed.url,
            )
        except SealError:
            return Outcome.failed(
                Failure.CONFIGURATION,
                "the stored credentials do not open with this GENVAULT_SECRET_KEY",
            )
        return self.destinations.publish(target, message)

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
            delivery.sending_until = now + timedelta(seconds=self.timeout + SLOT_MARGIN_SECONDS)
            event = session.get(Event, event_id)
            if event is None:
                return None
            session.expunge(event)
            return _Claimed(
                delivery.id,
                event,
                active_secrets(endpoint),
                endpoint.type,
                endpoint.config,
                endpoint.credentials,
                endpoint.url,
                endpoint.format,
                endpoint.links,
            )

    def _record(
        self, delivery_id: int, endpoint_id: str, kind: str, answer: Outcome, seconds: float
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
                    receipt=answer.receipt,
                    error=_attempt_error(answer),
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
                endpoint.config_failures = 0
                _count(kind, "succeeded")
                return None
            metrics.EVENT_ENDPOINT_FAILURES.labels(endpoint_id).inc()
            reason = self._disable_reason(endpoint, answer, now)
            if reason is not None:
                disable(session, endpoint, reason)
                self._give_up(session, delivery, None, now)
                _count(kind, "disabled")
                return None
            if delivery.attempts > len(self.schedule):
                self._give_up(session, delivery, None, now)
                _count(kind, "failed")
                return None
            wait = self.schedule[delivery.attempts - 1]
            if answer.retry_after is not None:
                # The receiver said when; but never later than the schedule's longest wait.
                wait = min(answer.retry_after, max(self.schedule))
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            _count(kind, "retry")
            return Reschedule(wait)

    def _disable_reason(self, endpoint: EventEndpoint, answer: Outcome, now: Any) -> str | None:
        """Why this failure turns the endpoint off, or None (and the streaks move on)."""
        endpoint.failing_since = endpoint.failing_since or now
        if answer.failure is Failure.GONE:
            return "the endpoint answered 410 Gone"
        if answer.failure is Failure.CONFIGURATION:
            endpoint.config_failures += 1
            if endpoint.config_failures >= CONFIGURATION_FAILURES_TO_DISABLE:
                return (
                    f"configuration error, {endpoint.config_failures} attempts in a row: "
                    f"{answer.error}"
                )
        else:
            endpoint.config_failures = 0
        if (now - endpoint.failing_since).total_seconds() >= self.disable_after:
            return f"no successful delivery for {self.disable_after:g} seconds"
        return None

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


def _attempt_error(answer: Outcome) -> str | None:
    if answer.ok:
        return None
    error = answer.error or f"HTTP {answer.status} is not a success"
    if answer.failure is Failure.CONFIGURATION:
        return f"configuration: {error}"
    return error


def _count(kind: str, outcome: str) -> None:
    metrics.EVENT_DELIVERIES.labels(outcome).inc()
    metrics.EVENT_DELIVERIES_BY_TYPE.labels(kind, outcome).inc()
