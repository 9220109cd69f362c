"""service.strict_json: strict JSON for untrusted bodies."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.strict_json import (
    MAX_DEPTH,
    BadJson,
    _may_overflow,
    loads,
    loads_object,
    nesting_depth,
)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b'{"a": [-Infinity]}', "-Infinity is not a JSON number"),
        (b'{"a": 1e999}', "the number 1e999 is too large"),
        (b'{"a": -1.5e400}', "too large"),
        (b'{"a": 1', "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 900 + b"]" * 900, f"deeper than {MAX_DEPTH} levels"),
        (b'{"a":' * 100_000, f"deeper than {MAX_DEPTH} levels"),
    ],
)
def test_refused_bodies_name_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(BadJson, match=problem) as caught:
        loads(body)
    assert caught.value.status == 400


def test_depth_counts_structure_not_brackets_inside_strings() -> None:
    assert nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert nesting_depth(b'{"s": "[[[[{{{{ \\" [[[["}') == 1
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert loads(at_limit) is not None
    text = '{"s": "' + "[" * 1000 + '", "n": 1.5, "big": 12345678901234567890}'
    assert loads_object(text) == {"s": "[" * 1000, "n": 1.5, "big": 12345678901234567890}


def test_the_top_level_must_be_an_object_when_asked() -> None:
    with pytest.raises(BadJson, match="must be a JSON object"):
        loads_object(b"[1, 2]")


@pytest.mark.parametrize(
    "number",
    [
        "1e999",
        "1E+400",
        "-2.5e308",
        "1e0999",
        "9" * 250 + "e99",
        "1" + "0" * 400 + ".5",
        "0.5e400",
    ],
)
def test_every_number_too_large_for_a_float_is_refused(number: str) -> None:
    # The C parser reads floats itself unless the body may hold such a number: each of
    # these must take the checked way, wherever it sits.
    for body in (f'{{"a": {number}}}', f"[1, {number}]", f'{{"t": "x", "n": [{{"v": {number}}}]}}'):
        with pytest.raises(BadJson, match="too large"):
            loads(body.encode())


_NUMBER = r"-?(0|[1-9][0-9]{0,320})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,5})?"
_SHAPES = ['{{"n": {}}}', "[{}]", "[{} ]", "[{}\n, 1]", '{{"s": "e123", "n":{}}}']


@settings(max_examples=500, deadline=None)
@given(st.from_regex(_NUMBER, fullmatch=True), st.sampled_from(_SHAPES))
def test_every_number_that_overflows_takes_the_checked_way(number: str, shape: str) -> None:
    body = shape.format(number).encode()
    if math.isinf(float(number)):
        assert _may_overflow(body), body
        with pytest.raises(BadJson, match="too large"):
            loads(body)
    else:
        assert loads(body) == json.loads(body)


def test_hex_ids_and_ordinary_floats_keep_the_fast_parse() -> None:
    body = b'{"track_id": "ab5e123f00", "t": 1.5e10, "eta": 416.94, "n": 1e99}'
    assert not _may_overflow(body)
    assert loads(body) == {"track_id": "ab5e123f00", "t": 1.5e10, "eta": 416.94, "n": 1e99}


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"]))
def test_bodies_read_as_json_loads_reads_them_in_every_encoding(
    value: object, encoding: str
) -> None:
    body = json.dumps(value, ensure_ascii=False).encode(encoding, "surrogatepass")
    assert loads(body) == json.loads(body)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_bytes_json_loads_refuses_are_refused(body: bytes) -> None:
    try:
        expected = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        with pytest.raises(BadJson):
            loads(body)
        return
    if b"NaN" in body or b"Infinity" in body or "inf" in repr(expected):
        return  # json.loads takes these; loads refuses them (tested above)
    assert loads(body) == expected
