"""Refuse control characters in path parameters, query strings and the Idempotency-Key.

PostgreSQL rejects NUL in text, so a NUL in a job id, cursor or filter used to reach the
database and come back as a 500. No id, cursor, filter or key of ours contains a control
character, so any of them is a client error (422 naming the field), checked before the view.
Blueprints opt in with ``bp.before_request(refuse_control_characters)``.
"""

from __future__ import annotations

import re

from flask import request

from service.errors import FieldError, InvalidRequest

# C0 controls, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CHECKED_HEADERS = ("Idempotency-Key",)


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def refuse_control_characters() -> None:
    args = request.args
    headers = [request.headers.get(h) or "" for h in CHECKED_HEADERS]
    # One search over everything first: nearly every request is clean, and this runs on
    # each webhook. Only a hit pays for finding which field it was in.
    view_args = [v for v in (request.view_args or {}).values() if isinstance(v, str)]
    pairs = [text for pair in args.items(multi=True) for text in pair]
    everything = "".join([*view_args, *pairs, *headers])
    if not has_control_characters(everything):
        return
    errors: list[FieldError] = []
    message = "must not contain control characters"
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and has_control_characters(value):
            errors.append(FieldError(name, message))
    for name, value in request.args.items(multi=True):
        if has_control_characters(name) or has_control_characters(value):
            errors.append(
                FieldError(name if not has_control_characters(name) else "query", message)
            )
    for header in CHECKED_HEADERS:
        value = request.headers.get(header)
        if value is not None and has_control_characters(value):
            errors.append(FieldError(header, message))
    if errors:
        raise InvalidRequest(errors)
