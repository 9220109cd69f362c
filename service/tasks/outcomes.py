"""What becomes of a task once its handler has answered, written to the queue.

done, rescheduled, a retry after a backoff, postponed (the database failed, not the task),
or failed and its job told why. Every write waits out a database outage: the outcome is
kept, with the task's lease, until the database takes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from service.db.availability import DatabaseUnavailable, is_unavailable, until_answered
from service.errors import PermanentError
from service.tasks.queue import ClaimedTask, TaskQueue
from service.tasks.retry_policy import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reschedule:
    """A handler's answer meaning "not yet: run me again in ``delay`` seconds"."""

    delay: float


# Called once when a task is given up on: the job must learn why.
GiveUp = Callable[[ClaimedTask, BaseException], None]


class OutcomeWriter:
    def __init__(
        self,
        queue: TaskQueue,
        worker_id: str,
        *,
        on_give_up: GiveUp,
        policy: RetryPolicy,
        abandon_writes: threading.Event,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.on_give_up = on_give_up
        self.policy = policy
        # Set when shutdown's grace runs out: writes stop waiting for the database.
        self._abandon_writes = abandon_writes

    def write(self, task: ClaimedTask, answer: Reschedule | Exception | None) -> str:
        """Record the handler's answer (or what it raised); the outcome, for the log.

        Raises DatabaseUnavailable when stopping while the database is away.
        """
        if isinstance(answer, Exception):
            return self._record_failure(task, answer)
        if isinstance(answer, Reschedule):
            kept = self._durably(task, "rescheduling a task", self.queue.reschedule, answer.delay)
            return "rescheduled" if kept else "lease_lost"
        kept = self._durably(task, "completing a task", self.queue.complete)
        return "done" if kept else "lease_lost"

    def _durably(
        self, task: ClaimedTask, what: str, write: Callable[..., bool], *args: object
    ) -> bool:
        """Write a task's outcome, waiting out a database outage; False: the lease was lost."""
        return until_answered(
            lambda: write(task, self.worker_id, *args),
            what=what,
            stop=self._abandon_writes,
            extra={"task_id": task.id, "job_id": task.job_id},
        )

    def _record_failure(self, task: ClaimedTask, exc: Exception) -> str:
        if is_unavailable(exc):
            # The database, not the task, failed: retry soon, without using up an attempt.
            pause = self.policy.delay(1, exc) or self.policy.base_seconds
            log.warning(
                "database unavailable; task postponed %.1fs: %s",
                pause,
                type(exc).__name__,
                extra={"task_id": task.id, "kind": task.kind, "job_id": task.job_id},
            )
            kept = self._durably(task, "postponing a task", self.queue.postpone, pause, str(exc))
            return "postponed" if kept else "lease_lost"
        delay = self.policy.delay(task.attempts, exc)
        if not isinstance(exc, PermanentError) and delay is None:
            exc = PermanentError(f"gave up after {task.attempts} attempts: {exc}")
        if delay is not None:
            log.warning(
                "task will retry in %.1fs: %s",
                delay,
                exc,
                extra={"task_id": task.id, "kind": task.kind, "job_id": task.job_id},
                exc_info=not hasattr(exc, "message"),
            )
            kept = self._durably(task, "recording a retry", self.queue.retry, delay, str(exc))
            return "retry" if kept else "lease_lost"
        failure = exc
        try:
            until_answered(
                lambda: self.on_give_up(task, failure),
                what="failing a job",
                stop=self._abandon_writes,
                extra={"task_id": task.id, "job_id": task.job_id},
            )
        except DatabaseUnavailable:
            raise
        except Exception:  # logged; the lease brings the task back
            # Leave the task leased: it comes back when the lease runs out, and give-up runs again.
            log.exception("recording a failure failed", extra={"task_id": task.id})
            return "error"
        kept = self._durably(task, "failing a task", self.queue.fail, str(exc))
        return "failed" if kept else "lease_lost"
