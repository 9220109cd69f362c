"""service.strict_json: strict JSON for untrusted bodies."""

from __future__ import annotations

import pytest

from service.strict_json import MAX_DEPTH, BadJson, loads, loads_object, nesting_depth


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
