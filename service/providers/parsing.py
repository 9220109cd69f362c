"""Tolerant reading of provider bodies into ProviderResult.

Every quirk of PROVIDERS.md is absorbed here, so the clients only deal with HTTP. Nothing in
a body is trusted to have the documented type: ids come as numbers, strings or null, lists
as objects, messages as strings or field → messages maps.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from service.providers.base import ProviderError, ProviderResult, ResultStatus
from service.security.redaction import PLAIN_TYPES, REDACTED, is_secret_name, redact_url

# Large enough for AI/ML API's inline b64_json images (up to 4), small enough to bound memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
MESSAGE_MAX = 500

_MODELSLAB_STATUS = {
    "success": ResultStatus.SUCCESS,
    "processing": ResultStatus.PROCESSING,
    "queued": ResultStatus.PROCESSING,
    "error": ResultStatus.FAILED,
    "failed": ResultStatus.FAILED,
}
_TRUE_WORDS = {"yes", "true", "1", "on"}
_WHITESPACE = re.compile(r"\s")
# A URL urlsplit() reads as http(s) with a host: lower-case scheme, a host name of letters,
# digits, dots and dashes, an optional port, then nothing or a path, query or fragment. The
# usual provider URL, told apart without urlsplit (4% of a webhook's CPU in process, under
# py-spy); anything else goes through urlsplit.
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?(?::[0-9]*)?(?:[/?#]|\Z)"
)


def read_json(response: requests.Response, provider: str) -> Any:
    """The response's JSON body, or None when it is not JSON; ProviderError past the cap."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProviderError(f"{provider} answered with a body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


