"""The latency proxy the archive bench relies on (bench/delay_proxy.py): its figures over a
"20 ms round trip" mean something only if the proxy adds that, and passes bytes intact."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

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
