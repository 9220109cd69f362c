"""The latency proxy the archive bench relies on (bench/delay_proxy.py): its figures over a
"20 ms round trip" mean something only if the proxy adds that, and passes bytes intact."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import wal_pages  # noqa: E402
from bench_support import delayed, file_server  # noqa: E402


def test_the_delay_proxy_adds_its_round_trips_and_keeps_the_bytes(tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024)
    (tmp_path / "blob").write_bytes(body)
    rtt = 0.1
    with file_server(tmp_path) as server, delayed(server, rtt * 1000) as proxy:
        assert proxy.url != server.url
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            answer = requests.get(f"{proxy.url}/blob", timeout=10)
            timings.append(time.perf_counter() - started)
            assert answer.status_code == 200
            assert answer.content == body
        # A new connection (http.server closes each one): the handshake's round trip, then
        # the request's. Upper bound generous: a loaded machine is slow, never fast.
        assert min(timings) >= 2 * rtt
        assert max(timings) < 2 * rtt + 5


def test_no_round_trip_is_the_server_itself(tmp_path: Path) -> None:
    with file_server(tmp_path) as server, delayed(server, 0) as same:
        assert same is server


def test_the_wal_page_count_names_the_table_and_index_a_commit_wrote(tmp_path: Path) -> None:
    # bench/ingest_write.py's pages per commit: one single-page table and its single-page
    # index, a commit per row, so each commit writes each of them once and nothing else.
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.execute("CREATE TABLE untouched (x)")
    rows = iter(range(100))

    def write() -> None:
        conn.execute("INSERT INTO t (v) VALUES (?)", (f"row {next(rows)}",))

    assert wal_pages.per_write(conn, write, 10) == {"t": 1.0, "t_v": 1.0}
    # Automatic checkpoints are back on, at the value they had.
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    conn.close()
