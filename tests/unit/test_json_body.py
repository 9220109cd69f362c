"""service.strict_json: strict JSON for untrusted bodies."""

from __future__ import annotations

import pytest

from service.strict_json import _HUGE_NUMBER, MAX_DEPTH, BadJson, loads, loads_object, nesting_depth


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


def test_hex_ids_and_ordinary_floats_keep_the_fast_parse() -> None:
    body = b'{"track_id": "ab5e123f00", "t": 1.5e10, "eta": 416.94, "n": 1e99}'
    assert not _HUGE_NUMBER.search(body)
    assert loads(body) == {"track_id": "ab5e123f00", "t": 1.5e10, "eta": 416.94, "n": 1e99}
