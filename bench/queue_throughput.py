"""Task queue throughput: no-op tasks claimed and completed by one worker, on PostgreSQL.

Inserts --tasks due tasks in bulk, then runs one Worker (its real run loop, threads and
all; --concurrency, default the shipped worker_concurrency of 4) whose handler does
nothing, and times until every task is recorded done. Prints tasks/s against the goal.

    .venv/bin/python bench/queue_throughput.py [--tasks 5000] [--concurrency 4]
    .venv/bin/python bench/queue_throughput.py --root /path/to/other/checkout  # that code
    .venv/bin/python bench/queue_throughput.py --logs  # a line per task, as a worker logs
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 2000


def main() -> int:  # noqa: PLR0915 - one straight script
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code is measured")
    parser.add_argument(
        "--logs",
        action="store_true",
        help="log as `genvault worker` does (JSON lines at INFO), into /dev/null",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(args.root.resolve()))  # its service package first

    import logging

    from sqlalchemy import func, insert, select

    from service.db.migrate import upgrade
    from service.db.models import Task
    from service.db.session import Database, make_engine
    from service.db.types import utcnow
    from service.tasks.kinds import TaskKind
    from service.tasks.queue import ClaimedTask, TaskQueue
    from service.tasks.retry_policy import RetryPolicy
    from service.tasks.worker import Worker
    from tests.support.db import create_pg_database, drop_pg_database

    if args.logs:
        from service.logs import configure

        configure("INFO", json_lines=True)
        devnull = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
        for handler in logging.getLogger().handlers:
            handler.setStream(devnull)  # type: ignore[attr-defined]
    else:
        logging.disable(logging.INFO)  # the worker logs every task at INFO
    try:
        url = create_pg_database()
    except BaseException as exc:  # pytest.skip is a BaseException
        print(f"queue: skipped ({exc})")
        return 0
    try:
        db = Database(make_engine(url))
        upgrade(db.engine)
        queue = TaskQueue(db, lease_seconds=300, default_max_attempts=3)
        now = utcnow()
        rows = [
            {
                "kind": TaskKind.POLL.value,
                "job_id": None,
                "payload": {},
                "status": "queued",
                "attempts": 0,
                "max_attempts": 3,
                "run_after": now,
                "created_at": now,
                "updated_at": now,
            }
            for _ in range(args.tasks)
        ]
        with db.engine.begin() as conn:
            conn.execute(insert(Task), rows)

        def noop(_task: ClaimedTask) -> None:
            return None

        def give_up(task: ClaimedTask, exc: BaseException) -> None:
            raise AssertionError(f"task {task.id} failed: {exc}")

        worker = Worker(
            queue,
            {TaskKind.POLL: noop},
            on_give_up=give_up,
            policy=RetryPolicy(),
            concurrency=args.concurrency,
        )

        def done() -> int:
            with db.engine.connect() as conn:
                q = select(func.count()).select_from(Task).where(Task.status == "done")
                return int(conn.execute(q).scalar_one())

        runner = threading.Thread(target=worker.run, daemon=True)
        t0 = time.perf_counter()
        runner.start()
        deadline = t0 + 120
        while done() < args.tasks and time.perf_counter() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        finished = done()
        worker.stop()
        runner.join(timeout=30)
        rate = finished / elapsed
        print(
            f"queue (postgresql): {finished} of {args.tasks} no-op tasks in {elapsed:.2f} s by one"
            f" worker, concurrency {args.concurrency}: {rate:,.0f} tasks/s"
            f"  ({rate / GOAL:.2f}x the goal of {GOAL:,}/s)"
        )
        db.dispose()
    finally:
        drop_pg_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
