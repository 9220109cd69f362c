"""Removing secrets from anything that is stored, logged or returned."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

_SECRET_NAMES = re.compile(
    r"^(key|api_?key|.*_key|token|.*_token|authorization|secret|.*_secret|password|sig|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token)$",
    re.IGNORECASE,
)
_NOT_SECRET = {"track_id", "idempotency_key", "manifest_key", "model_key", "s3_key"}


def is_secret_name(name: str) -> bool:
    return name.lower() not in _NOT_SECRET and bool(_SECRET_NAMES.match(name))


def redact_url(url: str) -> str:
    """The URL with secret-looking query parameters (our webhook token included) blanked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    query = [(k, REDACTED if is_secret_name(k) else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with secret fields and URL tokens removed."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_name(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")) and "?" in value:
        return redact_url(value)
    return value


def describe_source(url: str) -> str:
    """How an image's source is recorded: inline data is summarised, not copied."""
    if url.startswith("data:"):
        return url.split(",", 1)[0] + ",…"
    return redact_url(url)
