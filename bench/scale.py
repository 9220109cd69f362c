"""Cost that does not grow with the archive: the same figures on 20 jobs and on a million.

On PostgreSQL, two databases side by side, each with its own stack (gunicorn, 4 processes x
4 threads; the sandbox; one worker; moto's S3): 20 real jobs are driven end to end on each
(submit -> webhook -> archived, two failed by the provider), then the large one is cloned in
SQL (INSERT ... SELECT over generate_series) to --jobs more jobs, spread over the past year,
with their assets, callbacks, finished tasks and events (1% more failed; every prompt gets a
word of its own), and both are VACUUM (ANALYZE)d. Then, in turns (small, large, small, ...)
so that the shared machine's load falls on both alike, from outside:

  - GET /v1/jobs?limit=50 and GET /v1/jobs?status=failed&limit=50   (median of --rounds)
  - the gallery's first page, and its q for a rare word (one job), a common one (every
    job) and one clone's own word
  - no-op task claims per second: one in-process Worker, --tasks due tasks (median of 3;
    enough that the worker's start is not the figure)
  - webhook ingest: wrk -t2 -c32 for --wrk-seconds, each request a new success callback for
    a fresh job (median of 2; those jobs are deleted again afterwards)

Prints each figure on both and the ratio (goal: within 1.5x; the rare word <= 50 ms).

    .venv/bin/python bench/scale.py [--jobs 1000000] [--rounds 20] [--wrk-seconds 4]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_support import create_bucket, moto_server  # noqa: E402
from ingest import SHAPE, insert_jobs, write_lines  # noqa: E402
from ingest import wrk as run_wrk  # noqa: E402
from sqlalchemy import text  # noqa: E402

from service.db.session import make_engine  # noqa: E402
from tests.support.db import create_pg_database, drop_pg_database  # noqa: E402
from tests.support.stack import TOKEN, Stack, start_stack  # noqa: E402

REAL = 20
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:5.0f} s] {message}", flush=True)


RARE = "kestrel7"  # in one real job's prompt; clones get prompts of their own
COMMON = "fox"  # in every prompt


def real_jobs(stack: Stack) -> list[str]:
    """Submitted through the API, answered by the sandbox's webhook, archived by the worker;
    two fail at the provider, so the failed list is not empty on the small database."""
    ids = []
    for i in range(REAL):
        fail = " [sandbox:fail]" if i % 10 == 3 else ""
        params = {"model_id": "m", "prompt": f"a {COMMON} in the snow kestrel{i}{fail}"}
        params.update(width=512, height=512)
        ids.append(stack.submit("modelslab/text2img", params, metadata={"order": f"o-{i}"})["id"])
    for i, job_id in enumerate(ids):
        stack.wait_status(job_id, "failed" if i % 10 == 3 else "archived", timeout=60)
    return ids


# One statement per table; :real is the 20 real jobs, clone_map the new ids and times.
CLONE = [
    """CREATE TEMP TABLE clone_map AS
       SELECT s, src, ms, to_timestamp(ms / 1000.0) AS at,
              lpad(to_hex(ms), 12, '0') || substr(md5(s::text), 1, 20) AS dst
       FROM (SELECT s, src, now_ms - span_ms + (s * span_ms / n) AS ms
       FROM (SELECT (g - 1) * :k + r.n AS s, r.id AS src,
                    (extract(epoch FROM now()) * 1000)::bigint AS now_ms,
                    365::bigint * 86400000 AS span_ms, CAST(:total AS bigint) AS n
             FROM generate_series(1, :copies) AS g,
                  (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n
                   FROM jobs WHERE id = ANY(:real)) AS r) AS q
       WHERE s < :total) AS t""",
    # Callback ids are given, not drawn, so a clone's result_callback_id is known as it is
    # inserted: the k-th callback of clone s is :cb_base + s * :cb_per_job + k.
    """CREATE TEMP TABLE clone_cb AS
       SELECT id, job_id, row_number() OVER (PARTITION BY job_id ORDER BY id) - 1 AS k
       FROM callbacks WHERE job_id = ANY(:real)""",
    """INSERT INTO jobs (id, project, track_id, endpoint, status, params, metadata,
         provider_request_id, fetch_url, poll_after, error_code, error_message, nsfw,
         manifest_key, manifest_sha256, result_callback_id, idempotency_key,
         request_fingerprint, submitted_at, submit_attempted_at, submit_attempts,
         archived_at, created_at, updated_at)
       SELECT m.dst, 'default', md5(m.dst), j.endpoint,
              CASE WHEN m.s % 100 = 1 THEN 'failed' ELSE j.status END,
              (j.params::jsonb || jsonb_build_object(
                  'prompt', 'a ' || :common || ' by the sea w' || m.s))::json,
              j.metadata, j.provider_request_id, j.fetch_url, NULL,
              CASE WHEN m.s % 100 = 1 THEN 'provider_failed' END,
              CASE WHEN m.s % 100 = 1 THEN 'the provider said no' END, j.nsfw,
              replace(j.manifest_key, j.id, m.dst), j.manifest_sha256,
              :cb_base + m.s * :cb_per_job + rc.k, NULL,
              j.request_fingerprint, m.at, m.at, j.submit_attempts,
              CASE WHEN m.s % 100 = 1 THEN NULL ELSE m.at END, m.at, m.at
       FROM clone_map m JOIN jobs j ON j.id = m.src
            LEFT JOIN clone_cb rc ON rc.id = j.result_callback_id""",
    """INSERT INTO assets (job_id, role, index, key, source_url, sha256, size, content_type,
         width, height, created_at)
       SELECT m.dst, a.role, a.index, replace(a.key, m.src, m.dst), a.source_url, a.sha256,
              a.size, a.content_type, a.width, a.height, m.at
       FROM clone_map m JOIN assets a ON a.job_id = m.src""",
    """INSERT INTO callbacks (id, job_id, source, status, body, result, body_sha256,
         received_at)
       SELECT :cb_base + m.s * :cb_per_job + cc.k, m.dst, c.source, c.status, c.body,
              c.result, c.body_sha256, m.at
       FROM clone_map m JOIN clone_cb cc ON cc.job_id = m.src JOIN callbacks c ON c.id = cc.id""",
    """SELECT setval(pg_get_serial_sequence('callbacks', 'id'), (SELECT max(id) FROM callbacks))""",
    """INSERT INTO tasks (kind, job_id, payload, status, attempts, max_attempts, run_after,
         locked_by, locked_until, last_error, dedupe_key, created_at, updated_at)
       SELECT t.kind, m.dst, replace(t.payload::text, m.src, m.dst)::json, t.status,
              t.attempts, t.max_attempts, m.at, NULL, NULL, NULL,
              replace(t.dedupe_key, m.src, m.dst), m.at, m.at
       FROM clone_map m JOIN tasks t ON t.job_id = m.src
       WHERE t.status IN ('done', 'failed')""",
    """INSERT INTO events (id, type, project, job_id, data, created_at)
       SELECT 'evt_' || lpad(to_hex(m.ms), 12, '0') || substr(md5(e.id || m.s), 1, 20),
              e.type, 'default', m.dst, replace(e.data::text, m.src, m.dst)::json, m.at
       FROM clone_map m JOIN events e ON e.job_id = m.src""",
]


def clone(url: str, real: list[str], total: int) -> dict[str, float]:
    """Clone ``real`` to ``total`` more jobs; the seconds each step took."""
    engine = make_engine(url)
    steps: dict[str, float] = {}
    try:
        with engine.begin() as conn:
            # Bulk-load settings for this transaction only: the rows are consistent by
            # construction, so the foreign-key triggers are skipped (the bench's role is a
            # superuser), and the plain indexes are built once afterwards instead of entry by
            # entry (those behind constraints stay).
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            indexes = conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN"
                    " ('jobs', 'assets', 'callbacks', 'tasks', 'events')"
                    " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
                )
            ).all()
            for name, _ in indexes:
                conn.execute(text(f'DROP INDEX "{name}"'))
            cb_base, cb_per_job = conn.execute(
                text(
                    "SELECT (SELECT coalesce(max(id), 0) + 1 FROM callbacks),"
                    " (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM callbacks"
                    "  WHERE job_id = ANY(:real) GROUP BY job_id) AS per_job)"
                ),
                {"real": real},
            ).one()
            params = {
                "cb_base": cb_base,
                "cb_per_job": cb_per_job,
                "real": real,
                "k": len(real),
                "copies": math.ceil(total / len(real)),
                "total": total,
                "common": COMMON,
            }
            for statement in CLONE:
                t = time.perf_counter()
                conn.execute(text(statement), params)
                name = re.sub(r"\s+", " ", statement.strip())[:32]
                steps[name] = time.perf_counter() - t
            t = time.perf_counter()
            for _, definition in indexes:
                conn.execute(text(definition))
            steps[f"CREATE INDEX x {len(indexes)} (ix_jobs_search, ...)"] = time.perf_counter() - t
            conn.execute(text("DROP TABLE clone_map, clone_cb"))
    finally:
        engine.dispose()
    t = time.perf_counter()
    vacuum(url)
    steps["VACUUM (ANALYZE)"] = time.perf_counter() - t
    return steps


def vacuum(url: str) -> None:
    """What autovacuum would do to a freshly loaded table anyway (statistics, hint bits,
    the visibility map), done now rather than during the measurements."""
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
    finally:
        engine.dispose()


def timed_get(http: requests.Session, url: str) -> float:
    t = time.perf_counter()
    r = http.get(url, timeout=60)
    elapsed = (time.perf_counter() - t) * 1000
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return elapsed


def ui_session(stack: Stack) -> requests.Session:
    http = requests.Session()
    page = http.get(f"{stack.web_url}/ui/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    r = http.post(
        f"{stack.web_url}/ui/login",
        data={"token": TOKEN, "csrf_token": csrf.group(1)},
        timeout=10,
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text[:300]
    return http


def cards(http: requests.Session, url: str) -> int:
    return len(re.findall(r"data-job-id=", http.get(url, timeout=60).text))


def claims_per_second(url: str, tasks: int) -> float:
    """No-op tasks claimed and completed by one Worker (as bench/queue_throughput.py)."""
    import logging

    from sqlalchemy import func, insert, select

    from service.db.models import Task
    from service.db.session import Database
    from service.db.types import utcnow
    from service.tasks.kinds import TaskKind
    from service.tasks.queue import ClaimedTask, TaskQueue
    from service.tasks.retry_policy import RetryPolicy
    from service.tasks.worker import Worker

    logging.disable(logging.INFO)
    db = Database(make_engine(url))
    try:
        queue = TaskQueue(db, lease_seconds=300, default_max_attempts=3)
        now = utcnow()
        row = {
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
        with db.engine.begin() as conn:
            # The worker is stopped: the callbacks of the last ingest run left their tasks.
            conn.execute(text("DELETE FROM tasks WHERE status IN ('queued', 'running')"))
            conn.execute(insert(Task), [dict(row) for _ in range(tasks)])

        def give_up(task: ClaimedTask, exc: BaseException) -> None:
            raise AssertionError(f"task {task.id} failed: {exc}")

        worker = Worker(
            queue,
            dict.fromkeys(TaskKind, lambda _task: None),  # any late stray is a no-op too
            on_give_up=give_up,
            policy=RetryPolicy(),
            concurrency=4,
        )
        # What is left, read off the claim index (status, run_after): never a count of every
        # finished task.
        left_q = (
            select(func.count()).select_from(Task).where(Task.status.in_(["queued", "running"]))
        )

        def left() -> int:
            with db.engine.connect() as conn:
                return int(conn.execute(left_q).scalar_one())

        runner = threading.Thread(target=worker.run, daemon=True)
        t0 = time.perf_counter()
        runner.start()
        while left() and time.perf_counter() < t0 + 120:
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        worker.stop()
        runner.join(timeout=30)
        return (tasks - left()) / elapsed
    finally:
        logging.disable(logging.NOTSET)
        db.dispose()


def ingest_rate(stack: Stack, url: str, tmp: Path, seconds: int, phase: str) -> float:
    # Enough fresh jobs that wrk never sends a callback twice (genvault is well under 4k/s).
    track_ids = insert_jobs(url, 4000 * seconds + 2000)
    warm = write_lines(tmp / f"warm-{phase}.txt", track_ids[:2000])
    fresh = write_lines(tmp / f"fresh-{phase}.txt", track_ids[2000:])
    run_wrk(stack.web_url, warm, 1, 32)
    result = run_wrk(stack.web_url, fresh, seconds, 32)
    assert result.wrapped == 0, result
    assert result.non2xx == 0, result
    # Its jobs go again, so that both phases measure the real jobs (and their clones) alone.
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE ingested (track_id text PRIMARY KEY)"))
        conn.execute(text("INSERT INTO ingested VALUES (:t)"), [{"t": t} for t in track_ids])
        conn.execute(
            text("CREATE TEMP TABLE gone AS SELECT id FROM jobs JOIN ingested USING (track_id)")
        )
        for table in ("callbacks", "tasks", "assets", "events"):
            conn.execute(text(f"DELETE FROM {table} WHERE job_id IN (SELECT id FROM gone)"))
        conn.execute(text("DELETE FROM jobs WHERE id IN (SELECT id FROM gone)"))
        conn.execute(text("DROP TABLE ingested, gone"))
    engine.dispose()
    return result.rate


@dataclass
class Side:
    """One database and the stack serving it: the small one or the large one."""

    name: str
    url: str
    stack: Stack
    api: requests.Session
    ui: requests.Session


def side(name: str, url: str, stack: Stack) -> Side:
    api = requests.Session()
    api.headers.update(stack.auth)
    return Side(name, url, stack, api, ui_session(stack))


def measure(small: Side, large: Side, tmp: Path, args: argparse.Namespace) -> list[Row]:
    """Every figure on both sides, taken in turns (small, large, small, ...) so that the
    shared machine's load falls on both alike."""
    rows: list[Row] = []
    middle = f"w{args.jobs // 2}"
    cases = [
        ("GET /v1/jobs?limit=50 (ms)", "api", "/v1/jobs?limit=50"),
        ("GET /v1/jobs?status=failed&limit=50 (ms)", "api", "/v1/jobs?status=failed&limit=50"),
        ("gallery first page (ms)", "ui", "/ui/"),
        (f"gallery q={RARE} (rare: 1 job) (ms)", "ui", f"/ui/?q={RARE}"),
        (f"gallery q={COMMON} (common: every job) (ms)", "ui", f"/ui/?q={COMMON}"),
        (f"gallery q={middle} (one clone's word) (ms)", "ui", f"/ui/?q={middle}"),
    ]
    for label, session, path in cases:
        samples: dict[str, list[float]] = {small.name: [], large.name: []}
        for one in (small, large):
            for _ in range(3):  # warm: pools, caches, plans
                timed_get(getattr(one, session), one.stack.web_url + path)
        for _ in range(args.rounds):
            for one in (small, large):
                samples[one.name].append(timed_get(getattr(one, session), one.stack.web_url + path))
        rows.append(Row(label, *(statistics.median(samples[o.name]) for o in (small, large))))
    assert cards(small.ui, f"{small.stack.web_url}/ui/?q={RARE}") == 1
    assert cards(large.ui, f"{large.stack.web_url}/ui/?q={RARE}") == 1
    assert cards(large.ui, f"{large.stack.web_url}/ui/?q={middle}") == 1
    log("  task claims")
    claims: dict[str, list[float]] = {small.name: [], large.name: []}
    for _ in range(3):
        for one in (small, large):
            claims[one.name].append(claims_per_second(one.url, args.tasks))
    rows.append(
        Row(
            "no-op task claims (tasks/s)",
            *(statistics.median(claims[o.name]) for o in (small, large)),
        )
    )
    if shutil.which("wrk"):
        log("  webhook ingest")
        rates: dict[str, list[float]] = {small.name: [], large.name: []}
        for i in range(2):
            for one in (small, large):
                rates[one.name].append(
                    ingest_rate(one.stack, one.url, tmp, args.wrk_seconds, f"{one.name}{i}")
                )
        rows.append(
            Row(
                f"webhook ingest, wrk -c32 {args.wrk_seconds} s (req/s)",
                *(statistics.median(rates[o.name]) for o in (small, large)),
            )
        )
    return rows