def retry_after(body: Any, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: the body's ``retry_after``, else a numeric ``Retry-After`` header."""
    if isinstance(body, Mapping) and (seconds := _number(body.get("retry_after"))) is not None:
        return seconds
    # Neither provider documents the HTTP-date form; a date reads as "not given".
    return _number(headers.get("Retry-After"))


def modelslab_status(body: Mapping[str, Any]) -> ResultStatus | None:
    """The body's ``status`` as a ResultStatus, None when missing or unknown."""
    value = body.get("status")
    return _MODELSLAB_STATUS.get(value.strip().lower()) if isinstance(value, str) else None


def parse_modelslab(body: Mapping[str, Any], *, secrets: Iterable[str] = ()) -> ProviderResult:
    """Normalise a ModelsLab submit, fetch or webhook body.

    A missing or unknown ``status`` reads as processing: it moves no job, and the next poll
    settles it, whereas guessing "failed" could drop a paid generation.
    """
    secrets = tuple(s for s in secrets if s)
    status = modelslab_status(body) or ResultStatus.PROCESSING
    meta = body.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    outputs = _image_locations(body.get("output"))
    if status is ResultStatus.SUCCESS and not outputs:
        outputs = _image_locations(body.get("proxy_links"))
    message = readable_message(body.get("message", body.get("messege")), secrets)
    failed = status is ResultStatus.FAILED
    return ProviderResult(
        status=status,
        request_id=_identifier(body.get("id")),
        outputs=outputs,
        eta_seconds=_number(body.get("eta")),
        fetch_url=_http_url(body.get("fetch_result")),
        error_code="provider_error" if failed else None,
        error_message=(message or "ModelsLab reported a failure without a message")
        if failed
        else None,
        nsfw=_flag(body.get("nsfw_content_detected")),
        base64_files=_flag(meta.get("base64")) is True or any(_base64_file(url) for url in outputs),
        width=_dimension(meta.get("width", meta.get("W"))),
        height=_dimension(meta.get("height", meta.get("H"))),
        raw=_scrub(body, secrets),
        track_id=_identifier(body.get("track_id")),
    )


def parse_aimlapi(body: Mapping[str, Any], *, secrets: Iterable[str] = ()) -> ProviderResult:
    """Normalise an AI/ML API answer: ``data: [{url, b64_json}]`` or ``images: [{url, ...}]``."""
    secrets = tuple(s for s in secrets if s)
    items = body.get("data")
    if not isinstance(items, list):
        items = body.get("images")
    items = [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []
    outputs: list[str] = []
    for item in items:
        url, inline = item.get("url"), item.get("b64_json")
        if _http_url(url):
            outputs.append(str(url))
        elif isinstance(url, str) and url.strip().lower().startswith("data:image/"):
            # The `images` shape has no b64_json: an inline image comes as a data: URI.
            outputs.append(image_data_uri(url))
        elif isinstance(inline, str) and inline.strip():
            outputs.append(image_data_uri(inline))
    sized: Mapping[str, Any] = next((i for i in items if _dimension(i.get("width"))), {})
    status = ResultStatus.SUCCESS if outputs else ResultStatus.FAILED
    return ProviderResult(
        status=status,
        request_id=_identifier(body.get("id")),
        outputs=tuple(outputs),
        error_code=None if outputs else "provider_error",
        error_message=None if outputs else "AI/ML API answered without any image",
        nsfw=_flag(body.get("has_nsfw_concepts")),
        width=_dimension(sized.get("width")),
        height=_dimension(sized.get("height")),
        raw=_scrub_dict(_without_inline_images(body), secrets),
    )


def readable_message(value: Any, secrets: Iterable[str] = ()) -> str | None:
    """A provider message as one line: ``{"prompt": ["..."]}`` → ``prompt: ...``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        parts = [f"{key}: {readable_message(item) or ''}".strip() for key, item in value.items()]
        text = "; ".join(parts)
    elif isinstance(value, list):
        text = " ".join(filter(None, (readable_message(item) for item in value)))
    elif value is None:
        return None
    else:
        text = str(value)
    text = " ".join(redact_text(text, secrets).split())
    return text[:MESSAGE_MAX] or None


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of a secret replaced (providers echo keys back)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a body fit for storage: secret-named fields removed, secrets and URL tokens
    blanked wherever they appear."""
    return _scrub(value, tuple(s for s in secrets if s))


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:  # noqa: PLR0911 - as redact
    """:func:`scrub` with ``secrets`` already a tuple of non-empty secrets.

    Exact dicts, lists, strs and numbers (all a JSON body holds) take the fast paths, with
    type() rather than the slower isinstance() against the ABC; anything else goes the
    general way. Either way every container is a new one: callers get a copy.
    """
    kind = type(value)
    if kind is str:
        return _scrub_str(value, secrets)
    if kind is dict:
        return _scrub_dict(value, secrets)
    if kind is list:
        return [_scrub_str(i, secrets) if type(i) is str else _scrub(i, secrets) for i in value]
    if kind in PLAIN_TYPES:
        return value
    if isinstance(value, Mapping):
        return _scrub_dict(value, secrets)
    if isinstance(value, list | tuple):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, str):
        text = redact_text(value, secrets)
        return redact_url(text) if text.startswith(("http://", "https://")) else text
    return value


def _scrub_dict(value: Mapping[Any, Any], secrets: tuple[str, ...]) -> dict[str, Any]:
    copy: dict[str, Any] = {}
    for key, item in value.items():
        name = key if type(key) is str else str(key)
        if not is_secret_name(name):
            kind = type(item)
            if kind is str:
                copy[name] = _scrub_str(item, secrets)
            elif kind in PLAIN_TYPES:
                copy[name] = item
            else:
                copy[name] = _scrub(item, secrets)
    return copy


def _scrub_str(text: str, secrets: tuple[str, ...]) -> str:
    """:func:`scrub` of an exact str."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    # Without a "?" there is no query, and redact_url gives the URL back as it is.
    if "?" in text and text.startswith(("http://", "https://")):
        return redact_url(text)
    return text


def image_data_uri(b64: str) -> str:
    """An inline base64 image as a ``data:`` URI, its type sniffed from the magic bytes."""
    b64 = "".join(b64.split())
    if b64.startswith("data:"):
        return b64
    try:
        head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4))
    except (binascii.Error, ValueError):
        head = b""
    if head.startswith(b"\xff\xd8\xff"):
        kind = "jpeg"
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        kind = "webp"
    else:
        kind = "png"  # b64_json is PNG unless the bytes say otherwise
    return f"data:image/{kind};base64,{b64}"


def _without_inline_images(body: Mapping[str, Any]) -> dict[str, Any]:
    # The manifest keeps the provider's answer; the images themselves are archived separately.
    copy = dict(body)
    data = copy.get("data")
    if isinstance(data, list):
        copy["data"] = [
            {**item, "b64_json": f"[{len(item['b64_json'])} base64 characters]"}
            if isinstance(item, Mapping) and isinstance(item.get("b64_json"), str)
            else item
            for item in data
        ]
    images = copy.get("images")
    if isinstance(images, list):
        copy["images"] = [
            {**item, "url": f"{item['url'].split(',', 1)[0]},[{len(item['url'])} characters]"}
            if isinstance(item, Mapping)
            and isinstance(item.get("url"), str)
            and item["url"].startswith("data:")
            else item
            for item in images
        ]
    return copy


def _image_locations(value: Any) -> tuple[str, ...]:
    """``output``/``proxy_links``: a list, ``""``, one string, or ``{"0": url, ...}``."""
    if isinstance(value, Mapping):
        # {"0": url, "1": url}: order by the numeric key, not by insertion.
        value = [value[k] for k in sorted(value, key=lambda k: str(k).zfill(12))]
    elif isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(
        item.strip()
        for item in value
        if isinstance(item, str) and (_http_url(item) or item.startswith("data:image/"))
    )


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    return text or None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):  # None: float() would raise, slowly
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _dimension(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number and number.is_integer() else None


def _flag(value: Any) -> bool | None:
    """A boolean sent as a bool, a "yes"/"no" string, or a list of per-image booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, list) and value:
        return any(_flag(item) for item in value)
    return None


def _base64_file(url: str) -> bool:
    """Whether the URL's path ends with ``.base64``."""
    # urlsplit first drops tabs and line breaks (a data: URI may hold some), which could
    # join up a ".base64"; otherwise the path has one only if the URL has.
    if ".base64" not in url and "\t" not in url and "\r" not in url and "\n" not in url:
        return False
    return urlsplit(url).path.endswith(".base64")


def _http_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _WHITESPACE.search(text):
        return None
    if _PLAIN_HTTP_URL.match(text):
        return text
    parts = urlsplit(text)
    return text if parts.scheme in ("http", "https") and parts.hostname else None
