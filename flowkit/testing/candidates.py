"""The answers and service values a coverage search tries: each option, yes and no, numbers
at their bounds and around the constants the flows compare with, invalid answers, and
values a scripted service returns."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterable, Sequence
from typing import Any

from flowkit.engine import UserMessage
from flowkit.engine.state import slot_problem
from flowkit.flow.expr import Const, Node
from flowkit.flow.model import AskStep, CallStep, Flow, SlotSpec
from flowkit.sim.answers import invalid_answer, valid_answer


def constants(flows: Iterable[Flow]) -> dict[str, list[float]]:
    """Per slot, the numbers the flows compare it with or compute it from (``tries < 3``,
    ``urgency >= 4``): answers around them take both sides of a condition."""
    out: dict[str, set[float]] = {}

    def consts(node: Node, acc: set[float]) -> None:
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            for k in (v if isinstance(v, tuple) else (v,)):
                if isinstance(k, Const) and isinstance(k.value, (int, float)) and not isinstance(k.value, bool):
                    acc.add(float(k.value))
                elif isinstance(k, Node):
                    consts(k, acc)

    for flow in flows:
        for st in flow.steps.values():
            for e in st.expressions():
                found: set[float] = set()
                consts(e.tree, found)
                for name in e.names():
                    out.setdefault(name, set()).update(found)
    return {k: sorted(v) for k, v in out.items()}


def _numbers(lo: float | None, hi: float | None, consts: list[float], integer: bool) -> list[float]:
    lo_v = lo if lo is not None else (0 if hi is None or hi > 0 else hi - 100)
    hi_v = hi if hi is not None else lo_v + 100
    cands = [lo_v, hi_v, (lo_v + hi_v) / 2]
    for c in consts:
        cands += [c - 1, c, c + 1] if integer else [c - 0.5, c, c + 0.5]
    out: list[float] = []
    for c in cands:
        c = float(int(c)) if integer else round(c, 2)
        if (lo is None or c >= lo) and (hi is None or c <= hi) and c not in out:
            out.append(c)
    return out


def _fmt(x: float, integer: bool) -> str:
    return str(int(x)) if integer or float(x).is_integer() else f"{x:.2f}"


def answers(st: AskStep, slot: SlotSpec | None, consts: list[float], today: dt.date) -> list[UserMessage]:
    """Valid answers worth trying at ``st``: every option, yes and no, numbers at the bounds
    and around the flow's constants; one drawn answer for free-form inputs."""
    spec = st.input
    t = spec.type
    if t == "choice":
        return [UserMessage(text=o) for o in (spec.options or ())
                if slot is None or slot.options is None or o in slot.options]
    if t == "yes_no":
        return [UserMessage(text="yes"), UserMessage(text="no")]
    if t in ("int", "number"):
        lo = spec.min if isinstance(spec.min, (int, float)) else None
        hi = spec.max if isinstance(spec.max, (int, float)) else None
        if slot is not None:
            lo = max([x for x in (lo, slot.min) if x is not None], default=None)
            hi = min([x for x in (hi, slot.max) if x is not None], default=None)
        integer = t == "int" or (slot is not None and slot.type == "int")
        return [UserMessage(text=_fmt(x, integer)) for x in _numbers(lo, hi, consts, integer)]
    return [valid_answer(st, slot, random.Random(f"{st.name}:{i}"), today) for i in range(1)]


def invalid_answers(st: AskStep) -> list[UserMessage]:
    """Answers ``st`` should reject (the engine decides; rejected ones cover the retry edge)."""
    out = [invalid_answer(st, random.Random(st.name)), UserMessage(type="unsupported")]
    if st.input.type not in ("location", "media"):
        out.append(UserMessage(type="location", location={"latitude": 0.0, "longitude": 0.0}))
    return out


def service_values(st: CallStep, slot: SlotSpec | None, consts: list[float], given: Sequence[Any] | None) -> list[Any]:
    """Values a scripted service answers ``st`` with (``given`` wins when the caller gave some)."""
    if given:
        return list(given)
    vals = _service_values(st, slot, consts)
    fitting = [v for v in vals if slot is None or slot_problem(slot, v) is None]
    return fitting or vals


def _service_values(st: CallStep, slot: SlotSpec | None, consts: list[float]) -> list[Any]:
    if slot is None or slot.type == "any":
        return [{"id": "TEST-1", "amount": 100.0, "ok": True, "value": 1}]
    t = slot.type
    if t == "bool":
        return [True, False]
    if t == "choice" and slot.options:
        return list(slot.options)
    if t in ("int", "number"):
        vals = _numbers(slot.min, slot.max, consts, t == "int")
        return [int(v) if t == "int" else v for v in vals]
    rng = random.Random(st.name)
    samples = {"email": "test@example.com", "phone": "+31612345678", "date": "2026-12-01",
               "location": {"latitude": 52.37, "longitude": 4.9}, "media": {"id": "media.1", "kind": "image"}}
    if t in samples:
        return [samples[t]]
    if slot.pattern:
        from flowkit.sim.answers import _regex_sample

        return [_regex_sample(slot.pattern, rng)]
    n = max(slot.min_length or 1, min(slot.max_length or 12, 12))
    return [("TEST-" + "X" * n)[:max(n, 1)]]

