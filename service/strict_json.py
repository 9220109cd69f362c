"""Safe parsing of untrusted JSON bodies (job requests and provider webhooks).

``json.loads`` alone lets three things through that end as 5xx further on: ``NaN`` and
``Infinity`` (and ``1e999``, which overflows to ``inf``) are not JSON and cannot be stored or
served back; a body nested a few hundred levels deep raises RecursionError inside the
parser. So the depth is measured on the raw bytes *before* parsing, and non-finite numbers
are refused while parsing. Every failure is a BadJson (400) that names the problem.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from service.errors import RequestError

# Far more than any provider or client sends, far less than the parser's recursion limit.
MAX_DEPTH = 64

# A JSON string, escapes included; possessive so that hostile input cannot backtrack.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
# What may be a number too large for a float (1e999, or 400 digits): a positive exponent
# of three or more digits, or a run of 200 digits (fewer, with an exponent below 100, stay
# under 1e299). A number's exponent ends at a delimiter, never at a letter, "_" or ".", and
# the digits are taken possessively: so most hex ids ("ab5e123f00") do not match. What does
# match inside a string only takes the checked way, a Python call per float. Two plain
# patterns, not one that looked behind each number for its start: 2.0 against 8.3 us for
# bench/ingest.py's callback body, more than decoding it cost.
_BIG_EXPONENT = re.compile(rb"[eE]\+?[0-9]{3,}+(?![A-Za-z_.])")
_LONG_DIGITS = re.compile(rb"[0-9]{200}")


# Keep only the brackets once strings are gone.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BadJson(RequestError):
    """The body is not acceptable JSON."""

    status = 400
    code = "bad_json"


def nesting_depth(body: bytes, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in ``body``, counting stops just past ``limit``."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for char in brackets:
        if char in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _may_overflow(raw: bytes) -> bool:
    """Whether ``raw`` may hold a number too large for a float (then it is parsed checked)."""
    return bool(_BIG_EXPONENT.search(raw) or _LONG_DIGITS.search(raw))


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number; use a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadJson(f"the number {text[:40]} is too large")
    return value


# Made once: json.loads with any keyword builds a decoder and its scanner on every call, 8 of
# the 14 us a webhook's body took to parse. Sharing one across threads is what json.loads
# itself does with its default decoder.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_CHECKED_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``body`` as strict JSON; raise BadJson (400) for anything we refuse to take."""
    raw = body.encode() if isinstance(body, str) else body
    # Fewer openings than the limit cannot nest deeper (the common case): skip the scan.
    openings = raw.count(b"[") + raw.count(b"{")
    if openings > max_depth and nesting_depth(raw, max_depth) > max_depth:
        raise BadJson(f"the body nests arrays and objects deeper than {max_depth} levels")
    # Only a number with a three-digit exponent or hundreds of digits can overflow to inf:
    # other bodies keep the C parser's own float parsing (a Python call per float cost a
    # webhook more than the rest of its parse).
    decoder = _CHECKED_DECODER if _may_overflow(raw) else _DECODER
    try:
        # As json.loads reads bytes: UTF-8, -16 or -32, told apart by the first bytes.
        return decoder.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        # ValueError covers JSONDecodeError and integers longer than Python will convert.
        raise BadJson("the body is not valid JSON") from None


def loads_object(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Like ``loads``, and the top level must be a JSON object."""
    value = loads(body, max_depth=max_depth)
    if not isinstance(value, dict):
        raise BadJson("the body must be a JSON object")
    return value
