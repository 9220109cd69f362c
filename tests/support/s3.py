"""moto's S3 in server mode on a loopback port: real HTTP, real boto3."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _OneConditionalWriteAtATime:
    """moto's server, deciding conditional writes one at a time, as S3 does.

    S3 decides ``If-None-Match: *`` (and ``If-Match``) atomically: of writers racing for one
    key, exactly one wins. moto looks the key up and then stores, in two steps, so two of
    them could both pass the look-up (test_storage_contract's eight racing writers, once in
    a full run). The archive relies on S3's guarantee, and the tests must check genvault's
    side of it, not moto's race: such requests take a lock here, the rest run as before.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if "HTTP_IF_NONE_MATCH" not in environ and "HTTP_IF_MATCH" not in environ:
            return self.app(environ, start_response)
        with self.lock:
            answer = self.app(environ, start_response)
            try:
                return list(answer)  # the whole answer, inside the lock
            finally:
                getattr(answer, "close", lambda: None)()  # as a WSGI server would


def start_moto_server(port: int) -> Any:
    """moto's ThreadedMotoServer on loopback ``port``, started, its conditional writes atomic."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:  # moto's own (moto 5), with the app wrapped
            app = _OneConditionalWriteAtATime(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = Server(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of a moto S3 server for the whole session."""
    port = free_port()
    server = start_moto_server(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the moto server with throwaway credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"genvault-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").create_bucket(Bucket=name)
    return name
