"""service.http_log.py: the access line as gunicorn writes it, from fewer fields."""

from __future__ import annotations

import datetime
import logging
import types
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from service.http_log import ACCESS_LOG_FORMAT, AccessLogger


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _line(cls: type[Logger], fmt: str, resp: Any, req: Any, environ: dict[str, Any]) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", fmt)
    logger = cls(cfg)
    lines = Lines()
    logger.access_log.handlers = [lines]
    logger.access(resp, req, environ, datetime.timedelta(seconds=1, microseconds=234_567))
    [line] = lines.lines
    return line


ENVIRON = {
    "REMOTE_ADDR": "203.0.113.7",
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/webhooks/modelslab/abc?token=secret-token",
    "PATH_INFO": "/webhooks/modelslab/abc",
    "QUERY_STRING": "token=secret-token",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz",
}
HEADERS = [("Host", "vault.example"), ("User-Agent", 'say "hi"'), ("Content-Length", "2")]


@pytest.mark.parametrize(
    ("status", "sent", "environ"),
    [
        ("200 OK", 24, ENVIRON),
        (404, 0, ENVIRON),
        ("503 Service Unavailable", None, ENVIRON),
        # No peer address; a path with a quote in it (gunicorn escapes it).
        ("200 OK", 5, {k: v for k, v in ENVIRON.items() if k != "REMOTE_ADDR"}),
        ("400 Bad Request", 5, {**ENVIRON, "PATH_INFO": '/v1/jobs/"x"'}),
    ],
)
def test_the_line_is_gunicorns_own(status: Any, sent: int | None, environ: dict[str, Any]) -> None:
    resp = types.SimpleNamespace(status=status, sent=sent, headers=[("Content-Length", "24")])
    req = types.SimpleNamespace(headers=HEADERS)
    ours = _line(AccessLogger, ACCESS_LOG_FORMAT, resp, req, environ)
    assert ours == _line(Logger, ACCESS_LOG_FORMAT, resp, req, environ)
    assert "secret-token" not in ours  # the webhook's token is in the query, never logged


def test_another_format_gets_every_field_as_before() -> None:
    fmt = '%(h)s %(u)s %(r)s %(s)s %(b)s "%(a)s" %({host}i)s %(D)s'
    resp = types.SimpleNamespace(status="201 Created", sent=7, headers=[("X-Id", "1")])
    req = types.SimpleNamespace(headers=HEADERS)
    ours = _line(AccessLogger, fmt, resp, req, ENVIRON)
    assert ours == _line(Logger, fmt, resp, req, ENVIRON)
    assert "vault.example" in ours and "user" in ours  # a header and the Basic user
