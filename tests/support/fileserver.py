"""A loopback HTTP server whose answers a test sets per path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class FileServer:
    base_url: str
    routes: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def put(
        self, path: str, body: bytes, content_type: str = "image/png", status: int = 200
    ) -> str:
        self.routes[path] = (status, content_type, body)
        return f"{self.base_url}{path}"


@pytest.fixture
def fileserver() -> Iterator[FileServer]:
    state = FileServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            status, ctype, body = state.routes.get(self.path, (404, "text/plain", b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
