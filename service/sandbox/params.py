"""Reading the providers' loosely typed request fields the way their docs show them."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

_TRUE_WORDS = frozenset({"true", "yes", "1"})


class FieldProblem(ValueError):
    """A request field is missing or wrong; the message is the provider-style sentence."""


def label(name: str) -> str:
    """``init_image_2`` → ``init image 2``, as Laravel-style messages name fields."""
    return name.replace("_", " ")


def integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer field given as a number or a numeric string (``"512"``), within bounds."""
    value = body.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise FieldProblem(f"The {label(name)} must be an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FieldProblem(f"The {label(name)} must be an integer.") from None
    if not low <= number <= high:
        raise FieldProblem(f"The {label(name)} must be between {low} and {high}.")
    return number


def optional_integer(body: dict[str, Any], name: str, low: int) -> int | None:
    """Like ``integer`` but absent, null and ``""`` give None (a seed to be chosen)."""
    if body.get(name) in (None, ""):
        return None
    return integer(body, name, 0, low, 2**32 - 1)


def truthy(value: Any) -> bool:
    """Booleans as the docs write them: ``true``, ``"yes"``, ``"true"``, ``1``."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE_WORDS


def looks_like_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def file_stem() -> str:
    """A fresh random file name stem, shaped like the providers' (a UUID)."""
    return str(uuid.uuid4())
