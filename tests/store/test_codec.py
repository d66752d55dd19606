"""The fast canonical JSON (orjson) must be byte for byte the definition (json.dumps), and
refuse exactly what json.dumps refuses: its bytes feed every checksum in Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit.store import codec


def reference(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        return "error", type(exc).__name__ if not isinstance(exc, UnicodeEncodeError) else "ValueError"


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text()
           | st.sampled_from([1e-5, 1.5e-7, 9.99e-5, 1e-4, 1e-9, 1e-10, 1e16, 1e22, -0.0, 5e-324, 1.7976931348623157e308,
                              "1e-5", "0.00001", "e-1 ", "\ud800", "\x00\x1f\x7f\u2028\"\\"]))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.tuples(kids, kids)
                      | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=25)


@settings(max_examples=3000, deadline=None)
@given(values)
def test_canonical_is_json_dumps(value: Any) -> None:
    want = outcome(reference, value)
    assert outcome(codec.canonical, value) == want
    if want[0] == "ok":
        assert codec.dumps(value).encode() == want[1]


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_formats_like_python(x: float) -> None:
    assert codec.canonical({"x": [x]}) == reference({"x": [x]})


def test_float_exponents_exhaustively() -> None:
    for e in range(-330, 309):
        for m in (1.0, 1.234, 4.9999999, 9.999999999999998):
            x = m * 10.0**e
            if math.isfinite(x):
                assert codec.canonical([x, -x]) == reference([x, -x]), x


class Plain(enum.Enum):
    A = 1


class Number(enum.IntEnum):
    ONE = 1


class Word(enum.StrEnum):
    HI = "hi"


@dataclasses.dataclass
class Point:
    x: int


class MyDict(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize("value", [
    math.nan, math.inf, -math.inf, [1, {"a": math.nan}], uuid.uuid4(), Plain.A, Number.ONE, Word.HI,
    Point(1), dt.datetime(2026, 1, 1), dt.date(2026, 1, 1), decimal.Decimal("1.5"), {1, 2}, {1: "int key"},
    {True: 1}, {"a": 1, 2: "mixed"}, MyDict(b=1, a=2), (1, 2), 2**64, -(2**63) - 1, "\udc80", b"bytes",
    object(), [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
])
def test_odd_values_match_or_refuse_like_json_dumps(value: Any) -> None:
    assert outcome(codec.canonical, value) == outcome(reference, value)


def test_deep_nesting_falls_back() -> None:
    deep: Any = 1
    for _ in range(300):  # deeper than orjson's limit, within json.dumps'
        deep = [deep]
    assert codec.canonical(deep) == reference(deep)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(max_size=4), values, max_size=5), st.dictionaries(st.text(max_size=4), values, max_size=5))
def test_delta_replays(old: dict[str, Any], new: dict[str, Any]) -> None:
    """patch(old, diff(old, new)) is new as JSON, whatever the types (1 vs 1.0 vs True)."""
    try:
        want = reference(new)
        reference(old)
    except (TypeError, ValueError):
        return
    delta = codec.diff_values(old, new)
    delta = json.loads(codec.canonical(delta, trusted=True))  # what the stream stores
    assert reference(codec.patch_values(json.loads(reference(old)), delta)) == want


@settings(max_examples=500, deadline=None)
@given(st.lists(values, max_size=6), st.lists(values, max_size=4), st.booleans())
def test_a_list_that_grew_at_its_end_is_a_small_append(head: list[Any], tail: list[Any], nested: bool) -> None:
    try:
        reference([head, tail])
    except (TypeError, ValueError):
        return
    old: dict[str, Any] = {"pending": {"trail": head}} if nested else {"trail": head}
    new: dict[str, Any] = {"pending": {"trail": head + tail}} if nested else {"trail": head + tail}
    delta = json.loads(codec.canonical(codec.diff_values(old, new), trusted=True))
    assert reference(codec.patch_values(json.loads(reference(old)), delta)) == reference(new)
    if tail:
        inner = delta["p"]["pending"] if nested else delta
        assert inner == json.loads(reference({"a": {"trail": tail}}))  # only what was appended, not the list again


def test_a_list_changed_elsewhere_is_replaced_whole() -> None:
    assert codec.diff_values({"t": [1, 2, 3]}, {"t": [1, 9, 3, 4]}) == {"s": {"t": [1, 9, 3, 4]}}
    assert codec.diff_values({"t": [1, 2]}, {"t": [1]}) == {"s": {"t": [1]}}  # shrunk
    assert codec.diff_values({"t": [1]}, {"t": [1.0, 2]}) == {"s": {"t": [1.0, 2]}}  # 1 and 1.0 differ as JSON
