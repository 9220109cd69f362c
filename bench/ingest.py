"""Webhook ingest throughput under load, against bare Flask and a naive durable receiver.

All three run under gunicorn with the shipped deploy/gunicorn.conf.py, 4 processes x 4
threads. `wrk -t2 -c32` sends each request as a new, correctly-tokened success callback for
a distinct job (jobs are inserted straight into the database beforehand, so creating them
costs the run nothing). For each database it measures:

  - bare Flask (bench/bare_flask.py): parse the JSON body and answer; the baseline
  - naive durable receiver (bench/naive_durable.py): one INSERT and its commit per request,
                                   a connection per thread, genvault's durability settings
  - genvault, new callbacks        every request a first success callback for its job
  - genvault, duplicates           the same requests again
  - genvault, unknown track_ids    correctly-tokened callbacks for jobs that do not exist
  - ceiling: no write              the same view with the durable write taken out
                                   (bench/genvault_ceiling.py): what the write costs
  - ceiling: a 1.5 ms wait         the view with only a wait where the write was: as fast
                                   as a server can be that answers after its commit

The first three take turns for ``--rounds`` rounds (each round led by the next app, each
genvault round on callbacks never sent before), and each row is the median of its rounds:
the machine is shared, and a burst of load from elsewhere then falls on all three alike. It
prints requests/s, p50 and p99 for each and the ratio to the bare app; for those three also
the CPU per request of the app's processes and, on PostgreSQL, of the server processes of
the database (which moves far less with the machine's load than requests/s do); then
genvault's ratio to the naive receiver in each round and their median (issue 20's goal:
>= 1.0x, p99 no worse). It then counts the callbacks stored: every request answered 200
must have its row.

    .venv/bin/python bench/ingest.py [--duration 10] [--rounds 3] [--databases postgresql,sqlite]
    .venv/bin/python bench/ingest.py --root /path/to/another/checkout   # measure that code
    .venv/bin/python bench/ingest.py --ceiling-wait-ms 0.5   # or --no-ceiling, --new-only

wrk comes from Debian's packages (`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import naive_durable  # noqa: E402
from bench_support import cpu_seconds, databases  # noqa: E402

import tests.support.stack as stack_module  # noqa: E402
from service.security.tokens import webhook_token  # noqa: E402
from tests.support.s3 import free_port  # noqa: E402
from tests.support.stack import BIN, SECRET, Stack, start_stack  # noqa: E402

CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
LUA = Path(__file__).with_name("wrk_requests.lua")
# The deployed shape, for both sides: 4 processes x 4 threads.
SHAPE = {"WEB_CONCURRENCY": "4", "GENVAULT_WEB_THREADS": "4"}


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int
    wrapped: int
    # CPU time per request of the app's processes and of the database's (take_turns).
    app_cpu_us: float = 0.0
    db_cpu_us: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, lines: Path, duration: int, connections: int) -> Result:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(LUA), url],
        env={**os.environ, "WRK_REQUESTS": str(lines), "WRK_THREADS": "2"},
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    m = re.search(r"RESULT (.*)", out)
    if m is None:
        raise RuntimeError(f"wrk printed no RESULT:\n{out}")
    v = dict(kv.split("=") for kv in m.group(1).split())
    return Result(
        int(v["requests"]),
        float(v["seconds"]),
        int(v["p50_us"]) / 1000,
        int(v["p99_us"]) / 1000,
        int(v["non2xx"]),
        int(v["errors"]),
        int(v["wrapped"]),
    )


def callback_body(i: int, track_id: str) -> str:
    return json.dumps(
        {
            "status": "success",
            "id": 1000 + i,
            "generationTime": 1.2,
            "track_id": track_id,
            "output": [f"https://cdn2.stablediffusionapi.com/generations/{i}-0.png"],
            "meta": {"seed": i, "width": 512, "height": 512},
        }
    )


def write_lines(path: Path, track_ids: list[str]) -> Path:
    with path.open("w") as f:
        for i, track_id in enumerate(track_ids):
            token = webhook_token(SECRET.encode(), "modelslab", track_id)
            url = f"/webhooks/modelslab/{track_id}?token={token}"
            f.write(f"{url}\t{callback_body(i, track_id)}\n")
    return path


def insert_jobs(database_url: str, count: int) -> list[str]:
    """``count`` jobs waiting for their webhook, inserted in bulk (not through the API)."""
    from sqlalchemy import create_engine, insert

    from service.db.models import Job

    now_ms = int(time.time() * 1000)
    rows = []
    for i in range(count):
        track_id = uuid.uuid4().hex
        rows.append(
            {
                "id": f"{now_ms:012x}{i:020x}",
                "track_id": track_id,
                "endpoint": "modelslab/text2img",
                "status": "processing",
                "params": {"model_id": "m", "prompt": f"p{i}"},
                "metadata": {},
            }
        )
    engine = create_engine(database_url)
    with engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(insert(Job), rows[start : start + 5000])
    engine.dispose()
    return [r["track_id"] for r in rows]


def count_callbacks(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM callbacks WHERE source = 'webhook'"))
        value = int(n.scalar_one())
    engine.dispose()
    return value


def start_bench_app(
    tmp: Path, app: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn with the shipped config on ``app``, a module of bench/."""
    port = free_port()
    env = {**env, **SHAPE, "GENVAULT_BIND": f"127.0.0.1:{port}"}
    log = (tmp / f"{app.partition(':')[0]}.log").open("ab")
    argv = [str(BIN / "gunicorn"), "-c", str(CONFIG), "--chdir", str(ROOT / "bench")]
    proc = subprocess.Popen(
        [*argv, app],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return proc, url


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def row(name: str, r: Result, base: Result | None, note: str = "") -> str:
    ratio = f"{r.rate / base.rate:5.2f}x" if base else "  1.00x"
    flags = []
    if r.errors:
        flags.append(f"{r.errors} socket errors")
    if r.wrapped and name.endswith("new callbacks"):
        flags.append("request list ran out: some repeats")
    if note:
        flags.append(note)
    cpu = f"  cpu/req app {r.app_cpu_us:4.0f} us db {r.db_cpu_us:4.0f} us" if r.app_cpu_us else ""
    return (
        f"  {name:<30} {r.rate:8.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:7.1f} ms"
        f"  {ratio}{cpu}  {'; '.join(flags)}"
    )


def median(results: list[Result]) -> Result:
    """The rounds of one app as one row: the median of each figure, the sum of each count."""
    return Result(
        round(statistics.median(r.rate for r in results) * 1000),
        1000.0,
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.non2xx for r in results),
        sum(r.errors for r in results),
        sum(r.wrapped for r in results),
        statistics.median(r.app_cpu_us for r in results),
        statistics.median(r.db_cpu_us for r in results),
    )


