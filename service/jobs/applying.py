"""The worker's half of a webhook: apply stored callbacks to their jobs (the state machine).

The webhook request only stored the callback, marked pending (jobs/ingest.py). The worker
loop calls ``PendingCallbacks.apply`` before it claims tasks: it takes the oldest pending
callbacks (skipping those another worker holds), and for each locks its job and moves it on
through records.advance()/fail() (results.apply), queueing the archive on success, all in
one transaction that also clears their ``pending``. A crash before the commit leaves them
pending for the next pass. Applying one twice is harmless anyway: advance() refuses a move
the job has already made, and the archive task is deduplicated per job. A callback whose job
another transaction holds (an erasure, say) is not waited for: it stays pending for a later
pass, so the intake, which holds callback locks, never waits on a job lock.

A callback whose application raises (a bug, a row that cannot be read) is not retried in a
loop: it gets a ``callback`` task instead, which the queue retries with backoff and gives up
on visibly. ``CallbackApplier`` runs those tasks, and those that earlier releases queued
for every callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db import pending_callbacks
from service.db.availability import is_unavailable
from service.db.models import Callback
from service.db.session import Database
from service.errors import PermanentError
from service.jobs import records, results
from service.tasks.kinds import TaskKind
from service.tasks.queue import ClaimedTask, TaskQueue

log = logging.getLogger(__name__)


def _apply(
    session: Session,
    queue: TaskQueue,
    timing: results.PollTiming,
    callback_id: int,
    job_id: str,
    result: dict[str, Any],
    *,
    wait: bool = True,
) -> bool:
    """Apply one callback to its job; False (nothing done) when ``wait`` is off and another
    transaction holds the job."""
    if wait:
        job = records.get_job(session, job_id, for_update=True)
    elif (held := records.lock_job_unless_held(session, job_id)) is None:
        return False
    else:
        job = held
    answer = results.result_from_json(result)
    results.apply(session, queue, job, answer, callback_id, timing=timing)
    return True


@dataclass
class PendingCallbacks:
    """Applies the webhook callbacks still pending, oldest first, a batch per transaction."""

    db: Database
    queue: TaskQueue
    timing: results.PollTiming
    batch: int = 100

    def __call__(self) -> bool:
        """The worker's intake: apply a batch; True when it was full and some of it was
        applied (more may wait)."""
        taken, settled = self._pass()
        return taken == self.batch and settled > 0

    def apply(self) -> int:
        """Apply up to ``batch`` pending callbacks; how many were settled: applied, or handed
        to a ``callback`` task. One whose job another transaction holds stays pending."""
        return self._pass()[1]

    def _pass(self) -> tuple[int, int]:
        """(callbacks taken, callbacks settled) of one batch."""
        # A plain read first: nearly every pass finds nothing, and on SQLite a transaction
        # takes the write lock the webhooks wait on.
        with self.db.read() as conn:
            dialect = conn.dialect.name
            waiting = pending_callbacks.pending(dialect)
            found = conn.execute(select(Callback.id).where(waiting).limit(1)).first()
            behind = found is None and pending_callbacks.lag(conn) > pending_callbacks.LAG
        if found is None:
            if behind:  # callbacks that were never pending piled up above SQLite's floor
                with self.db.transaction() as session:
                    pending_callbacks.advance(session)
            return 0, 0
        with self.db.transaction() as session:
            rows = session.execute(
                select(Callback.id, Callback.job_id, Callback.result)
                .where(waiting)
                .order_by(Callback.id)
                .limit(self.batch)
                # Two workers share the backlog instead of queueing on each other's rows.
                .with_for_update(skip_locked=True)
            ).all()
            settled: list[int] = []
            for callback_id, job_id, result in rows:
                try:
                    with session.begin_nested():
                        # Not waiting for the job's lock: this transaction holds callback
                        # locks, and an erasure locks a job before it deletes its callbacks.
                        # Waiting here could deadlock with it; skipped, the callback is
                        # applied on a later pass.
                        if not _apply(
                            session,
                            self.queue,
                            self.timing,
                            callback_id,
                            job_id,
                            result,
                            wait=False,
                        ):
                            continue
                except Exception as exc:
                    if is_unavailable(exc):
                        raise
                    log.exception(
                        "applying a callback failed; it is retried as a task",
                        extra={"callback_id": callback_id, "job_id": job_id},
                    )
                    self.queue.enqueue(
                        session,
                        TaskKind.CALLBACK,
                        job_id=job_id,
                        payload={"callback_id": callback_id},
                    )
                settled.append(callback_id)
            if settled:
                session.execute(
                    update(Callback)
                    .where(Callback.id.in_(settled))
                    .values(pending=False)
                    .execution_options(synchronize_session=False)
                )
            pending_callbacks.advance(session)
        return len(rows), len(settled)


@dataclass
class CallbackApplier:
    """The ``callback`` task: one callback that failed to apply in a batch, or one an
    earlier release queued."""

    db: Database
    queue: TaskQueue
    timing: results.PollTiming

    def __call__(self, task: ClaimedTask) -> None:
        callback_id = task.payload.get("callback_id")
        if not isinstance(callback_id, int):
            raise PermanentError("callback task without a callback_id")
        with self.db.transaction() as session:
            callback = records.callback(session, callback_id)
            if callback is None:
                raise PermanentError(f"callback {callback_id} is gone")
            _apply(session, self.queue, self.timing, callback.id, callback.job_id, callback.result)
            callback.pending = False
