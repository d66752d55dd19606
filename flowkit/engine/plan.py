"""The engine's per-flow plan: what can be worked out once per flow instead of on every event.

For each question: the reply that asks it (when its templates are static), the button and
row titles that name an option, the ids it offers, its slot, and a quick parser for answers
already in normal form; for each ``say``/``end`` step its static reply; the command words.
The one interpreter (engine/run.py) uses it for every event kind.

A plan is built on a flow's first use and kept in a registry keyed by the flow object's
identity, dropped when the flow is collected (``weakref.finalize``): a Flow is a frozen value
and nothing is written into it, and equal flows that are distinct objects each get their own.

A plan also has a token that the states the engine makes for its flow, outside sub-flows,
carry in ``State.checked_by``: such a state passed the whole slot schema (the engine checks
before it hands a state out), and a state is a value, so for it checking the slots an event
changed is checking them all (engine/run.py, ``Run.validate``). Any other state (loaded,
``evolve``d, unpickled) has no token and is checked whole.
"""

from __future__ import annotations

import math
import unicodedata
import weakref
from collections.abc import Callable
from typing import Final

from flowkit.engine.events import Reply
from flowkit.engine.inputs import _NO, _YES, MAX_ANSWER_CHARS, InvalidInput, _check_bounds, is_utf8
from flowkit.engine.replies import build_reply, static_text
from flowkit.engine.state import State, slot_problem
from flowkit.flow.model import COMMAND_NAMES, AskStep, EndStep, Flow, SayStep, SlotSpec
from flowkit.flow.model import BotMessage as Say

#: what a quick parser returns when the text is not in normal form (``parse_input`` decides)
MISS: Final = object()
QuickParser = Callable[[str], object]

_MAX_DIGITS = 30  # as inputs.parse_int: longer "numbers" are not answers


class AskPlan:
    """One question of a flow, prepared for being asked and answered."""

    __slots__ = ("step", "slot", "quick_value", "labels", "offered", "reply", "sensitive")

    def __init__(self, flow: Flow, st: AskStep) -> None:
        self.step = st
        self.slot: SlotSpec | None = flow.slots.get(st.save) if st.save else None
        #: the value of a typed answer already in normal form, or MISS: ``parse_input`` then
        #: decides (and explains a refusal, as for a text too long or with no UTF-8 form)
        self.quick_value: QuickParser = quick_parser(st, self.slot)
        self.labels = labels(st)
        self.offered = offered(st)
        self.reply = static_reply(st.ask, "ask", st)
        self.sensitive = self.slot is not None and self.slot.sensitive


class Plan:
    """What the engine needs of one flow, worked out once (see the module's docstring)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = weakref.ref(flow)  # weak: the registry must not keep flows alive
        self.asks = {name: AskPlan(flow, st) for name, st in flow.steps.items() if isinstance(st, AskStep)}
        self.says: dict[str, Reply | None] = {
            name: static_reply(st.say, "say") for name, st in flow.steps.items()
            if isinstance(st, (SayStep, EndStep)) and st.say is not None}
        # command word -> command, the first name winning as Commands.match does
        self.commands: dict[str, str] = {}
        for name in reversed(COMMAND_NAMES):
            self.commands.update((w, name) for w in getattr(flow.commands, name))
        #: what the engine's states checked against this flow carry (``State.checked_by``): a
        #: new object per plan, so a pickled or deep-copied state (a new token) is not trusted
        self.token = object()

    def trusts(self, state: State) -> bool:
        """Whether ``state`` passed this flow's whole slot schema (outside any sub-flow)."""
        return state.checked_by is self.token


_PLANS: dict[int, Plan] = {}


def plan_of(flow: Flow) -> Plan:
    """The flow's plan, built on first use and dropped with the flow."""
    plan = _PLANS.get(id(flow))
    if plan is not None and plan.flow() is flow:
        return plan
    plan = _PLANS[id(flow)] = Plan(flow)
    weakref.finalize(flow, _PLANS.pop, id(flow), None)
    return plan


