"""Group commit for task completions: many finished tasks, one UPDATE, one commit.

A worker finishing short tasks spent most of its time committing "done" one task at a
time, and a runner waiting for its own commit could not start the next task. Here a runner
hands a finished task over and moves on; one recorder thread marks done, in one statement,
every task handed over since its last write, while the runners fill the next batch. A task
stays held (its lease renewed by the worker's heartbeat) until the database has its
outcome: a database outage delays the write, it does not lose the outcome, and nothing is
reported done before it is recorded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.db.availability import DatabaseUnavailable, until_answered
from service.tasks.queue import ClaimedTask, TaskQueue

log = logging.getLogger(__name__)

# Called for each task once its completion is written, or given up on: (task, when it
# started, outcome), the outcome "done", "lease_lost" or "unrecorded".
Settle = Callable[[ClaimedTask, float, str], None]


class CompletionRecorder:
    def __init__(
        self,
        queue: TaskQueue,
        worker_id: str,
        *,
        settle: Settle,
        abandon_writes: threading.Event,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self._settle = settle
        # Set when shutdown's grace runs out: a write stops waiting for the database.
        self._abandon_writes = abandon_writes
        self._cond = threading.Condition()
        self._pending: list[tuple[ClaimedTask, float]] = []
        self._closed = False

    def add(self, task: ClaimedTask, started: float) -> bool:
        """Hand over a finished task; False once closed (the caller records it itself)."""
        with self._cond:
            if self._closed:
                return False
            self._pending.append((task, started))
            self._cond.notify()
        return True

    def run(self) -> None:
        """Write completions until closed and nothing is pending (a thread of its own)."""
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                batch, self._pending = self._pending, []
            if not batch:
                return
            self._write(batch)

    def close(self) -> None:
        """Take no more; run() returns once what was handed over is written."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _write(self, batch: list[tuple[ClaimedTask, float]]) -> None:
        tasks = [task for task, _ in batch]
        recorded: set[int] | None = None
        try:
            recorded = until_answered(
                lambda: self.queue.complete_many(tasks, self.worker_id),
                what="completing tasks",
                stop=self._abandon_writes,
                extra={"task_ids": [t.id for t in tasks]},
            )
        except DatabaseUnavailable:
            # Stopping while the database is away: the leases bring the tasks back.
            log.warning("leaving tasks to their lease", extra={"task_ids": [t.id for t in tasks]})
        except Exception:  # a bug must not kill the recorder; the leases bring the tasks back
            log.exception("completing tasks failed", extra={"task_ids": [t.id for t in tasks]})
        for task, started in batch:
            if recorded is None:
                outcome = "unrecorded"
            else:
                outcome = "done" if task.id in recorded else "lease_lost"
            self._settle(task, started, outcome)
