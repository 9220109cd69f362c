"""Where a webhook's CPU goes: the WSGI app called in process, against bare Flask.

No server, no client, no other process: each request is a WSGI environ handed straight to
the app, one at a time, and the figure is this process's CPU time per request (user +
system, so the database client's socket work counts; the database server's own work does
not). For each database it prints:

  - bare Flask (bench/bare_flask.py): parse the JSON body and answer; the baseline
  - genvault: a new, correctly-tokened success callback for a distinct job, end to end
  - genvault without the write: the same with the durable write left out, so the
    difference is what recording the callback costs this process

bench/ingest.py measures the real thing under load; this says which part of the request a
change should go after. ``--idle-workers N`` has N processes listen for SQLite's wake-ups
(tasks/wakeup.py), as idle workers do, so that waking them is part of the figure.

    .venv/bin/python bench/webhook_cpu.py [--requests 3000] [--databases sqlite,postgresql]
        [--idle-workers 0]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# As under gunicorn: metrics shared through files (set before prometheus_client loads).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="genvault-bench-"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_support import databases  # noqa: E402
from ingest import callback_body, insert_jobs  # noqa: E402

from service.security.tokens import webhook_token  # noqa: E402

SECRET = "bench-secret-0123456789abcdef0123456789"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def environ(track_id: str, i: int) -> dict[str, Any]:
    body = callback_body(i, track_id).encode()
    token = webhook_token(SECRET.encode(), "modelslab", track_id)
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/webhooks/modelslab/{track_id}",
        "QUERY_STRING": f"token={token}",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def cpu_per_request(app: WsgiApp, environs: list[dict[str, Any]]) -> float:
    """Microseconds of this process's CPU per request; every answer must be a 200."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> None:
        statuses.append(status)

    started = time.process_time()
    for env in environs:
        out = app(env, start_response)
        b"".join(out)
        getattr(out, "close", lambda: None)()
    spent = time.process_time() - started
    if set(statuses) != {"200 OK"}:
        raise RuntimeError(f"not every request was answered 200: {sorted(set(statuses))}")
    return spent / len(environs) * 1e6


# An idle worker as SQLite's wake-ups see it: a datagram socket in the wake directory, read.
_IDLE_WORKER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
print("listening", flush=True)
while sock.recv(64):
    pass
"""


@contextmanager
def idle_workers(database: Path, count: int) -> Iterator[None]:
    from service.tasks.wakeup import SocketDirWakeup

    directory = SocketDirWakeup.for_database(str(database)).directory
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = [directory / f"bench-{os.getpid()}-{n}.sock" for n in range(count)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _IDLE_WORKER, str(p)], stdout=subprocess.PIPE)
        for p in paths
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for path in paths:
            path.unlink(missing_ok=True)


@contextmanager
def without_the_write() -> Iterator[None]:
    """The view as it is, with WebhookIngest.record answering at once (nothing written)."""
    from service.jobs import ingest

    original = ingest.WebhookIngest.record
    ingest.WebhookIngest.record = lambda _self, _p, _t, _v: ingest.Outcome.ACCEPTED  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ingest.WebhookIngest.record = original  # type: ignore[method-assign,assignment]


def bench_database(name: str, url: str, requests: int, tmp: Path) -> None:
    from bare_flask import app as bare

    from service.api.context import EXTENSION
    from service.app import create_app
    from service.db.migrate import upgrade
    from service.db.session import make_engine

    os.environ.update(
        {
            "GENVAULT_DATABASE_URL": url,
            "GENVAULT_ARCHIVE_URL": f"file://{tmp / name / 'archive'}",
            "GENVAULT_SECRET_KEY": SECRET,
            "GENVAULT_API_TOKENS": uuid.uuid4().hex,
            "GENVAULT_PUBLIC_URL": "http://127.0.0.1:8000",
            "GENVAULT_LOG_LEVEL": "WARNING",
        }
    )
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    track_ids = insert_jobs(url, 3 * requests + 400)
    app = create_app()
    try:
        batches = [
            [environ(t, i) for i, t in enumerate(track_ids[k * requests : (k + 1) * requests])]
            for k in range(3)
        ]
        warm = [environ(t, i) for i, t in enumerate(track_ids[-400:])]
        cpu_per_request(app, warm[:200])
        cpu_per_request(bare, warm[200:])
        base = cpu_per_request(bare, batches[0])
        full = cpu_per_request(app, batches[1])
        with without_the_write():
            rest = cpu_per_request(app, batches[2])
    finally:
        app.extensions[EXTENSION].close()
    print(f"{name}: {requests} requests each, CPU of this process per request")
    print(f"  bare Flask (baseline)        {base:6.0f} us   1.00x")
    print(f"  genvault                     {full:6.0f} us  {full / base:5.2f}x")
    print(f"  genvault without the write   {rest:6.0f} us  {rest / base:5.2f}x")
    print(f"  so the write costs           {full - rest:6.0f} us of this process's CPU")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--idle-workers", type=int, default=0, help="SQLite only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, url in databases(args.databases, tmp):
            if name != "sqlite":
                bench_database(name, url, args.requests, tmp)
                continue
            with idle_workers(tmp / "bench.db", args.idle_workers):
                if args.idle_workers:
                    print(f"{name}: {args.idle_workers} idle workers listening for wake-ups")
                bench_database(name, url, args.requests, tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