def take_turns(
    apps: dict[str, App], blocks: list[Path], url: str, args: argparse.Namespace
) -> dict[str, list[Result]]:
    """Each app's result in each round. The machine is shared: the apps take turns, round
    after round (each round starting with the next app), so that a burst of load from
    elsewhere falls on all of them alike. Round n sends block n: genvault's callbacks are
    always new."""
    results: dict[str, list[Result]] = {app: [] for app in apps}
    for n in range(args.rounds):
        order = list(apps)[n % len(apps) :] + list(apps)[: n % len(apps)]
        for name in order:
            app = apps[name]
            cpu = app.cpu_seconds(), database_cpu_seconds(url)
            result = wrk(app.url, blocks[n], args.duration, args.connections)
            spent = app.cpu_seconds() - cpu[0], database_cpu_seconds(url) - cpu[1]
            results[name].append(
                replace(
                    result,
                    app_cpu_us=spent[0] * 1e6 / max(1, result.requests),
                    db_cpu_us=spent[1] * 1e6 / max(1, result.requests),
                )
            )
    return results


@dataclass(frozen=True)
class App:
    url: str
    pid: int  # gunicorn's master

    def cpu_seconds(self) -> float:
        """CPU time of gunicorn and its workers so far."""
        return sum(cpu_seconds(pid) for pid in process_tree(self.pid))


def process_tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += process_tree(int(child))
    return out


def database_cpu_seconds(url: str) -> float:
    """CPU time of the PostgreSQL server processes serving ``url``'s database (0 on SQLite:
    its work is in the app's processes). Processes that ended meanwhile are not counted."""
    if not url.startswith("postgresql"):
        return 0.0
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    total = 0.0
    for (pid,) in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def against_naive(genvault: list[Result], naive: list[Result]) -> str:
    """The goal of issue 20: at least as fast as the naive receiver, p99 no worse."""
    ratios = [g.rate / v.rate for g, v in zip(genvault, naive, strict=True)]
    return (
        f"  genvault / naive durable: {statistics.median(ratios):.2f}x"
        f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)}),"
        f" p99 {median(genvault).p99_ms:.1f} vs {median(naive).p99_ms:.1f} ms"
    )


