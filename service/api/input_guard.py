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
    fields = _checked_fields()
    # One search over everything first: nearly every request is clean, and this runs on
    # each webhook. Only a hit pays for finding which field it was in.
    if not has_control_characters("".join(text for _, text in fields)):
        return
    message = "must not contain control characters"
    raise InvalidRequest(
        [
            # A query parameter whose very name is bad cannot be named back: "query".
            FieldError("query" if has_control_characters(name) else name, message)
            for name, text in fields
            if has_control_characters(text)
        ]
    )


def _checked_fields() -> list[tuple[str, str]]:
    """(name, text) of every path parameter, query parameter (name and value) and checked
    header of the request."""
    fields = [(k, v) for k, v in (request.view_args or {}).items() if isinstance(v, str)]
    fields += [(k, k + v) for k, v in request.args.items(multi=True)]
    fields += [(h, v) for h in CHECKED_HEADERS if (v := request.headers.get(h)) is not None]
    return fields
