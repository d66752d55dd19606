"""Bounds on the values a flow computes, so no expression or template can exhaust time or memory.

A flow file is checked once, but its expressions run on every answer, inside a loop of up to
``MAX_AUTO_STEPS`` steps, on values users sent. Without bounds a flow author (or a typo) can
make one answer cost seconds or gigabytes: ``round(n, -10**7)``, a ``set`` loop doubling a
text, ``x * x`` repeated until the integer has millions of digits. So every value an
expression or template produces stays within:

- numbers: finite (no NaN or infinity: JSON, and so the session store, has no spelling for
  them) and whole numbers below ``10**MAX_INT_DIGITS`` in size;
- ``round(x, digits)``: ``digits`` within ``±MAX_ROUND_DIGITS``;
- size: at most ``MAX_VALUE_SIZE`` units, where each character of text and each list item
  or map entry counts one (nested values included). WhatsApp texts hold 4,096 characters;
  the bound is four of those.

Crossing a bound is an :class:`~flowkit.errors.ExpressionError` at the operation that
crossed it, which the engine turns into the session's ``engine_error`` path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_INT_DIGITS = 30  # as many digits as an answer to an int question may have
MAX_INT = 10**MAX_INT_DIGITS
MAX_ROUND_DIGITS = 30
MAX_VALUE_SIZE = 16_384
MAX_DEPTH = 32  # nesting of lists and maps in one value


def number_problem(value: int | float) -> str | None:
    """Why a number an expression produced is refused, or None."""
    if value.__class__ is float:
        if not math.isfinite(value):
            return f"the result is {value} (not a finite number)"
    elif not -MAX_INT < value < MAX_INT:
        return f"the result has more than {MAX_INT_DIGITS} digits"
    return None


def size_problem(value: Any) -> str | None:  # noqa: C901 -- one bounded walk over every value type; per-type helpers would add a call per element to every commit
    """Why a value is too big (or holds a non-finite or too long number), or None.

    Walks at most ``MAX_VALUE_SIZE`` units, so the check costs no more than the bound."""
    budget = MAX_VALUE_SIZE
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        v, depth = todo.pop()
        cls = v.__class__
        if cls is str:
            budget -= len(v)
        elif cls is int or cls is float:
            why = number_problem(v)
            if why is not None:
                return why
        elif isinstance(v, (list, tuple)):
            budget -= len(v)
            if budget >= 0:
                if depth >= MAX_DEPTH:
                    return f"the value is nested more than {MAX_DEPTH} levels deep"
                todo.extend((x, depth + 1) for x in v)
        elif isinstance(v, Mapping):
            budget -= len(v)
            if budget >= 0:
                if depth >= MAX_DEPTH:
                    return f"the value is nested more than {MAX_DEPTH} levels deep"
                todo.extend((x, depth + 1) for kv in v.items() for x in kv)
        if budget < 0:
            return f"the value is larger than {MAX_VALUE_SIZE} characters and items"
    return None
