"""The engine's fast path: a valid answer (typed, or a tapped button or list row) to the
current question of a root flow.

That is most of what a live bot sees, so it is worth a direct route. ``_Run`` in
transition.py interprets any event step by step; this module handles only that one case,
with what can be worked out once per flow (each question's reply, its quick parser, the
command words) kept in a :class:`Plan`, and gives up (returns None) on anything else or
anything unusual: commands, invalid answers, sub-flows, states that do not fit
the schema. Giving up costs nothing but time: ``step`` then runs the general engine.

Both routes must give equal transitions. tests/engine/test_fast.py drives random sessions
of every example flow through both and compares states, effects and records.

The state is validated incrementally: a state carrying the ``CHECKED`` mark for this very
flow object passed the whole schema (when the engine made it, or when the fast path first
saw it), and a state never changes, so checking the slots the answer and any ``set`` steps
wrote is checking them all.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from flowkit.engine import why as _why
from flowkit.engine.events import CallService, End, Message, Reply
from flowkit.engine.inputs import (
    _NO,
    _YES,
    MAX_ANSWER_CHARS,
    InvalidInput,
    _check_bounds,
    is_utf8,
    parse_input,
)
from flowkit.engine.state import (
    CHECKED,
    PROFILE,
    Record,
    State,
    check_slots,
    check_state_shape,
    slot_problem,
)
from flowkit.engine.transition import (
    MAX_AUTO_STEPS,
    Transition,
    _labels,
    _offered,
    build_reply,
    payload_json,
    schedule,
    scope,
    static_text,
)
from flowkit.errors import StateValidationError
from flowkit.flow.expr import Expr
from flowkit.flow.model import (
    PLAN,
    TERMINAL_STATUSES,
    AskStep,
    BranchStep,
    CallStep,
    EndStep,
    Flow,
    SayStep,
    SetStep,
    SlotSpec,
    Step,
)
from flowkit.flow.model import Message as Say
from flowkit.flow.template import Template

_MISS = object()
_MAX_DIGITS = 30
_new = object.__new__
_set = object.__setattr__  # frozen values are built by filling their __dict__ (see state.make)


class _Ask:
    """One question of the flow, prepared for answering and for being asked."""

    __slots__ = ("step", "quick", "slot", "labels", "offered", "reply", "sensitive", "timeout_ms")

    def __init__(self, flow: Flow, st: AskStep) -> None:
        self.step = st
        self.slot = flow.slots.get(st.save) if st.save else None
        self.quick = _quick_parser(st, self.slot)
        self.labels = _labels(st)
        self.offered = _offered(st)
        self.reply = _static_reply(st.ask, "ask", st)
        self.sensitive = self.slot is not None and self.slot.sensitive
        self.timeout_ms = int(st.timeout * 1000) if st.timeout else None


class Plan:
    """What the fast path needs of one flow, worked out once. States made by the engine carry
    the plan of the flow they were validated against (the ``CHECKED`` mark)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.commands = frozenset(w for name in ("cancel", "restart", "back", "help") for w in getattr(flow.commands, name))
        self.asks = {name: _Ask(flow, st) for name, st in flow.steps.items() if isinstance(st, AskStep)}
        # where a step goes when its `next` has no condition
        self.goto = {name: st.next[0].goto for name, st in flow.steps.items()
                     if len(st.next) == 1 and st.next[0].when is None}
        self.says = {name: _static_reply(st.say, "say") for name, st in flow.steps.items()
                     if isinstance(st, (SayStep, EndStep)) and st.say is not None}


def plan_of(flow: Flow) -> Plan:
    """The flow's plan, built on first use and kept on the flow object (not in its pickles)."""
    plan = flow.__dict__.get(PLAN)
    if plan is None:
        plan = flow.__dict__[PLAN] = Plan(flow)
    return plan


def _static_reply(msg: Say, where: str, extra: AskStep | None = None) -> Reply | None:
    if all(t.is_static for t in msg.templates()):
        return build_reply(msg, static_text, where, extra)
    return None


