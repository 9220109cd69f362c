"""One place that turns exceptions into JSON error responses (ErrorBody)."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from service.api.schemas import ErrorBody, ErrorDetail, FieldProblem, respond, respond_serialised
from service.db.availability import is_unavailable
from service.errors import InvalidRequest, RequestError, Retained

log = logging.getLogger(__name__)

# Seconds a client (or a provider that retries its webhooks) is told to wait while the
# database is unreachable: about what a restart or a failover takes.
DATABASE_RETRY_AFTER = 5
# The answer while it is away, serialised once: also the webhook entry's (webhook_entry.py).
UNAVAILABLE_JSON = (
    ErrorBody(
        error=ErrorDetail(code="unavailable", message="the database is unavailable; retry shortly")
    )
    .model_dump_json(exclude_none=True)
    .encode()
)


def error_body(
    code: str,
    message: str,
    errors: list[FieldProblem] | None = None,
    retain_until: str | None = None,
) -> ErrorBody:
    return ErrorBody(
        error=ErrorDetail(code=code, message=message, errors=errors, retain_until=retain_until)
    )


def register(app: Flask) -> None:
    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError) -> tuple[Response, int]:
        errors = (
            [FieldProblem(field=e.field, message=e.message) for e in exc.errors]
            if isinstance(exc, InvalidRequest)
            else None
        )
        until = exc.until if isinstance(exc, Retained) else None
        retain_until = until.isoformat() if until is not None else None
        return respond(error_body(exc.code, exc.message, errors, retain_until), exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return respond(error_body(code, exc.description or exc.name), exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        if is_unavailable(exc):
            # Not our bug and not the client's: 503 so clients and providers retry later.
            log.warning("database unavailable: %s", type(exc).__name__)
            response, status = respond_serialised(UNAVAILABLE_JSON.decode(), 503)
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
            return response, status
        log.exception("unhandled error")
        return respond(error_body("internal_error", "internal error; see the service log"), 500)
