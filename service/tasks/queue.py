"""A durable task queue on the database (the pattern of procrastinate, Oban and River).

A task is claimed with a lease: ``locked_until``. A worker that dies simply stops renewing
it, and once it runs out any worker may take the task over. On PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED`` so concurrent workers never block on, or double-claim, a row;
on SQLite, ``BEGIN IMMEDIATE`` (see db.session) serialises claims instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.db.models import Task
from service.db.session import Database, upsert_insert
from service.db.types import utcnow
from service.tasks.kinds import TaskKind
from service.tasks.status import TaskStatus

# The session.info key that tells the after-commit hook (tasks/wakeup.py) to wake workers.
ENQUEUED = "genvault.tasks_enqueued"


@dataclass(frozen=True)
class ClaimedTask:
    id: int
    kind: TaskKind
    job_id: str | None
    attempts: int
    max_attempts: int
    payload: Mapping[str, Any] = field(default_factory=dict)
    # Whether ``attempts`` counts this run. A task taken over after its lease ran out is
    # claimed uncounted and counted when it starts (TaskQueue.count_attempt): the worker
    # that stopped may have held it without starting it (prefetch.py), and a worker that
    # keeps crashing must not use up the attempts of tasks it never ran.
    counted: bool = True


class TaskQueue:
    def __init__(self, db: Database, *, lease_seconds: float, default_max_attempts: int) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.default_max_attempts = default_max_attempts

    def enqueue(
        self,
        session: Session,
        kind: TaskKind,
        *,
        job_id: str | None,
        payload: Mapping[str, Any] | None = None,
        delay: float = 0.0,
        dedupe_key: str | None = None,
        revive: bool = False,
        max_attempts: int | None = None,
    ) -> None:
        """Add a task inside the caller's transaction.

        With ``dedupe_key`` a live task of the same key makes this a no-op. ``revive`` also
        brings a finished (done or failed) task of that key back to the queue, fresh.
        """
        self.mark_enqueued(session)
        now = utcnow()
        values = {
            "kind": kind,
            "job_id": job_id,
            "payload": dict(payload or {}),
            "status": TaskStatus.QUEUED.value,
            "attempts": 0,
            "max_attempts": max_attempts or self.default_max_attempts,
            "run_after": now + timedelta(seconds=delay),
            "dedupe_key": dedupe_key,
            "created_at": now,
            "updated_at": now,
        }
        if dedupe_key is None:
            session.add(Task(**values))
            return
        stmt = upsert_insert(session, Task).values(**values)
        if revive:
            finished = Task.status.in_([TaskStatus.DONE.value, TaskStatus.FAILED.value])
            revived = {
                k: values[k]
                for k in (
                    "payload",
                    "status",
                    "attempts",
                    "max_attempts",
                    "run_after",
                    "updated_at",
                )
            }
            revived |= {"locked_by": None, "locked_until": None, "last_error": None}
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[Task.dedupe_key], set_=revived, where=finished
                )
            )
        else:
            session.execute(stmt.on_conflict_do_nothing(index_elements=[Task.dedupe_key]))

    @staticmethod
    def mark_enqueued(session: Session) -> None:
        """Note that this transaction queued work: its commit wakes the workers (wakeup.py)."""
        session.info[ENQUEUED] = True

    def expedite(self, session: Session, dedupe_key: str, *, within: float) -> None:
        """Make a queued task due now if it would otherwise wait more than ``within`` seconds."""
        now = utcnow()
        session.execute(
            update(Task)
            .where(
                Task.dedupe_key == dedupe_key,
                Task.status == TaskStatus.QUEUED.value,
                Task.run_after > now + timedelta(seconds=within),
            )
            .values(run_after=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )

    def claim(self, worker_id: str, limit: int) -> list[ClaimedTask]:
        """Lease up to ``limit`` due tasks, including ones whose previous lease ran out.

        A queued task's attempt is counted here; one taken over from a worker whose lease
        ran out is not (``ClaimedTask.counted``): run it through count_attempt first.
        """
        if limit <= 0:
            return []
        now = utcnow()
        running = Task.status == TaskStatus.RUNNING.value
        due = or_(
            and_(Task.status == TaskStatus.QUEUED.value, Task.run_after <= now),
            and_(running, Task.locked_until < now),
        )
        values = {
            "status": TaskStatus.RUNNING.value,
            "locked_by": worker_id,
            "locked_until": now + self.lease,
            # SET sees the row as it was: a task still "running" was taken over.
            "attempts": Task.attempts + case((running, 0), else_=1),
            "updated_at": now,
        }
        columns = (Task.id, Task.kind, Task.job_id, Task.attempts, Task.max_attempts, Task.payload)
        # SKIP LOCKED so two workers claiming at once each get different rows, without waiting.
        candidates = (
            select(Task.id, running.label("taken_over"))
            .where(due)
            .order_by(Task.run_after, Task.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows: Sequence[Any]
        with self._one_statement() as conn:
            if conn.dialect.name == "postgresql":
                # One statement (UPDATE ... FROM), the candidates' old state returned with the
                # new row.
                picked = candidates.subquery()
                rows = conn.execute(
                    update(Task)
                    .where(Task.id == picked.c.id)
                    .values(values)
                    .returning(*columns, picked.c.taken_over)
                    .execution_options(synchronize_session=False)
                ).all()
            else:
                # SQLite cannot return a joined table's columns; its claim is a transaction
                # holding the write lock (BEGIN IMMEDIATE), so reading first is as atomic.
                old: dict[int, bool] = dict(conn.execute(candidates).all())
                rows = [
                    (*row, old[row[0]])
                    for row in conn.execute(
                        update(Task)
                        .where(Task.id.in_(list(old)))
                        .values(values)
                        .returning(*columns)
                        .execution_options(synchronize_session=False)
                    )
                ]
        return sorted(
            (
                ClaimedTask(
                    id, TaskKind(kind), job_id, attempts, max_attempts, payload, not taken_over
                )
                for id, kind, job_id, attempts, max_attempts, payload, taken_over in rows
            ),
            key=lambda t: t.id,
        )

    def count_attempt(self, task: ClaimedTask, worker_id: str) -> ClaimedTask | None:
        """Count a taken-over task's attempt, durably, before it runs; None if the lease is
        no longer ours. Committed before the handler starts, so a task that crashes its worker
        every time still runs out of attempts."""
        if task.counted:
            return task
        with self._one_statement() as conn:
            attempts = conn.execute(
                update(Task)
                .where(Task.id == task.id, Task.locked_by == worker_id)
                .values(attempts=Task.attempts + 1, updated_at=utcnow())
                .returning(Task.attempts)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
        return None if attempts is None else replace(task, attempts=attempts, counted=True)

    @contextmanager
    def _one_statement(self) -> Iterator[Connection]:
        """A connection for a statement that is a transaction by itself (a claim).

        On PostgreSQL in autocommit mode: one round trip instead of BEGIN, it, COMMIT, and
        just as atomic. On SQLite a transaction as everywhere (BEGIN IMMEDIATE).
        """
        if self.db.dialect == "postgresql":
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                yield c
        else:
            with self.db.engine.begin() as c:
                yield c

    def _finish(self, task: ClaimedTask, worker_id: str, **values: Any) -> bool:
        # Only the lease holder may settle a task: if our lease ran out and another worker
        # took the task over, its outcome wins and ours is dropped.
        with self.db.transaction() as session:
            result = session.execute(
                update(Task)
                .where(Task.id == task.id, Task.locked_by == worker_id)
                .values(updated_at=utcnow(), **values)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def complete(self, task: ClaimedTask, worker_id: str) -> bool:
        return self._finish(
            task, worker_id, status=TaskStatus.DONE.value, locked_by=None, locked_until=None
        )

    def complete_many(self, tasks: Sequence[ClaimedTask], worker_id: str) -> set[int]:
        """Mark tasks done in one statement; the ids recorded (those we still held)."""
        with self.db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                # No wait for the WAL flush: if the database crashes before it, these tasks
                # are found running with their lease and are run again once it expires, the
                # at-least-once every handler is written for (never twice while it holds).
                session.execute(text("SET LOCAL synchronous_commit = off"))
            rows = session.execute(
                update(Task)
                .where(Task.id.in_([t.id for t in tasks]), Task.locked_by == worker_id)
                .values(
                    status=TaskStatus.DONE.value,
                    locked_by=None,
                    locked_until=None,
                    updated_at=utcnow(),
                )
                .returning(Task.id)
                .execution_options(synchronize_session=False)
            )
            return set(rows.scalars())

    def retry(self, task: ClaimedTask, worker_id: str, delay: float, error: str | None) -> bool:
        return self._finish(
            task,
            worker_id,
            status=TaskStatus.QUEUED.value,
            run_after=utcnow() + timedelta(seconds=delay),
            locked_by=None,
            locked_until=None,
            last_error=error,
        )

    def reschedule(self, task: ClaimedTask, worker_id: str, delay: float) -> bool:
        """Run again later without it counting as a failure (a poll that found no result)."""
        return self.retry(task, worker_id, delay, None)

    def postpone(self, task: ClaimedTask, worker_id: str, delay: float, error: str) -> bool:
        """Run again after ``delay`` without counting the attempt: the database, not the task,
        failed, and an outage must not use up a task's attempts."""
        return self._finish(
            task,
            worker_id,
            status=TaskStatus.QUEUED.value,
            attempts=Task.attempts - int(task.counted),
            run_after=utcnow() + timedelta(seconds=delay),
            locked_by=None,
            locked_until=None,
            last_error=error,
        )

    def fail(self, task: ClaimedTask, worker_id: str, error: str) -> bool:
        return self._finish(
            task,
            worker_id,
            status=TaskStatus.FAILED.value,
            locked_by=None,
            locked_until=None,
            last_error=error,
        )

    def release(self, tasks: Sequence[ClaimedTask], worker_id: str) -> None:
        """Give tasks back untried (shutdown): queued now, the attempt not counted."""
        if not tasks:
            return
        now = utcnow()
        counted = [t.id for t in tasks if t.counted]
        with self.db.transaction() as session:
            session.execute(
                update(Task)
                .where(Task.id.in_([t.id for t in tasks]), Task.locked_by == worker_id)
                .values(
                    status=TaskStatus.QUEUED.value,
                    attempts=Task.attempts - case((Task.id.in_(counted), 1), else_=0),
                    run_after=now,
                    locked_by=None,
                    locked_until=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )

    def extend(self, task_ids: Sequence[int], worker_id: str) -> None:
        """Renew the leases of tasks still running (the worker's heartbeat)."""
        if not task_ids:
            return
        with self.db.transaction() as session:
            session.execute(
                update(Task)
                .where(Task.id.in_(task_ids), Task.locked_by == worker_id)
                .values(locked_until=utcnow() + self.lease)
                .execution_options(synchronize_session=False)
            )