def static_reply(msg: Say, where: str, extra: AskStep | None = None) -> Reply | None:
    """The Reply of a message whose templates are all static, or None (rendered per event)."""
    if all(t.is_static for t in msg.templates()):
        return build_reply(msg, static_text, where, extra)
    return None


def labels(st: AskStep) -> dict[str, str]:
    """Button and list-row titles that name an option (lower-case title -> option)."""
    options = set(st.input.options or ())
    out = {b.title.lower(): b.id for b in st.ask.buttons if b.id in options}
    if st.ask.menu is not None:
        for s in st.ask.menu.sections:
            out.update({r.title.lower(): r.id for r in s.rows if r.id in options})
    return out


def offered(st: AskStep) -> frozenset[str]:
    """The button and row ids a question offers: its own buttons and rows, its options (the
    buttons or rows build_reply makes of them) and yes/no."""
    ids = {b.id for b in st.ask.buttons} | set(st.input.options or ())
    if st.ask.menu is not None:
        ids.update(r.id for s in st.ask.menu.sections for r in s.rows)
    if st.input.type == "yes_no":
        ids.update(("yes", "no"))
    return frozenset(ids)


def _never(text: str) -> object:
    return MISS


def quick_parser(st: AskStep, slot: SlotSpec | None) -> QuickParser:
    """The answer's value when the text is already in normal form (``42``, ``yes``, an option
    as listed) and fits, else MISS and ``parse_input`` decides (and explains a misfit). Only
    shortcuts: whatever they accept, ``parse_input`` would have accepted with the same value
    (tests/engine/test_one_path.py checks this on hostile texts). None accepts a text longer
    than MAX_ANSWER_CHARS or without a UTF-8 form: ``parse_input`` refuses those."""
    t = st.input.type
    if t in ("int", "number"):
        return _digits_parser(st, slot)
    if t == "choice":
        by_lower = {o.lower(): o for o in st.input.options or ()}
        exact = {k: o for k, o in by_lower.items()
                 if k and k == k.strip() == k.lower() and len(k) <= MAX_ANSWER_CHARS and is_utf8(k)
                 and unicodedata.is_normalized("NFC", k) and _fits(st, slot, o)}
        return lambda text: exact.get(text, MISS)
    if t == "yes_no":  # yes first, as parse_yes_no
        words = {w: w in _YES for w in (*_YES, *_NO) if w.isascii() and w.isalnum() and _fits(st, slot, w in _YES)}
        return lambda text: words.get(text, MISS)
    if t == "text":
        def text_(text: str) -> object:
            if (text and len(text) <= MAX_ANSWER_CHARS and is_utf8(text) and text == text.strip()
                    and unicodedata.is_normalized("NFC", text) and _fits(st, slot, text)):
                return text
            return MISS
        return text_
    return _never


def _fits(st: AskStep, slot: SlotSpec | None, value: object) -> bool:
    try:
        _check_bounds(st.input, value)
    except InvalidInput:
        return False
    return slot is None or slot_problem(slot, value) is None


def _digits_parser(st: AskStep, slot: SlotSpec | None) -> QuickParser:
    """Plain ASCII digits within the bounds of the input and of the slot (checked as
    ``_check_bounds`` and ``slot_problem`` do)."""
    if slot is not None and slot.type not in ("int", "number", "any"):
        return _never
    spec = st.input
    lows = [float(spec.min)] if spec.min is not None else []
    highs = [float(spec.max)] if spec.max is not None else []
    if slot is not None and slot.type != "any":
        lows += [slot.min] if slot.min is not None else []
        highs += [slot.max] if slot.max is not None else []
    lo, hi = (max(lows) if lows else -math.inf), (min(highs) if highs else math.inf)

    def digits(text: str) -> object:
        if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
            v = int(text)
            if lo <= v <= hi:
                return v
        return MISS
    return digits
