"""Retention: forget operational rows nobody reads any more (GENVAULT_RETENTION_DAYS).

What goes, once older than the window:

- tasks that finished (``done`` or ``failed``);
- callbacks of archived jobs, except the one the archive worked from (``result_callback_id``)
  and any of a job that still has a live task. Callbacks of failed jobs stay: a retry decides
  from them (jobs/operator_retry.py), and of jobs not yet final they are the work in hand;
- events with no delivery still pending, together with their deliveries and attempts.

Jobs, assets, projects, keys, endpoints and the audit log are never pruned here.

Every batch removes at most ``batch`` rows of a table (of events: ``batch`` events with their
deliveries and attempts) in its own short transaction. On PostgreSQL
the rows are picked ``FOR UPDATE SKIP LOCKED``, so a row a worker holds is left for the next
round instead of waited for, and the conditions are repeated on the DELETE itself, so a row
that changed between the pick and the delete (a task revived by a retry) is kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select

from service.db.enums import JobStatus, TaskStatus
from service.db.models import Callback, DeliveryAttempt, Event, EventDelivery, Job, Task
from service.db.session import Database
from service.db.types import utcnow
from service.errors import ConfigError

BATCH = 500
# What `genvault prune` reports, in the order it removes them.
TABLES = ("tasks", "callbacks", "event_delivery_attempts", "event_deliveries", "events")

_FINISHED = (TaskStatus.DONE.value, TaskStatus.FAILED.value)
_LIVE = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
log = logging.getLogger(__name__)
_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h`` or ``90m`` as a timedelta; ConfigError otherwise."""
    found = _DURATION.match(text)
    if found is None:
        raise ConfigError(f"--older-than: {text!r} is not a duration like 30d, 12h or 90m")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def prune(
    db: Database,
    older_than: timedelta,
    *,
    batch: int = BATCH,
    max_batches: int | None = None,
    now: datetime | None = None,
    cursor: CallbackCursor | None = None,
) -> dict[str, int]:
    """Remove what the window no longer keeps; the rows removed per table.

    ``max_batches`` bounds the statements per table in one call (the worker's round); what
    is left waits for the next call. None: until nothing old is left (`genvault prune`).
    ``cursor``: where an earlier call's walk over the callbacks stopped (see CallbackCursor).
    """
    cutoff = (now or utcnow()) - older_than
    removed = dict.fromkeys(TABLES, 0)
    removed["tasks"] = _drain(lambda: _prune_tasks(db, cutoff, batch), max_batches)
    walk = cursor or CallbackCursor()
    rounds = 0
    while max_batches is None or rounds < max_batches:
        rounds += 1
        count, caught_up = _prune_callbacks(db, cutoff, batch, walk)
        removed["callbacks"] += count
        if caught_up:
            break
    rounds = 0
    while max_batches is None or rounds < max_batches:
        rounds += 1
        counts = _prune_events(db, cutoff, batch)
        for table, count in counts.items():
            removed[table] += count
        if counts["events"] == 0:
            break
    return removed


class Pruner:
    """The worker's periodic pruning (service/wiring.py), bounded per round.

    It runs in the worker's claiming loop, so one round removes at most ``max_batches``
    batches per table (a few seconds at most) and a backlog drains over several rounds.
    """

    def __init__(self, db: Database, days: int, *, max_batches: int = 20) -> None:
        self.db = db
        self.days = days
        self.max_batches = max_batches
        self.cursor = CallbackCursor()

    def __call__(self) -> dict[str, int]:
        if self.days <= 0:
            return {}  # GENVAULT_RETENTION_DAYS=0: keep everything
        removed = prune(
            self.db,
            timedelta(days=self.days),
            max_batches=self.max_batches,
            cursor=self.cursor,
        )
        if any(removed.values()):
            log.info("pruned", extra={"removed": removed})
        return removed


@dataclass
class CallbackCursor:
    """How far a walk over the callbacks by id has come.

    The callbacks an archived job keeps (the one its archive worked from) stay old forever,
    so a search for prunable ones by age alone would read them all again every round, and
    there are as many as jobs. The walk instead looks at ``batch`` ids at a time from where it
    stopped, and stops at the first callback younger than the window. A callback kept for a
    reason that later passes (its job was not final yet) is looked at again when the worker
    restarts (the cursor is kept in memory) or by `genvault prune`, which walks from the start.
    """

    after: int = 0


def _drain(step: Callable[[], int], max_batches: int | None) -> int:
    total = 0
    rounds = 0
    while max_batches is None or rounds < max_batches:
        rounds += 1
        count = step()
        total += count
        if count == 0:
            break
    return total


