"""The webhook's durable write alone, outside the app: its CPU per callback by batch size.

Runs what one group-committed batch runs (WebhookIngest._write, the write that
WebhookIngest.record hands to service/db/group_commit.py) with batches of 1, 4 and 16 new
callbacks for distinct jobs, one batch after another, and prints per callback: the CPU of
this process (the driver's side) and wall time, and on PostgreSQL the CPU of the server
process serving the connection (read from /proc: the database runs on this machine). On
PostgreSQL it also prints the fixed costs of a statement: a `SELECT 1` round trip, and a
one-row INSERT committed with and without waiting for its WAL flush.

bench/webhook_cpu.py measures the write inside the app, and bench/ingest.py under load;
this says what the write is made of. On SQLite it also counts the pages a lone callback's
commit appends to the write-ahead log, by table and index (bench/wal_pages.py): a figure
that, unlike CPU and wall time, the machine's load does not move.

    .venv/bin/python bench/ingest_write.py [--callbacks 1600] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import wal_pages  # noqa: E402
from bench_support import cpu_seconds, databases  # noqa: E402
from ingest import insert_jobs  # noqa: E402

BATCHES = (1, 4, 16)


def local_server(pid: int) -> int | None:
    """``pid`` if it is a PostgreSQL server process on this machine, else None (a server
    elsewhere: its process id may be another process's here)."""
    try:
        return pid if Path(f"/proc/{pid}/comm").read_text().startswith("postgres") else None
    except OSError:
        return None


def per_call(run: Callable[[], object], calls: int, pid: int | None) -> tuple[float, float, float]:
    """Microseconds per call: this process's CPU, the server process's CPU, wall time."""

    def server_cpu() -> float:
        return 0.0 if pid is None else cpu_seconds(pid)

    cpu, server, wall = time.process_time(), server_cpu(), time.perf_counter()
    for _ in range(calls):
        run()
    return (
        (time.process_time() - cpu) / calls * 1e6,
        (server_cpu() - server) / calls * 1e6,
        (time.perf_counter() - wall) / calls * 1e6,
    )


def bench_database(name: str, url: str, callbacks: int) -> None:
    from service.db.migrate import upgrade
    from service.db.session import make_engine
    from service.jobs.ingest import WebhookIngest, _Callback

    engine = make_engine(url)
    upgrade(engine)
    postgres = engine.dialect.name == "postgresql"
    if postgres:  # as service/wiring.py makes the webhook's own engine
        engine.dispose()
        engine = make_engine(url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
    track_ids = iter(insert_jobs(url, callbacks * (len(BATCHES) + 3) + 64))
    ingest = WebhookIngest(engine)
    body = {"status": "success", "output": ["https://cdn.example/a.png"]}
    result = {"status": "success", "outputs": ["https://cdn.example/a.png"]}

    def batch(size: int) -> list[_Callback]:
        return [
            _Callback(
                "modelslab",
                next(track_ids),
                "success",
                json.dumps(body),
                json.dumps(result),
                uuid.uuid4().hex,
            )
            for _ in range(size)
        ]

    pid = None
    if postgres:
        raw = engine.raw_connection()
        # The pool hands this connection back each time.
        pid = local_server(raw.dbapi_connection.info.backend_pid)
        raw.close()
    for _ in range(8):  # psycopg prepares the statement after its fifth run
        ingest._write(batch(1))
    print(f"{name}: the webhook's write alone, per callback ({callbacks} callbacks a row)")
    for size in BATCHES:
        prepared = [batch(size) for _ in range(callbacks // size)]
        queue = iter(prepared)
        client, server, wall = per_call(lambda q=queue: ingest._write(next(q)), len(prepared), pid)
        server_text = f"  server {server / size:5.0f} us" if pid is not None else ""
        print(
            f"  batch of {size:2}:  this process {client / size:5.0f} us{server_text}"
            f"  wall {wall / size:6.0f} us"
        )
    if not postgres:
        # The ingest's own connection, as the batches above left it.
        conn = ingest._raw.dbapi_connection
        pages = wal_pages.per_write(conn, lambda: ingest._write(batch(1)), callbacks)
        print(f"  a lone callback:  {_pages(pages)}")
        pages = wal_pages.per_write(conn, lambda: ingest._write(batch(4)), callbacks // 4)
        print(f"  batches of 4:     {_pages(pages)}")
    # The whole of WebhookIngest.record for a lone caller: JSON texts, the group commit's
    # hand-over and (SQLite) the writers' turn around the same write.
    values = {"status": "success", "body": body, "result": result}
    client, server, wall = per_call(
        lambda: ingest.record(
            "modelslab", next(track_ids), {**values, "body_sha256": uuid.uuid4().hex}
        ),
        callbacks,
        pid,
    )
    server_text = f"  server {server:5.0f} us" if pid is not None else ""
    print(f"  record(), alone:  this process {client:5.0f} us{server_text}  wall {wall:6.0f} us")
    naive_row(url, callbacks)
    if postgres:
        fixed_costs(engine, pid)
    ingest.close()
    engine.dispose()


def naive_row(url: str, callbacks: int) -> None:
    """bench/naive_durable.py's write: one INSERT of the raw body and its commit."""
    import naive_durable

    naive_durable.create_table(url)
    naive_durable.URL, naive_durable.SQLITE = url, url.startswith("sqlite:///")
    conn = naive_durable._connect()
    pid = None if naive_durable.SQLITE else local_server(conn.info.backend_pid)
    mark = "?" if naive_durable.SQLITE else "%s"
    text = json.dumps({"status": "success", "output": ["https://cdn.example/a.png"]})

    def write() -> None:
        conn.execute(
            "INSERT INTO naive_callbacks (provider, track_id, body)"
            f" VALUES ({mark}, {mark}, {mark})",
            ("modelslab", uuid.uuid4().hex, text),
        )
        conn.commit()

    client, server, wall = per_call(write, callbacks, pid)
    server_text = f"  server {server:5.0f} us" if pid is not None else ""
    print(f"  naive receiver:   this process {client:5.0f} us{server_text}  wall {wall:6.0f} us")
    if naive_durable.SQLITE:
        pages = wal_pages.per_write(conn, write, callbacks)
        print(f"  naive receiver:   {_pages(pages)}")
    conn.close()


def _pages(by_owner: dict[str, float]) -> str:
    """WAL pages per commit, in all and by table or index (bench/wal_pages.py)."""
    parts = ", ".join(f"{name} {count:.2f}" for name, count in by_owner.items())
    return f"{sum(by_owner.values()):.2f} WAL pages a commit ({parts})"


def fixed_costs(engine: Engine, pid: int | None) -> None:
    def server(us: float) -> str:
        return f"server {us:5.0f} us" if pid is not None else "server    n/a"

    raw = engine.raw_connection()
    try:
        cur = raw.dbapi_connection.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS bench_tiny (x int)")
        _, select_server, select_wall = per_call(lambda: cur.execute("SELECT 1"), 1000, pid)
        print(f"  SELECT 1:                {server(select_server)}  wall {select_wall:6.0f} us")
        for mode in ("on", "off"):
            cur.execute(f"SET synchronous_commit = {mode}")
            _, server_us, wall = per_call(
                lambda: cur.execute("INSERT INTO bench_tiny VALUES (1)"), 1000, pid
            )
            flush = "waits for its WAL flush" if mode == "on" else "does not wait"
            print(f"  one-row INSERT, commit {flush:<24} {server(server_us)}  wall {wall:6.0f} us")
        cur.execute("RESET synchronous_commit")
        cur.execute("DROP TABLE bench_tiny")
    finally:
        raw.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--callbacks", type=int, default=1600)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in databases(args.databases, Path(tmp)):
            bench_database(name, url, args.callbacks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
