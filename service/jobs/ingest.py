"""A webhook's one durable write: store the raw callback and queue the task that applies it.

The provider waits on the webhook, so the request does the least that keeps the promise
"answered 200 means kept": one INSERT of the callback and of a ``callback`` task, committed
together. The job's state machine runs later, in the worker (jobs/applying.py).

On PostgreSQL this is a single statement: data-modifying CTEs insert the callback (ON
CONFLICT DO NOTHING makes a retried body a no-op) and, only for a new row, its task; the
trigger on ``tasks`` (migration 0004) sends the NOTIFY that wakes the workers, in the same
transaction. SQLite has no data-modifying CTEs: there it is two statements in one
transaction, which costs no extra round trip (the database is in process), and the commit
wakes the workers through tasks/wakeup.py.
"""

from __future__ import annotations

import enum
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.models import Callback, Job, Task
from service.db.session import Database
from service.db.types import utcnow
from service.errors import NotFound
from service.providers.endpoints import ENDPOINTS
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue
from service.tasks.status import TaskStatus

SOURCE = "webhook"
_CALLBACK_COLUMNS = ("job_id", "source", "status", "body", "result", "body_sha256", "received_at")
_TASK_COLUMNS = (
    "kind",
    "job_id",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "run_after",
    "created_at",
    "updated_at",
)


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@cache
def _endpoints_of(provider: str) -> tuple[str, ...]:
    # A track_id only answers to the provider its job was sent to.
    return tuple(name for name, spec in ENDPOINTS.items() if spec.provider == provider)


def _bound(column: Any, value: Any) -> ColumnElement[Any]:
    """A bind parameter with the column's type (JSON, UTC datetimes), for INSERT ... SELECT."""
    return literal(value, column.type)


def _callback_select(provider: str, track_id: str, values: dict[str, Any], now: datetime) -> Any:
    cols = Callback.__table__.c
    return select(
        Job.id,
        _bound(cols.source, SOURCE),
        _bound(cols.status, values["status"]),
        _bound(cols.body, values["body"]),
        _bound(cols.result, values["result"]),
        _bound(cols.body_sha256, values["body_sha256"]),
        _bound(cols.received_at, now),
    ).where(Job.track_id == track_id, Job.endpoint.in_(_endpoints_of(provider)))


def _task_values(queue: TaskQueue, now: datetime) -> dict[str, Any]:
    return {
        "kind": TaskKind.CALLBACK.value,
        "status": TaskStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": queue.default_max_attempts,
        "run_after": now,
        "created_at": now,
        "updated_at": now,
    }


def record(
    db: Database,
    queue: TaskQueue,
    provider: str,
    track_id: str,
    values: dict[str, Any],
) -> Outcome:
    """Keep the callback and queue its application; NotFound for an unknown track_id.

    ``values`` are the callback row's status, body (redacted), result and body_sha256.
    """
    now = utcnow()
    with db.transaction() as session:
        if db.dialect == "postgresql":
            known, callback_id = _record_postgres(session, queue, provider, track_id, values, now)
        else:
            known, callback_id = _record_sqlite(session, queue, provider, track_id, values, now)
        if callback_id is not None:
            queue.mark_enqueued(session)
    if not known:
        raise NotFound("unknown track_id")
    return Outcome.ACCEPTED if callback_id is not None else Outcome.DUPLICATE


def _record_postgres(
    session: Session,
    queue: TaskQueue,
    provider: str,
    track_id: str,
    values: dict[str, Any],
    now: datetime,
) -> tuple[bool, int | None]:
    source = _callback_select(provider, track_id, values, now)
    stored = (
        postgresql.insert(Callback)
        .from_select(list(_CALLBACK_COLUMNS), source)
        .on_conflict_do_nothing(index_elements=["job_id", "source", "body_sha256"])
        .returning(Callback.id, Callback.job_id)
        .cte("stored")
    )
    tv = _task_values(queue, now)
    tcols = Task.__table__.c
    queued = (
        insert(Task)
        .from_select(
            list(_TASK_COLUMNS),
            select(
                _bound(tcols.kind, tv["kind"]),
                stored.c.job_id,
                func.json_build_object("callback_id", stored.c.id),
                *(_bound(tcols[k], tv[k]) for k in _TASK_COLUMNS[3:]),
            ),
        )
        .returning(Task.id)
        .cte("queued")
    )
    # Both CTEs run whatever the outer query reads; it reads whether the job exists (to tell
    # an unknown track_id from a duplicate) and the new callback's id, if any.
    known = select(Job.id).where(
        Job.track_id == track_id, Job.endpoint.in_(_endpoints_of(provider))
    )
    row = session.execute(
        select(
            known.exists().label("known"),
            select(stored.c.id).scalar_subquery().label("callback_id"),
            select(func.count()).select_from(queued).scalar_subquery().label("tasks"),
        )
    ).one()
    return bool(row.known), row.callback_id


def _record_sqlite(
    session: Session,
    queue: TaskQueue,
    provider: str,
    track_id: str,
    values: dict[str, Any],
    now: datetime,
) -> tuple[bool, int | None]:
    stored = session.execute(
        sqlite.insert(Callback)
        .from_select(list(_CALLBACK_COLUMNS), _callback_select(provider, track_id, values, now))
        .on_conflict_do_nothing(index_elements=["job_id", "source", "body_sha256"])
        .returning(Callback.id, Callback.job_id)
    ).one_or_none()
    if stored is None:
        # No row: a duplicate or an unknown track_id (the rare paths) - one read tells which.
        known = session.execute(
            select(Job.id).where(
                Job.track_id == track_id, Job.endpoint.in_(_endpoints_of(provider))
            )
        ).first()
        return known is not None, None
    task = _task_values(queue, now) | {
        "job_id": stored.job_id,
        "payload": {"callback_id": stored.id},
    }
    session.execute(insert(Task).values(**task))
    return True, int(stored.id)
