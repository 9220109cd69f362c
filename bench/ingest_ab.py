"""Two checkouts of genvault under bench/ingest.py's load, in short interleaved runs.

bench/ingest.py answers "how does genvault compare with the naive receiver"; on this shared
machine its rounds of 8-10 s each differ by up to 20% from one another, more than most
changes are worth. This answers "is checkout B faster than checkout A": both run at once
(each its own gunicorn and database, same config and shape), beside the naive receiver,
and take turns in short wrk runs (3 s by default, the order rotating each round), so that
a slow spell of the machine falls on all three within seconds of each other. It prints,
for A and for B, the median over rounds of the ratio to the naive run of the same round,
and the median of B's ratio to A.

    .venv/bin/python bench/ingest_ab.py --b /path/to/other/checkout [--a .] [--rounds 20]
        [--duration 3] [--databases sqlite]

Every request is a new, correctly-tokened success callback for a distinct job, as in
bench/ingest.py; wrk comes from Debian's packages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import naive_durable  # noqa: E402
from bench_support import databases  # noqa: E402
from ingest import (  # noqa: E402
    SHAPE,
    App,
    insert_jobs,
    start_bench_app,
    stop,
    write_lines,
    wrk,
)

import tests.support.stack as stack_module  # noqa: E402
from tests.support.stack import Stack, start_stack  # noqa: E402


def genvault_at(root: Path, tmp: Path, url: str) -> Stack:
    """genvault's web tier from the checkout at ``root``, on its own database ``url``."""
    stack_module.ROOT = root  # the stack's processes run there...
    try:
        return start_stack(
            tmp,
            "http://127.0.0.1:9",
            "unused",
            url,
            workers=0,
            GENVAULT_ARCHIVE_URL=f"file://{tmp / 'archive'}",
            GENVAULT_LOG_LEVEL="WARNING",
            PYTHONPATH=str(root),  # ...and import its code first
            **SHAPE,
        )
    finally:
        stack_module.ROOT = ROOT


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", type=Path, default=ROOT, help="checkout A (default: this one)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--databases", default="sqlite")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("ingest_ab: SKIPPED: wrk is missing (Debian: apt-get install wrk)")
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, url in databases(args.databases, tmp):
            compare(name, url, tmp / name, args)
    return 0


def second_database(name: str, url: str, tmp: Path) -> str:
    """B's database: another file, or another database on the same PostgreSQL server."""
    if name == "sqlite":
        return f"sqlite:///{tmp / 'b.db'}"
    from tests.support.db import create_pg_database

    return create_pg_database()


def compare(name: str, url: str, tmp: Path, args: argparse.Namespace) -> None:
    tmp.mkdir()
    block = 6_000 * args.duration  # more than any of them answers in a run
    url_b = second_database(name, url, tmp)
    stacks: list[Stack] = []
    naive = None
    try:
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        stacks.append(genvault_at(args.a.resolve(), tmp / "a", url))
        stacks.append(genvault_at(args.b.resolve(), tmp / "b", url_b))
        lines = {
            key: [
                write_lines(tmp / f"{key}-{n}.txt", ids[n * block : (n + 1) * block])
                for n in range(args.rounds + 1)
            ]
            for key, ids in (
                ("a", insert_jobs(url, block * (args.rounds + 1))),
                ("b", insert_jobs(url_b, block * (args.rounds + 1))),
            )
        }
        naive_durable.create_table(url)
        proc, naive_url = start_bench_app(
            tmp, "naive_durable:app", {**os.environ, "NAIVE_DATABASE_URL": url}
        )
        naive = proc
        apps = {
            "naive": App(naive_url, proc.pid),
            "a": App(stacks[0].web_url, stacks[0].procs[-1].pid),
            "b": App(stacks[1].web_url, stacks[1].procs[-1].pid),
        }
        for key, app in apps.items():  # every process and pool warmed up
            wrk(app.url, lines["a" if key == "naive" else key][-1], 2, args.connections)
        rates: dict[str, list[float]] = {key: [] for key in apps}
        p99: dict[str, list[float]] = {key: [] for key in apps}
        for n in range(args.rounds):
            keys = list(apps)
            for key in keys[n % 3 :] + keys[: n % 3]:
                # The naive receiver's rows carry no job: any list of track_ids will do.
                result = wrk(
                    apps[key].url,
                    lines["a" if key == "naive" else key][n],
                    args.duration,
                    args.connections,
                )
                if result.non2xx or result.errors:
                    raise RuntimeError(f"{key}: {result}")
                rates[key].append(result.rate)
                p99[key].append(result.p99_ms)
        print(
            f"{name}: wrk -t2 -c{args.connections} -d{args.duration}s, {args.rounds} rounds,"
            " 4 processes x 4 threads each"
        )
        for key, label in (("naive", "naive receiver"), ("a", f"A {args.a}"), ("b", f"B {args.b}")):
            print(
                f"  {label:<40} median {statistics.median(rates[key]):6.0f} req/s"
                f"  p99 {statistics.median(p99[key]):6.1f} ms"
            )
        for key in ("a", "b"):
            ratios = [x / y for x, y in zip(rates[key], rates["naive"], strict=True)]
            print(
                f"  {key.upper()} / naive: median {statistics.median(ratios):.2f}x"
                f" (quartiles {_quartiles(ratios)})"
            )
        ab = [x / y for x, y in zip(rates["b"], rates["a"], strict=True)]
        print(f"  B / A: median {statistics.median(ab):.2f}x (quartiles {_quartiles(ab)})")
    finally:
        if naive is not None:
            stop(naive)
        for stack in stacks:
            stack.stop()
        if name != "sqlite":
            from tests.support.db import drop_pg_database

            drop_pg_database(url_b)


def _quartiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.2f}-{q[2]:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