def _delete_picked(db: Database, model: Any, condition: ColumnElement[bool], batch: int) -> int:
    """Pick up to ``batch`` ids, then delete those still matching: one short transaction.

    Two statements, not ``DELETE … WHERE id IN (SELECT … LIMIT n)``: PostgreSQL may run
    such a subquery more than once and delete more than ``n`` rows.
    """
    with db.transaction() as s:
        ids = list(
            s.execute(
                select(model.id).where(condition).limit(batch).with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return 0
        result = s.execute(
            delete(model)
            .where(model.id.in_(ids), condition)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _prune_tasks(db: Database, cutoff: datetime, batch: int) -> int:
    finished = and_(Task.status.in_(_FINISHED), Task.updated_at < cutoff)
    return _delete_picked(db, Task, finished, batch)


def _prune_callbacks(
    db: Database, cutoff: datetime, batch: int, cursor: CallbackCursor
) -> tuple[int, bool]:
    """The callbacks no job needs among the next ``batch`` ids; (removed, caught up)."""
    with db.read() as conn:
        # Past the gaps earlier rounds left: the window starts at the next callback there is.
        first = conn.execute(select(func.min(Callback.id)).where(Callback.id > cursor.after))
        start = first.scalar()
    if start is None:
        return 0, True
    low = start - 1
    window = and_(Callback.id > low, Callback.id <= low + batch)
    unneeded = and_(
        Callback.received_at < cutoff,
        Callback.pending.is_(False),  # the worker has yet to apply it
        exists().where(
            Job.id == Callback.job_id,
            # An erased job needs none of its callbacks (one a provider sent after the
            # erasure holds its output URLs).
            Job.status.in_((JobStatus.ARCHIVED.value, JobStatus.DELETED.value)),
            or_(Job.result_callback_id.is_(None), Job.result_callback_id != Callback.id),
        ),
        ~exists().where(Task.job_id == Callback.job_id, Task.status.in_(_LIVE)),
    )
    with db.transaction() as s:
        # Ids grow with time: the walk stops at the first callback inside the window.
        young = s.execute(
            select(func.min(Callback.id)).where(window, Callback.received_at >= cutoff)
        ).scalar()
        if young is not None:
            window = and_(Callback.id > low, Callback.id < young)
        ids = list(
            s.execute(
                select(Callback.id).where(window, unneeded).with_for_update(skip_locked=True)
            ).scalars()
        )
        removed = 0
        if ids:
            result = s.execute(
                delete(Callback)
                .where(Callback.id.in_(ids), unneeded)
                .execution_options(synchronize_session=False)
            )
            removed = int(result.rowcount)  # type: ignore[attr-defined]
        if young is not None:
            cursor.after = young - 1
            return removed, True
        beyond = s.execute(select(Callback.id).where(Callback.id > low + batch).limit(1)).first()
        if beyond is not None:
            cursor.after = low + batch
            return removed, False
        # At the end: the next id is one past the highest left. SQLite hands out max(id) + 1,
        # so once the newest callbacks are pruned it takes their ids again: the walk waits at
        # the highest id there is, not at the window's end, or it would never see those.
        top = s.execute(select(func.max(Callback.id))).scalar()
        cursor.after = min(top or 0, low + batch)
        return removed, True


def _prune_events(db: Database, cutoff: datetime, batch: int) -> dict[str, int]:
    """One batch of old events, their deliveries and attempts, in one short transaction."""
    pending = exists().where(EventDelivery.event_id == Event.id, EventDelivery.status == "pending")
    picked = (
        select(Event.id)
        .where(Event.created_at < cutoff, ~pending)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with db.transaction() as s:
        ids = list(s.execute(picked).scalars())
        if not ids:
            return {"event_delivery_attempts": 0, "event_deliveries": 0, "events": 0}
        # A delivery that turned pending since (a resend) is not deleted; the event's own
        # DELETE then fails on its foreign key and this batch rolls back, keeping everything.
        done = and_(EventDelivery.event_id.in_(ids), EventDelivery.status != "pending")
        attempts = s.execute(
            delete(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(select(EventDelivery.id).where(done)))
            .execution_options(synchronize_session=False)
        )
        deliveries = s.execute(
            delete(EventDelivery).where(done).execution_options(synchronize_session=False)
        )
        events = s.execute(
            delete(Event).where(Event.id.in_(ids)).execution_options(synchronize_session=False)
        )
        return {
            "event_delivery_attempts": int(attempts.rowcount),  # type: ignore[attr-defined]
            "event_deliveries": int(deliveries.rowcount),  # type: ignore[attr-defined]
            "events": int(events.rowcount),  # type: ignore[attr-defined]
        }