def _quick_parser(st: AskStep, slot: SlotSpec | None) -> Callable[[str], Any]:
    """The answer's value when the text is already in normal form (``42``, ``yes``, an option
    as listed) and fits, else _MISS and ``parse_input`` decides (and explains a misfit). Only
    shortcuts: whatever they accept, ``parse_input`` would have accepted with the same value."""
    spec = st.input
    t = spec.type

    def fits(value: Any) -> bool:
        try:
            _check_bounds(spec, value)
        except InvalidInput:
            return False
        return slot is None or slot_problem(slot, value) is None

    if t in ("int", "number"):
        if slot is None or slot.type in ("int", "number", "any"):
            # the bounds of the input and of the slot, checked as _check_bounds and slot_problem do
            lows = [float(spec.min)] if spec.min is not None else []
            highs = [float(spec.max)] if spec.max is not None else []
            if slot is not None and slot.type != "any":
                lows += [slot.min] if slot.min is not None else []
                highs += [slot.max] if slot.max is not None else []
            lo, hi = (max(lows) if lows else None), (min(highs) if highs else None)

            def digits(text: str) -> Any:
                if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
                    v = int(text)
                    if (lo is None or not v < lo) and (hi is None or not v > hi):
                        return v
                return _MISS
            return digits
        return lambda text: _MISS
    if t == "choice":
        by_lower = {o.lower(): o for o in spec.options or ()}
        exact = {k: o for k, o in by_lower.items()
                 if k and k == k.strip() == k.lower() and unicodedata.is_normalized("NFC", k) and fits(o)}
        return lambda text: exact.get(text, _MISS)
    if t == "yes_no":
        # yes first, as parse_yes_no
        words = {w: w in _YES for w in (*_YES, *_NO) if w.isascii() and w.isalnum() and fits(w in _YES)}
        return lambda text: words.get(text, _MISS)
    if t == "text":
        def text_(text: str) -> Any:
            if text and text == text.strip() and unicodedata.is_normalized("NFC", text) and fits(text):
                return text
            return _MISS
        return text_
    return lambda text: _MISS