@dataclass
class Row:
    label: str
    small: float
    large: float


def table(rows: list[Row], jobs: int) -> None:
    print(f"\n| figure | {REAL} jobs | {jobs + REAL:,} jobs | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        ratio = row.large / row.small
        # Times: lower is better; rates: higher is better. The goal: within 1.5x.
        worse = ratio if row.label.endswith("(ms)") else 1 / ratio
        verdict = "meets" if worse <= 1.5 else "misses"
        if "rare" in row.label or "clone's" in row.label:
            verdict += ", " + ("meets" if row.large <= 50 else "misses") + " <= 50 ms"
        print(f"| {row.label} | {row.small:,.1f} | {row.large:,.1f} | {ratio:.2f}x | {verdict} |")


def stop_worker(stack: Stack) -> None:
    """The worker would archive (and fail) the ingest jobs and claim the bench's tasks."""
    for proc in stack.procs:
        if "worker" in " ".join(str(a) for a in proc.args) and proc.poll() is None:  # type: ignore[union-attr]
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs cloned in SQL")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--wrk-seconds", type=int, default=4)
    parser.add_argument(
        "--keep", action="store_true", help="keep both databases (to EXPLAIN queries on them)"
    )
    args = parser.parse_args()
    try:
        urls = [create_pg_database(), create_pg_database()]
    except BaseException as exc:  # pytest.skip is a BaseException
        print(f"scale: skipped ({exc})")
        return 0
    stacks: list[Stack] = []
    try:
        with moto_server() as s3, tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            try:
                # Two databases side by side, each with its own stack and its own 20 real
                # jobs; one is then cloned to a million. Measured in turns, not one after
                # the other, so a busy minute on the machine does not land on one side.
                for name, url in zip(("small", "large"), urls, strict=True):
                    (tmp / name).mkdir()
                    bucket = create_bucket(s3.url, f"bench-{uuid.uuid4().hex[:10]}")
                    stacks.append(
                        start_stack(
                            tmp / name,
                            s3.url,
                            bucket,
                            url,
                            workers=1,
                            GENVAULT_LOG_LEVEL="WARNING",
                            **SHAPE,
                        )
                    )
                log("stacks up; 20 real jobs on each")
                reals = [real_jobs(stack) for stack in stacks]
                for stack in stacks:
                    stop_worker(stack)
                log(f"cloning the large one to {args.jobs:,} jobs")
                t = time.perf_counter()
                steps = clone(urls[1], reals[1], args.jobs)
                took = time.perf_counter() - t
                print(f"cloned {REAL} real jobs to {args.jobs:,} more in {took:.1f} s:")
                for name, seconds in steps.items():
                    print(f"  {seconds:6.1f} s  {name}")
                vacuum(urls[0])  # the same upkeep on the small one
                log("measuring both, in turns")
                rows = measure(
                    side("small", urls[0], stacks[0]), side("large", urls[1], stacks[1]), tmp, args
                )
                log("done")
            finally:
                for stack in stacks:
                    stack.stop()
        print(f"\nPostgreSQL, medians of {args.rounds} requests each, one run:")
        table(rows, args.jobs)
        print(f"\n(whole bench: {time.perf_counter() - STARTED:.0f} s)")
    finally:
        for url in urls:
            if args.keep:
                print(f"kept: {url}")
            else:
                drop_pg_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