def bench_database(name: str, url: str, tmp: Path, args: argparse.Namespace) -> None:
    # A block of new callbacks per round, and one for the ceilings; 6,000/s is more than any
    # of them answers here.
    block = 6_000 * args.duration
    (tmp / name).mkdir()
    stack: Stack = start_stack(
        tmp / name,
        "http://127.0.0.1:9",
        "unused",
        url,
        workers=0,
        GENVAULT_ARCHIVE_URL=f"file://{tmp / name / 'archive'}",
        GENVAULT_LOG_LEVEL="WARNING",
        **SHAPE,
    )
    servers: list[subprocess.Popen[bytes]] = []
    try:
        track_ids = insert_jobs(url, block * (args.rounds + 1))
        blocks = [
            write_lines(tmp / f"{name}-new-{n}.txt", track_ids[n * block : (n + 1) * block])
            for n in range(args.rounds + 1)
        ]
        unknown = write_lines(tmp / f"{name}-unknown.txt", [uuid.uuid4().hex for _ in range(block)])
        warm = write_lines(tmp / f"{name}-warm.txt", [uuid.uuid4().hex for _ in range(2000)])

        naive_durable.create_table(url)
        naive_env = {**os.environ, "NAIVE_DATABASE_URL": url}
        apps: dict[str, App] = {}
        for key, module, env in (
            ("bare", "bare_flask:app", dict(os.environ)),
            ("naive", "naive_durable:app", naive_env),
        ):
            proc, app_url = start_bench_app(tmp, module, env)
            servers.append(proc)
            apps[key] = App(app_url, proc.pid)
        apps["genvault"] = App(stack.web_url, stack.procs[-1].pid)  # the stack's gunicorn
        for app in apps.values():
            wrk(app.url, warm, 2, args.connections)  # every process and pool warmed up
        results = take_turns(apps, blocks, url, args)
        for proc in servers:
            stop(proc)
        servers.clear()
        base, naive, new = (median(results[app]) for app in apps)
        stored = count_callbacks(url)
        # Replay only what was sent: every one of these is a duplicate.
        replay = tmp / f"{name}-dup.txt"
        with replay.open("w") as f:
            for sent, lines in zip(results["genvault"], blocks, strict=False):
                f.writelines(lines.read_text().splitlines(True)[: sent.requests])
        dup = unk = None
        if not args.new_only:
            dup = wrk(stack.web_url, replay, args.duration, args.connections)
            unk = wrk(stack.web_url, unknown, args.duration, args.connections)
        ceilings = [] if args.no_ceiling else ceiling(stack, blocks[-1], warm, tmp, args)
        sent_total = sum(r.requests for r in results["genvault"])
        accepted = sent_total - new.non2xx
        print(
            f"{name}: wrk -t2 -c{args.connections} -d{args.duration}s, 4 processes x 4 threads,"
            f" median of {args.rounds} rounds"
        )
        print(row("bare Flask (baseline)", base, None))
        print(row("naive durable receiver", naive, base, f"{naive.non2xx} non-2xx"))
        print(row("genvault, new callbacks", new, base, f"{new.non2xx} non-2xx"))
        if dup is not None and unk is not None:
            print(row("genvault, duplicates", dup, base, f"{dup.non2xx} non-2xx"))
            print(row("genvault, unknown track_id", unk, base, f"{unk.non2xx} answered 404"))
        for label, result in ceilings:
            print(row(label, result, base))
        if new.wrapped:
            # Repeats were answered 200 as duplicates: no count of stored rows matches them.
            lost = "not counted, the request list ran out"
        else:
            lost = str(max(0, accepted - stored))
        print(f"  callbacks stored: {stored} for {accepted} answered 200 (lost: {lost})")
        print(against_naive(results["genvault"], results["naive"]))
    finally:
        for proc in servers:
            stop(proc)
        stack.stop()


def ceiling(
    stack: Stack, lines: Path, warm: Path, tmp: Path, args: argparse.Namespace
) -> list[tuple[str, Result]]:
    """The same view with its write taken out (bench/genvault_ceiling.py): nothing at all,
    then only the wait for a commit. What the write costs is the gap to the first row; the
    second row is as fast as any design can be that answers after its commit."""
    out = []
    env = {**stack.env, "PYTHONPATH": stack_module.ROOT.as_posix()}
    for label, mode in (
        ("ceiling: no write", "none"),
        (f"ceiling: a {args.ceiling_wait_ms:g} ms wait", f"wait:{args.ceiling_wait_ms}"),
    ):
        proc, url = start_bench_app(
            tmp, "genvault_ceiling:app", env | {"GENVAULT_BENCH_WRITE": mode}
        )
        try:
            wrk(url, warm, 2, args.connections)
            out.append((label, wrk(url, lines, args.duration, args.connections)))
        finally:
            stop(proc)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns of bare, naive and genvault (medians)"
    )
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument(
        "--ceiling-wait-ms",
        type=float,
        default=1.5,
        help="the wait of the second ceiling row (about a batch's commit under load)",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling rows")
    parser.add_argument(
        "--new-only", action="store_true", help="skip the duplicates and unknown track_id rows"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code is measured")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("ingest: SKIPPED: wrk is missing (Debian: apt-get install wrk)")
        return 0
    if args.root.resolve() != ROOT:
        # Measure another checkout (the "before" figures): its code first on every path.
        stack_module.ROOT = args.root.resolve()
        os.environ["PYTHONPATH"] = str(args.root.resolve())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, url in databases(args.databases, tmp):
            bench_database(name, url, tmp, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
