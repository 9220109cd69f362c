"""Webhook receivers for event tests: real HTTP servers on loopback.

Each verifies what it gets with the official ``standardwebhooks`` package, as a customer's
receiver would, and keeps what it saw. Its behaviour (answer, hang, redirect, 410) can be
changed while it runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic
    wall: float = 0.0  # time.time() at receipt, for latencies against database timestamps
    verified: Any = None  # the parsed body when the signature verified
    error: str | None = None


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    secret: str | None = None
    status: int = 204
    extra_headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def verified(self) -> list[Any]:
        with self.lock:
            return [r.verified for r in self.received if r.verified is not None]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"got {len(self.received)} deliveries, wanted {count}")


def start_receiver() -> Receiver:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got = Received(dict(self.headers.items()), body, time.monotonic(), time.time())
            if me.secret:
                try:
                    got.verified = Webhook(me.secret).verify(body, got.headers)
                except WebhookVerificationError as exc:
                    got.error = str(exc)
            with me.lock:
                me.received.append(got)
            if me.hang:
                time.sleep(me.hang)
            self.send_response(me.status)
            for k, v in me.extra_headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a hanging request must not hold the test up
    receiver = Receiver(server)
    holder.append(receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Three loopback receivers; more can be started with start_receiver()."""
    started = [start_receiver() for _ in range(3)]
    yield started
    for r in started:
        r.server.shutdown()
        r.server.server_close()
