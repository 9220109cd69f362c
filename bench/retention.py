"""Database bytes per job, with and without retention (GENVAULT_RETENTION_DAYS), on PostgreSQL.

Starts moto's S3, the sandbox, gunicorn and one `genvault worker` on a fresh PostgreSQL
database, with two HTTP event endpoints (loopback receivers, every event type), and runs
--jobs jobs of two images each to `archived`, every event delivered. Then, with the stack
stopped:

1. "kept forever" (today without retention): every row the run wrote, per job, by table
   (``pg_total_relation_size``: heap, TOAST and indexes, of a fresh copy of the database made
   with `genvault db copy`'s function, so only live rows count: the space a steady state
   reuses);
2. "after the window": the operational rows' clocks are moved back past the window and
   `prune` runs (the same function the workers and `genvault prune` call); measured again.

Rows past the window cost nothing at steady state, so a database that has run for H days at
a steady rate with a window of W days holds per job: what the window keeps for ever (jobs,
assets, the callback each archive worked from) + (W / H) x what it lets go. The last line
prints that for a year of history.

    .venv/bin/python bench/retention.py [--jobs 200] [--rate 8] [--window-days 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_support import create_bucket, moto_server  # noqa: E402

from service.db.copy import copy_database  # noqa: E402
from service.db.migrate import upgrade  # noqa: E402
from service.db.models import Base  # noqa: E402
from service.db.retention import prune  # noqa: E402
from service.db.session import Database, make_engine  # noqa: E402
from tests.support.db import create_pg_database, drop_pg_database  # noqa: E402
from tests.support.receivers import start_receiver  # noqa: E402
from tests.support.stack import start_stack  # noqa: E402

# The operational rows and the clock each is pruned by.
CLOCKS = {
    "tasks": "updated_at",
    "callbacks": "received_at",
    "events": "created_at",
    "event_deliveries": "created_at",
    "event_delivery_attempts": "at",
}


def sizes(url: str) -> dict[str, int]:
    """Each table's bytes (heap, TOAST, indexes)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        out = {
            t.name: int(
                conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t.name}).scalar_one()
            )
            for t in Base.metadata.sorted_tables
        }
    engine.dispose()
    return out


def live_sizes(url: str, scratch: list[str]) -> dict[str, int]:
    """The bytes of the live rows alone: measured on a fresh copy (`genvault db copy`).

    Rather than ``VACUUM FULL``, which cannot reclaim a row while any transaction on the
    server (another database's too, through this session's own snapshot) is older than its
    deletion: on a shared server the figures would then depend on the neighbours.
    """
    copy = create_pg_database()
    scratch.append(copy)
    source, target = make_engine(url), make_engine(copy)
    upgrade(target)
    copy_database(source, target)
    source.dispose()
    target.dispose()
    return sizes(copy)


def run_jobs(url: str, tmp: Path, s3_url: str, jobs: int, rate: float) -> int:
    """Jobs through the real stack to archived, with every event delivered; the job count."""
    receivers = [start_receiver(), start_receiver()]
    stack = start_stack(
        tmp,
        s3_url,
        "bench",
        url,
        workers=1,
        GENVAULT_EVENTS_ALLOWED_NETWORKS="127.0.0.1/32",
        GENVAULT_RETENTION_DAYS="0",
        GENVAULT_LOG_LEVEL="WARNING",
    )
    try:
        for rx in receivers:
            r = requests.post(
                f"{stack.web_url}/v1/endpoints",
                json={"url": rx.url},
                headers=stack.auth,
                timeout=10,
            )
            r.raise_for_status()
        started = time.monotonic()
        ids = []
        for i in range(jobs):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            job = stack.submit(
                "modelslab/text2img",
                {"model_id": "flux", "prompt": f"a lighthouse at dusk, {i}", "samples": 2},
                metadata={"order": f"o-{i}", "customer": "bench"},
            )
            ids.append(job["id"])
        for job_id in ids:
            stack.wait_status(job_id, "archived", "failed", timeout=120)
        engine = create_engine(url)
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                pending = conn.execute(
                    text("SELECT count(*) FROM event_deliveries WHERE status = 'pending'")
                ).scalar_one()
                conn.rollback()
                if pending == 0:
                    break
                time.sleep(0.2)
        engine.dispose()
    finally:
        stack.stop()
        for rx in receivers:
            rx.server.shutdown()
    return len(ids)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=8.0, help="jobs submitted per second")
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--history-days", type=int, default=365)
    args = parser.parse_args()
    url = create_pg_database()
    scratch = [url]
    try:
        with tempfile.TemporaryDirectory() as tmp, moto_server() as s3:
            create_bucket(s3.url)
            jobs = run_jobs(url, Path(tmp), s3.url, args.jobs, args.rate)
        engine = make_engine(url)
        with engine.begin() as conn:
            rows = {
                t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in CLOCKS
            }
        before = live_sizes(url, scratch)
        with engine.begin() as conn:
            for table, clock in CLOCKS.items():
                conn.execute(
                    text(f"UPDATE {table} SET {clock} = {clock} - :shift"),
                    {"shift": timedelta(days=args.window_days + 1)},
                )
        db = Database(engine)
        t0 = time.perf_counter()
        removed = prune(db, timedelta(days=args.window_days))
        seconds = time.perf_counter() - t0
        db.dispose()
        after = live_sizes(url, scratch)
    finally:
        for name in scratch:
            drop_pg_database(name)

    print(f"{jobs} jobs of 2 images, 2 event endpoints, PostgreSQL; bytes per job by table")
    print(f"  {'table':<26} {'rows/job':>8} {'kept forever':>13} {'after window':>13}")
    for name in before:
        per = rows.get(name)
        shown = f"{per / jobs:8.1f}" if per is not None else " " * 8
        print(f"  {name:<26} {shown} {before[name] / jobs:13.0f} {after[name] / jobs:13.0f}")
    total_before, total_after = sum(before.values()) / jobs, sum(after.values()) / jobs
    print(f"  {'total':<26} {'':8} {total_before:13.0f} {total_after:13.0f}")
    print(f"prune removed {removed} in {seconds:.2f} s")
    # What the window keeps for ever (jobs, assets, each archived job's result callback)
    # against what it lets go; at steady state only the last W days of the latter are held.
    transient = total_before - total_after
    share = min(1.0, args.window_days / args.history_days)
    print(
        f"steady state after {args.history_days} days at a constant rate: without retention "
        f"{total_before / 1024:.1f} KB/job (every job adds it for ever); with "
        f"GENVAULT_RETENTION_DAYS={args.window_days} "
        f"{(total_after + share * transient) / 1024:.1f} KB/job ({total_after / 1024:.1f} KB "
        f"kept for ever + {share:.0%} of {transient / 1024:.1f} KB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
