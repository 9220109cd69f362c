"""Page sizes of the list endpoints (/v1/jobs, /v1/events): one rule, one message."""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import FieldError

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


def page_limit(args: Mapping[str, str], errors: list[FieldError]) -> int:
    """The ``limit`` query parameter; a bad one is added to ``errors`` (and 0 returned)."""
    try:
        limit = int(args.get("limit", str(DEFAULT_LIMIT)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        errors.append(FieldError("limit", f"must be an integer from 1 to {MAX_LIMIT}"))
        return 0
    return limit
