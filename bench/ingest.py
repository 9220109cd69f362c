"""Webhook ingest throughput under load, against a bare Flask app in the same run.

Both sides run under gunicorn with the shipped deploy/gunicorn.conf.py, 4 processes x 4
threads. `wrk -t2 -c32` sends each request as a new, correctly-tokened success callback for
a distinct job (jobs are inserted straight into the database beforehand, so creating them
costs the run nothing). For each database it measures, in this order:

  - bare Flask (bench/bare_flask.py): parse the JSON body and answer; the baseline
  - genvault, new callbacks        every request a first success callback for its job
  - genvault, duplicates           the same requests again
  - genvault, unknown track_ids    correctly-tokened callbacks for jobs that do not exist
  - ceiling: no write              the same view with the durable write taken out
                                   (bench/genvault_ceiling.py): what the write costs
  - ceiling: a 1.5 ms wait         the view with only a wait where the write was: as fast
                                   as a server can be that answers after its commit

and prints requests/s, p50 and p99 for each and the ratio to the bare app. It then counts
the callbacks stored: every request answered 200 must have its row.

    .venv/bin/python bench/ingest.py [--duration 10] [--databases postgresql,sqlite]
    .venv/bin/python bench/ingest.py --root /path/to/another/checkout   # measure that code
    .venv/bin/python bench/ingest.py --ceiling-wait-ms 0.5   # or --no-ceiling

wrk comes from Debian's packages (`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_support import databases  # noqa: E402

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
    return (
        f"  {name:<30} {r.rate:8.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:7.1f} ms"
        f"  {ratio}  {'; '.join(flags)}"
    )


def bench_database(name: str, url: str, tmp: Path, args: argparse.Namespace) -> None:
    count = max(20_000, 6_000 * args.duration)
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
    try:
        track_ids = insert_jobs(url, count)
        fresh = write_lines(tmp / f"{name}-new.txt", track_ids)
        unknown = write_lines(tmp / f"{name}-unknown.txt", [uuid.uuid4().hex for _ in range(count)])
        warm = write_lines(tmp / f"{name}-warm.txt", [uuid.uuid4().hex for _ in range(2000)])

        bare, bare_url = start_bench_app(tmp, "bare_flask:app", dict(os.environ))
        try:
            wrk(bare_url, warm, 2, args.connections)
            base = wrk(bare_url, fresh, args.duration, args.connections)
        finally:
            stop(bare)
        wrk(stack.web_url, warm, 2, args.connections)  # every process and pool warmed up
        new = wrk(stack.web_url, fresh, args.duration, args.connections)
        stored = count_callbacks(url)
        # Replay only what was sent: every one of these is a duplicate.
        sent = fresh.read_text().splitlines(keepends=True)[: new.requests]
        replay = tmp / f"{name}-dup.txt"
        replay.write_text("".join(sent))
        dup = wrk(stack.web_url, replay, args.duration, args.connections)
        unk = wrk(stack.web_url, unknown, args.duration, args.connections)
        ceilings = [] if args.no_ceiling else ceiling(stack, fresh, warm, tmp, args)
        accepted = new.requests - new.non2xx
        print(f"{name}: wrk -t2 -c{args.connections} -d{args.duration}s, 4 processes x 4 threads")
        print(row("bare Flask (baseline)", base, None))
        print(row("genvault, new callbacks", new, base, f"{new.non2xx} non-2xx"))
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
    finally:
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
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument(
        "--ceiling-wait-ms",
        type=float,
        default=1.5,
        help="the wait of the second ceiling row (about a batch's commit under load)",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling rows")
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
