"""The webhook's way in below Flask: a callback in order is answered straight from WSGI.

A provider's callback is the one request genvault receives by the thousand, and for it
Flask's request machinery (request and app contexts, URL matching, the session, the
before/after hooks, a Response object) cost more CPU than verifying and parsing it: in
process, bare Flask answering a JSON body costs 77 us, the whole webhook here without its
write 37 us (bench/webhook_cpu.py); under load it was the difference between genvault and
the ten-line receiver a user would write (bench/ingest.py on PostgreSQL: 0.97x of it
through Flask, 1.25x through here).

So this WSGI middleware, in front of the Flask app, answers ``POST /webhooks/{provider}/
{track_id}?token=...`` itself when the request is plainly in order: path segments and
token of plain characters and nothing else in the query (so nothing for Flask to decode
or the control-character guard to refuse), a Content-Length within the webhook cap, no
chunked body. It runs what the Flask view runs (webhooks.py: the same receiver, the same
metrics, the same answers). Every other request goes to the Flask app untouched, and so
does every refusal (a bad token, an unknown track_id, a body that is not JSON...) with the
body it read handed back: the view decides it again and answers as it always has, so the
error answers have one source. A database outage is answered here (503, as the view's
error handler would), so that a request does not wait for the database twice.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from service import metrics
from service.api.errors import DATABASE_RETRY_AFTER, UNAVAILABLE_JSON
from service.api.webhooks import acknowledge
from service.db.availability import is_unavailable

if TYPE_CHECKING:
    from service.wiring import Container

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PATH = re.compile(r"/webhooks/([A-Za-z0-9_.-]{1,64})/([A-Za-z0-9_.-]{1,256})")
_QUERY = re.compile(r"token=([A-Za-z0-9_-]{1,128})")
_JSON = ("Content-Type", "application/json")


class WebhookEntry:
    """``app`` with webhooks in order answered here (see the module's docstring)."""

    def __init__(self, app: WsgiApp, container: Container) -> None:
        self.app = app
        self.container = container

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        path = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        query = _QUERY.fullmatch(environ.get("QUERY_STRING", ""))
        length = environ.get("CONTENT_LENGTH") or ""
        c = self.container
        if (
            path is None
            or query is None
            or not length.isdigit()
            or int(length) > c.settings.webhook_max_bytes
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return self.app(environ, start_response)
        provider, track_id = path.groups()
        started = time.perf_counter()
        body = environ["wsgi.input"].read(int(length))
        try:
            c.receiver.authenticate(provider, track_id, query.group(1))
            outcome = c.receiver.receive(provider, track_id, body)
        except Exception as exc:  # noqa: BLE001 - every one is answered, here or by the view
            if not is_unavailable(exc):
                # Refused, or a bug: the view decides it again and answers (webhooks.py).
                environ["wsgi.input"] = io.BytesIO(body)
                return self.app(environ, start_response)
            log.warning("database unavailable: %s", type(exc).__name__)
            metrics.WEBHOOKS.labels(provider, "unavailable").inc()
            return _answer(
                start_response,
                "503 SERVICE UNAVAILABLE",
                UNAVAILABLE_JSON,
                ("Retry-After", str(DATABASE_RETRY_AFTER)),
            )
        return _answer(
            start_response, "200 OK", acknowledge(c, provider, outcome, started).encode()
        )


def _answer(
    start_response: Callable[..., Any], status: str, body: bytes, *extra: tuple[str, str]
) -> list[bytes]:
    start_response(status, [_JSON, ("Content-Length", str(len(body))), *extra])
    return [body]
