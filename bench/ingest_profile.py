"""Where a webhook's CPU goes under load: py-spy records running gunicorn workers.

The same load as bench/ingest.py (`wrk -t2 -c32`, each request a new, correctly-tokened
success callback for a distinct job, 4 processes x 4 threads, deploy/gunicorn.conf.py), on
genvault or on the naive durable receiver. While wrk runs, py-spy samples every worker
process without stopping it (``--nonblocking``) and counts only threads that are running,
not waiting. It prints the share of samples in the functions that hold the most, by
themselves and with what they call, and writes the collapsed stacks (flamegraph input).

    .venv/bin/python bench/ingest_profile.py [--database postgresql|sqlite]
        [--app genvault|naive] [--duration 10] [--out DIR]

py-spy comes from PyPI (`pip install py-spy`); it needs ptrace (root here).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402
import naive_durable  # noqa: E402
from bench_support import databases  # noqa: E402

from tests.support.stack import start_stack  # noqa: E402


def record(pids: list[int], seconds: int, out: Path) -> list[Path]:
    spy = Path(sys.executable).with_name("py-spy")
    files, procs = [], []
    for pid in pids:
        path = out / f"{pid}.txt"
        files.append(path)
        argv = [str(spy), "record", "--pid", str(pid), "--duration", str(seconds)]
        argv += [
            "--rate",
            "250",
            "--nonblocking",
            "--gil",
            "--format",
            "raw",
            "--output",
            str(path),
        ]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for proc in procs:
        proc.wait(timeout=seconds + 60)
    return [f for f in files if f.exists()]


def report(files: list[Path], top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            frames = [_short(f) for f in stack.split(";")[1:]]  # the first is the thread
            total += n
            if frames:
                own[frames[-1]] += n
            for frame in set(frames):
                within[frame] += n
    print(f"  {total} samples")
    for title, counter in (("by itself", own), ("with what it calls", within)):
        print(f"  {title}:")
        for frame, n in counter.most_common(top):
            print(f"    {100 * n / total:5.1f}%  {frame}")


def _short(frame: str) -> str:
    # "function (path/to/file.py:line)" -> "function (file.py)"; lines would split a function.
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    marker = "site-packages/"
    file = file.split(marker, 1)[1] if marker in file else file.replace(str(ROOT) + "/", "")
    return f"{name} ({file})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--app", default="genvault", choices=("genvault", "naive"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="keep the stacks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = args.out or tmp
        out.mkdir(parents=True, exist_ok=True)
        for name, url in databases(args.database, tmp):
            (tmp / name).mkdir()
            stack = start_stack(
                tmp / name,
                "http://127.0.0.1:9",
                "unused",
                url,
                workers=0,
                GENVAULT_ARCHIVE_URL=f"file://{tmp / name / 'archive'}",
                GENVAULT_LOG_LEVEL="WARNING",
                **ingest.SHAPE,
            )
            server = None
            try:
                count = 6_000 * (args.duration + 4)
                lines = ingest.write_lines(tmp / "lines.txt", ingest.insert_jobs(url, count))
                if args.app == "naive":
                    naive_durable.create_table(url)
                    env = {**os.environ, "NAIVE_DATABASE_URL": url}
                    server, app_url = ingest.start_bench_app(tmp, "naive_durable:app", env)
                    master = server.pid
                else:
                    app_url, master = stack.web_url, stack.procs[-1].pid
                workers = [p for p in ingest.process_tree(master) if p != master]
                wrk = subprocess.Popen(
                    [
                        "wrk",
                        "-t2",
                        "-c32",
                        f"-d{args.duration + 4}s",
                        "-s",
                        str(ingest.LUA),
                        app_url,
                    ],
                    env={**os.environ, "WRK_REQUESTS": str(lines), "WRK_THREADS": "2"},
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(2)
                files = record(workers, args.duration, out)
                wrk.wait(timeout=60)
                print(f"{args.app} on {name}, {len(workers)} workers:")
                report(files, args.top)
            finally:
                if server is not None:
                    ingest.stop(server)
                stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
