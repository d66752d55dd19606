"""The standard library of the expression language: the only functions flows can call,
with their arities (checked at parse time)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from flowkit.flow import bounds, patterns

_MAX_NUMBER_TEXT = 100  # characters of text that int()/float() read; longer is not a number


def _num(v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        text = str(v).strip()
        if len(text) > _MAX_NUMBER_TEXT:
            raise ValueError(f"a text of {len(text)} characters is not a number")
        f = float(text)
        if not math.isfinite(f):  # float("nan"), float("inf"), float("1e309")
            raise ValueError(f"{text!r} is not a finite number")
        return f
    return v


def _to_int(v: Any) -> int:
    if isinstance(v, str):
        text = v.strip()
        if len(text) > _MAX_NUMBER_TEXT:
            raise ValueError(f"a text of {len(text)} characters is not a whole number")
        head, dot, tail = text.partition(".")
        if dot and head.removeprefix("-").isdecimal() and tail.isdecimal():
            return int(float(text))  # "4.0": through float; whole numbers stay exact
        return int(text)
    return int(v)


def _round(v: Any, digits: Any = 0) -> int | float:
    d = int(digits)
    if not -bounds.MAX_ROUND_DIGITS <= d <= bounds.MAX_ROUND_DIGITS:
        raise ValueError(f"round() keeps {-bounds.MAX_ROUND_DIGITS} to {bounds.MAX_ROUND_DIGITS} digits, not {d}")
    r = round(_num(v), d)
    return int(r) if d == 0 else r


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


# The whole standard library of the language. Each entry is a plain, total function
# on JSON-like values: adding one here is the only way to extend what flows can compute.
FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "len": lambda v: len(v) if v is not None else 0,
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "trim": lambda v: str(v).strip(),
    "str": lambda v: "" if v is None else (("true" if v else "false") if isinstance(v, bool) else str(v)),
    "int": _to_int,
    "float": lambda v: float(_num(v)),
    "round": _round,
    "abs": lambda v: abs(_num(v)),
    "min": lambda *a: min(a[0]) if len(a) == 1 else min(a),
    "max": lambda *a: max(a[0]) if len(a) == 1 else max(a),
    "sum": lambda v: sum(_num(x) for x in v),
    "startswith": lambda s, p: str(s).startswith(str(p)),
    "endswith": lambda s, p: str(s).endswith(str(p)),
    "contains": lambda s, p: (p in s) if isinstance(s, (list, dict)) else str(p) in str(s),
    "matches": lambda s, p: patterns.fullmatch(str(p), str(s)),
    "coalesce": _coalesce,
    "floor": lambda v: math.floor(_num(v)),
    "ceil": lambda v: math.ceil(_num(v)),
}

def matches_value(s: Any, p: Any) -> bool:
    return patterns.fullmatch_value(str(p), str(s))


# Arity (min, max) per function, checked at parse time so a typo fails at load.
ARITY: Mapping[str, tuple[int, int]] = {
    "len": (1, 1), "lower": (1, 1), "upper": (1, 1), "trim": (1, 1), "str": (1, 1),
    "int": (1, 1), "float": (1, 1), "round": (1, 2), "abs": (1, 1), "min": (1, 16),
    "max": (1, 16), "sum": (1, 1), "startswith": (2, 2), "endswith": (2, 2),
    "contains": (2, 2), "matches": (2, 2), "coalesce": (1, 16), "floor": (1, 1), "ceil": (1, 1),
}
