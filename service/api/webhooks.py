"""POST /webhooks/{provider}/{track_id}: the providers' way in. Verify, record, acknowledge.

A webhook in order is answered below Flask by the webhook entry (webhook_entry.py), which
runs what this view runs; this view answers the rest, refusals included.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from service import metrics
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import Param, Reply, documented
from service.api.schemas import WebhookAck, respond_serialised
from service.db.availability import is_unavailable
from service.errors import RequestError
from service.jobs.callbacks import CallbackTooLarge
from service.jobs.ingest import Outcome

if TYPE_CHECKING:
    from service.wiring import Container

bp = Blueprint("webhooks", __name__)
# The two possible answers, serialised once by their model: the provider waits on each one.
_ACKS = {outcome: WebhookAck(status=outcome.value).model_dump_json() for outcome in Outcome}
bp.before_request(refuse_control_characters)


def _read_capped(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise CallbackTooLarge(f"the callback body is larger than {limit} bytes")
    # Content-Length may be absent (chunked) or wrong: read one byte past the cap to know.
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise CallbackTooLarge(f"the callback body is larger than {limit} bytes")
    return body


@bp.post("/webhooks/<provider>/<track_id>")
@documented(
    "Provider callback: verify, record, acknowledge",
    {200: Reply("recorded (new or duplicate)", WebhookAck)},
    errors=(400, 401, 404, 413, 422),
    body=Reply("the provider's callback, a JSON object", schema={"type": "object"}),
    query=[Param("token", "query", required=True, description="the job's webhook token")],
    public=True,
)
def receive(provider: str, track_id: str) -> tuple[Response, int]:
    c = container()
    started = time.perf_counter()
    try:
        c.receiver.authenticate(provider, track_id, request.args.get("token"))
        body = _read_capped(c.settings.webhook_max_bytes)
        outcome = c.receiver.receive(provider, track_id, body)
    except RequestError as exc:
        metrics.WEBHOOKS.labels(provider if provider in c.providers else "unknown", exc.code).inc()
        raise
    except Exception as exc:
        # Answered 503 (database away) or 500 by the error handlers: counted too, for alerts.
        if not isinstance(exc, HTTPException):
            code = "unavailable" if is_unavailable(exc) else "internal_error"
            metrics.WEBHOOKS.labels(provider if provider in c.providers else "unknown", code).inc()
        raise
    return respond_serialised(acknowledge(c, provider, outcome, started))


def acknowledge(c: Container, provider: str, outcome: Outcome, started: float) -> str:
    """What both ways in do with a recorded callback (this view and webhook_entry.py): count
    and time it, wake the workers; the answer's body."""
    _counter(provider, outcome).inc()
    metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    c.wake_workers()
    return _ACKS[outcome]


@functools.cache
def _counter(provider: str, outcome: Outcome) -> Any:
    """The webhook counter's child for a recorded callback, looked up once: labels() takes a
    lock and builds its key on every call. ``provider`` is one we have (its token checked)."""
    return metrics.WEBHOOKS.labels(provider, outcome.value)
