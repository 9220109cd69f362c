"""Group commit for task completions: many finished tasks, one UPDATE, one commit.

A worker finishing short tasks spent most of its time committing "done" one task at a
time, each commit waiting for its own WAL flush. Here the first thread to finish becomes
the flusher: it marks done, in one statement, its own task and every other that finished
meanwhile, and repeats until none is waiting; the others wait for the flush that carries
theirs. A completion is still recorded before complete() returns, so the caller (the
worker's execute()) sees the same contract as TaskQueue.complete: True if recorded, False
if the lease had passed to another worker, or the exception if the write failed.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from service.tasks.queue import ClaimedTask, TaskQueue


class CompletionBatcher:
    def __init__(self, queue: TaskQueue, worker_id: str) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._pending: list[tuple[ClaimedTask, Future[bool]]] = []
        self._flushing = False

    def complete(self, task: ClaimedTask) -> bool:
        mine: Future[bool] = Future()
        with self._lock:
            self._pending.append((task, mine))
            lead = not self._flushing
            self._flushing = True
        if lead:
            self._flush_until_empty()
        return mine.result()

    def _flush_until_empty(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._flushing = False
                    return
            try:
                recorded = self.queue.complete_many([t for t, _ in batch], self.worker_id)
            except Exception as exc:  # noqa: BLE001 - each waiter gets it, as complete() would
                for _, waiter in batch:
                    waiter.set_exception(exc)
            else:
                for task, waiter in batch:
                    waiter.set_result(task.id in recorded)
