"""A worker in a process of its own, for the cross-process tests (tests/integration/test_speed.py).

    python -m tests.support.worker_proc DATABASE_URL OUT_FILE wake|poll [TASK_SECONDS]

Runs a Worker whose SUBMIT (and DELIVER_EVENT) handler takes TASK_SECONDS (default 0) and appends
"ran <task id>" to OUT_FILE. With ``wake`` it
listens for wake-ups and its poll interval is 60 s, so only a wake-up can make it prompt;
it writes "ready" once it listens. With ``poll`` it polls every 50 ms (no wake-up).
SIGTERM stops it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from service.db.session import Database, make_engine
from service.tasks.kinds import TaskKind
from service.tasks.queue import ClaimedTask, TaskQueue
from service.tasks.retry_policy import RetryPolicy
from service.tasks.wakeup import Wakeup, build_wakeup
from service.tasks.worker import Worker


class AnnouncingWakeup:
    """The real wake-up, writing "ready" when it first reports that it listens."""

    def __init__(self, inner: Wakeup, write: Callable[[str], None]) -> None:
        self.inner = inner
        self.write = write
        self.ready = False

    def notify(self) -> None:
        self.inner.notify()

    def close(self) -> None:
        self.inner.close()

    def listen(self, on_wake: Callable[[], None], stop: threading.Event) -> None:
        def wake() -> None:
            if not self.ready:
                self.ready = True
                self.write("ready")
            on_wake()

        self.inner.listen(wake, stop)


def main() -> int:
    url, out, mode = sys.argv[1:4]
    task_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    lock = threading.Lock()
    sink = open(out, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def write(line: str) -> None:
        with lock:
            sink.write(line + "\n")

    def handler(task: ClaimedTask) -> None:
        time.sleep(task_seconds)
        write(f"ran {task.id}")

    def give_up(task: ClaimedTask, exc: BaseException) -> None:
        write(f"gave up {task.id}: {exc}")

    queue = TaskQueue(Database(make_engine(url)), lease_seconds=60, default_max_attempts=3)
    wakeup = build_wakeup(url) if mode == "wake" else None
    worker = Worker(
        queue,
        {TaskKind.SUBMIT: handler, TaskKind.DELIVER_EVENT: handler},
        on_give_up=give_up,
        policy=RetryPolicy(),
        concurrency=4,
        poll_interval=60.0 if wakeup is not None else 0.05,
        wakeup=AnnouncingWakeup(wakeup, write) if wakeup is not None else None,
        shutdown_grace=2.0,
    )
    if wakeup is None:
        write("ready")
    with worker.signals_handled():
        worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
