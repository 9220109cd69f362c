"""Removing secrets and inline data from anything that is stored, logged or returned.

One function, :func:`redact`, for every path (job rows, callbacks, manifests, logs): secret
fields and URL tokens are blanked, and inline images (``data:`` URIs, ``b64_json``) become a
summary — media type, size, SHA-256 and, once archived, the key they were archived as — so
a 7.8 MB image is never copied into a row, a manifest or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

_SECRET_NAMES = re.compile(
    r"^(key|api_?key|.*_key|token|.*_token|authorization|secret|.*_secret|password|credentials?"
    r"|access_key_id|sig|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token)$",
    re.IGNORECASE,
)
_NOT_SECRET = {"track_id", "idempotency_key", "manifest_key", "model_key", "s3_key"}
# Fields that carry a whole image as base64 (AI/ML API).
_INLINE_FIELDS = {"b64_json"}
# A data: URI inside free text (log messages, error strings): header, comma, payload.
_DATA_URI_IN_TEXT = re.compile(r"data:([\w.+/-]*)((?:;[\w.+=-]*)*),([A-Za-z0-9+/=%_-]*)")
SUMMARY_MARK = "inline"
# is_secret_name's answers for field names up to this long, this many at most.
_NAME_CACHE_LENGTH = 64
_NAME_CACHE_SIZE = 4096
_secret_names: dict[str, bool] = {}
# What redact and scrub return as they are, recognised by their exact type.
PLAIN_TYPES = frozenset({int, float, bool, type(None)})


def summarise_inline(value: str, archived_as: str | None = None) -> dict[str, Any]:
    """What is kept of an inline image: its type, decoded size and SHA-256, and its key."""
    header, _, payload = value.partition(",") if value.startswith("data:") else ("", "", value)
    media_type = header[5:].split(";", 1)[0].strip().lower() or None
    try:
        data = base64.b64decode("".join(payload.split()), validate=False)
    except (binascii.Error, ValueError):
        data = payload.encode("utf-8", "replace")
    return {
        SUMMARY_MARK: "data" if header else "base64",
        "media_type": media_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "archived_as": archived_as,
    }


def is_summary(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SUMMARY_MARK) in ("data", "base64")


def summary_text(summary: Mapping[str, Any]) -> str:
    """A summary as one short string (source_url columns, log messages)."""
    return (
        f"data:{summary.get('media_type') or ''};base64,… ({summary.get('size')} bytes,"
        f" sha256 {summary.get('sha256')})"
    )


def redact_text(text: str) -> str:
    """Free text with every inline data: URI replaced by its summary."""
    if "data:" not in text:
        return text
    return _DATA_URI_IN_TEXT.sub(lambda m: summary_text(summarise_inline(m.group(0))), text)


def is_secret_name(name: str) -> bool:
    if type(name) is str:
        # The same few field names come in every body: remember the answer for short ones
        # (bounded both ways, so hostile bodies with endless distinct keys cost no memory).
        known = _secret_names.get(name)
        if known is not None:
            return known
        secret = name.lower() not in _NOT_SECRET and bool(_SECRET_NAMES.match(name))
        if len(name) <= _NAME_CACHE_LENGTH and len(_secret_names) < _NAME_CACHE_SIZE:
            _secret_names[name] = secret
        return secret
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


def redact(value: Any) -> Any:  # noqa: PLR0911 - a fast path per exact type
    """A deep copy of ``value`` with secret fields, URL tokens and inline images removed."""
    # Exact dicts, lists and strs (all a JSON body holds) take the fast paths below, with
    # type() rather than the slower isinstance() against the ABC; anything else goes the
    # general way. Either way every container is a new one: callers get a copy.
    kind = type(value)
    if kind is dict:
        return _redact_dict(value)
    if kind is list:
        return [_redact_str(v) if type(v) is str else redact(v) for v in value]
    if kind is str:
        return _redact_str(value)
    if kind in PLAIN_TYPES:
        return value
    if isinstance(value, Mapping):
        return _redact_dict(value)
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            return summarise_inline(value)
        if value.startswith(("http://", "https://")) and "?" in value:
            return redact_url(value)
    return value


def _redact_dict(value: Mapping[Any, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = {}
    for k, v in value.items():
        name = k if type(k) is str else str(k)
        if is_secret_name(name):
            copy[name] = REDACTED
        elif type(v) is str:
            if name in _INLINE_FIELDS and len(v) > 64:
                copy[name] = summarise_inline(v)
            else:
                copy[name] = _redact_str(v)
        elif type(v) in PLAIN_TYPES:
            copy[name] = v
        elif name in _INLINE_FIELDS and isinstance(v, str) and len(v) > 64:
            copy[name] = summarise_inline(v)
        else:
            copy[name] = redact(v)
    return copy


def _redact_str(value: str) -> Any:
    """:func:`redact` of an exact str."""
    first = value[:1]
    if first == "h":
        if "?" in value and value.startswith(("http://", "https://")):
            return redact_url(value)
    elif first in {"d", "D"} and value[:5].lower() == "data:":
        # No character but "d" and "D" lowers to a "d", so other strings are never data:.
        return summarise_inline(value)
    return value


def describe_source(url: str) -> str:
    """How an image's source is recorded: inline data is summarised, not copied."""
    if url[:5].lower() == "data:":
        return summary_text(summarise_inline(url))
    return redact_url(url)