def answer(flow: Flow, state: State, msg: Message, now: int) -> Transition | None:
    """The transition for ``msg`` answering ``state``'s question, or None: use the general engine."""
    mtype = msg.type
    if ((mtype != "text" and mtype != "button_reply" and mtype != "list_reply") or msg.location is not None
            or msg.media is not None or state.status != "waiting_input"):
        return None
    text = msg.text
    if text is not None and (len(text) > MAX_ANSWER_CHARS or not is_utf8(text)):
        return None  # refused before any parsing: the general engine says so
    plain = mtype == "text" and text is not None and msg.reply_id is None  # typed text: the common case
    plan = state.__dict__.get(CHECKED)
    if plan is None or plan.flow is not flow:
        plan = _trust(flow, state)
        if plan is None:
            return None
    here = state.step
    if here is None:
        return None
    ask = plan.asks.get(here)
    pending = state.pending
    if ask is None or pending is None or pending.get("wait") != "input":
        return None
    if mtype == "text" and text and text.strip().lower() in plan.commands:
        return None
    slots = state.slots
    if msg.profile and msg.profile != slots.get(PROFILE):
        return None
    st = ask.step
    save = st.save
    if save and ask.slot is None:
        return None  # the general engine explains what is wrong with this flow
    try:
        value = ask.quick(text) if plain and text is not None else _MISS
        if value is _MISS:
            value = parse_input(st.input, msg, slot=ask.slot, labels=ask.labels, offered=ask.offered,
                                today=dt.datetime.fromtimestamp(now / 1000, dt.UTC).date() if st.input.type == "date" else None)
            if isinstance(value, (dict, list)):
                return None  # locations and media: the general engine normalises them
        slots = slots.copy()  # type: ignore[attr-defined]  # (state slots are a dict at runtime (typed Mapping))
        if save:
            slots[save] = value
        trail = pending.get("trail", ())
        trail = [*trail[: trail.index(here)], here] if here in trail else [*trail, here]
        path: list[str] = []
        branches: list[dict[str, Any]] = []
        effects: list[Any] = []
        written: list[str] | None = None
        node: Step = st
        target: _Ask | None = None
        steps = flow.steps
        while True:
            goto = plan.goto.get(here)
            if goto is None:  # conditions decide
                passed: list[str] = []
                for b in node.next:
                    if b.when is None or b.when.evaluate(_scope(b.when, flow, slots, now, state, here)):
                        goto = b.goto
                        break
                    passed.append(b.when.source)
                else:
                    return None
                if b.when is not None or passed:  # the record says which condition decided (engine/why.py)
                    read: dict[str, Any] = {}
                    for c in node.next[:len(passed) + 1]:
                        if c.when is not None:
                            read.update(_scope(c.when, flow, slots, now, state, here))
                    branches.append(_why.branch(here, b.when.source if b.when else None, passed,
                                                _why.read_values(read, flow.slots), goto))
            if len(path) >= MAX_AUTO_STEPS:
                return None
            node = steps[goto]
            here = goto
            path.append(goto)
            kind = type(node)
            if kind is AskStep:
                target = plan.asks[goto]
                reply = target.reply
                effects.append(reply if reply is not None else
                               build_reply(target.step.ask, _renderer(flow, slots, now, state, here), "ask", target.step))
                break
            if kind is EndStep:
                assert isinstance(node, EndStep)
                if node.say is not None:
                    reply = plan.says[goto]
                    effects.append(reply if reply is not None else
                                   build_reply(node.say, _renderer(flow, slots, now, state, here), "say"))
                if node.end not in TERMINAL_STATUSES:
                    return None
                effects.append(End(status=node.end))
                break
            if kind is SayStep:
                assert isinstance(node, SayStep)
                reply = plan.says[goto]
                effects.append(reply if reply is not None else
                               build_reply(node.say, _renderer(flow, slots, now, state, here), "say"))
            elif kind is SetStep:
                assert isinstance(node, SetStep)
                written = written or []
                for slot, expr in node.assign:
                    slots[slot] = expr.evaluate(_scope(expr, flow, slots, now, state, here))
                    written.append(slot)
            elif kind is CallStep:
                assert isinstance(node, CallStep)
                args = {k: e.evaluate(_scope(e, flow, slots, now, state, here)) for k, e in node.args}
                call_id = f"{state.session_id}/{state.version + 1}/{here}"
                effects.append(CallService(call_id=call_id, service=node.call, args=args, timeout=node.timeout))
                break
            elif kind is not BranchStep:
                return None  # a sub-flow

        if written:  # the answer itself was checked against its slot while parsing
            declared = flow.slots
            for name in written:
                spec = declared.get(name)
                if spec is None or name == PROFILE or slot_problem(spec, slots[name]) is not None:
                    return None
    except Exception:  # an invalid answer, a failing expression, ...: the general engine says what
        return None

    version = state.version + 1
    d = state.__dict__.copy()  # the same session, flow, version pin and start; the CHECKED mark stays true
    d["step"], d["slots"], d["attempts"], d["version"], d["updated_at"] = here, slots, {}, version, now
    if target is not None:
        status = d["status"] = "waiting_input"
        tms = target.timeout_ms
        d["pending"] = {"wait": "input", "step": here, "deadline": now + tms if tms is not None else None,
                        "trail": trail}
    elif kind is CallStep:
        status = d["status"] = "waiting_service"
        d["pending"] = {"wait": "service", "step": here, "call_id": call_id, "service": node.call,  # type: ignore[attr-defined]  # (node is a CallStep here (plan.goto says so))
                        "deadline": now + int(node.timeout * 1000), "trail": trail}  # type: ignore[attr-defined]  # (node is a CallStep here (plan.goto says so))
    else:
        status = d["status"] = node.end  # type: ignore[attr-defined]  # (node is an EndStep here)
        d["pending"] = None
    if d["pending"] is not None:
        effects.append(schedule(d["pending"], flow, now))
    new = _new(State)
    _set(new, "__dict__", d)
    record = _new(Record)
    _set(record, "__dict__", {
        "version": version, "ts": now, "event": "message", "from_step": state.step, "to_step": here,
        "path": tuple(path), "status": status, "message_id": msg.message_id,
        "input": ('{"redacted":true,"type":' + encode_basestring(mtype) + "}" if ask.sensitive else
                  '{"text":' + encode_basestring(text) + ',"type":"text"}' if plain else payload_json(msg.payload())),  # type: ignore[arg-type]  # (text is a str when plain)
        "error": None, "actor": msg.actor, "why": _why.encode({"branches": branches}) if branches else None,
    })
    out = _new(Transition)
    _set(out, "__dict__", {"state": new, "effects": tuple(effects), "record": record})
    return out


def _trust(flow: Flow, state: State) -> Plan | None:
    """Validate a state the engine did not make (loaded from Redis, say) against the whole
    schema once, and mark it; None if it does not fit (the general engine then says why)."""
    if state.stack or state.flow != flow.name:
        return None
    try:
        check_state_shape(state)
        check_slots(state.slots, flow.slots, where="state")
    except StateValidationError:
        return None
    plan = plan_of(flow)
    state.__dict__[CHECKED] = plan
    return plan


def _scope(expr: Expr | Template, flow: Flow, slots: dict[str, Any], now: int, state: State, here: str) -> dict[str, Any]:
    return scope(expr.names(), flow.slots, slots, now, state.session_id, flow.name, here)


def _renderer(flow: Flow, slots: dict[str, Any], now: int, state: State,
              here: str) -> Callable[[Template | None, str], str | None]:
    def render(template: Template | None, where: str) -> str | None:
        if template is None:
            return None
        if template.is_static:
            return template.source
        return template.render(_scope(template, flow, slots, now, state, here))
    return render
