"""Properties of the engine over random event sequences on the example flows (hypothesis):

- determinism: the same state, event and time give the same transition (also from the
  state's JSON form);
- every reached state serialises and parses back equal, and fits its flow's slot schema;
- each applied event raises the version by exactly 1; a no-op changes nothing;
- nothing but :class:`~flowkit.errors.EngineError` (and subclasses) ever escapes, and a
  refused event leaves the state as it was.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit.engine import Command, Event, ServiceResult, Start, State, Timeout, Transition, UserMessage, step
from flowkit.engine.locate import locate
from flowkit.errors import EngineError
from flowkit.flow import AskStep, CallStep
from flowkit.sim.answers import service_value, valid_answer

from .helpers import FLOWS, T0, schema_problems

ROOTS = sorted(FLOWS)
WORDS = ["small", "medium", "large", "yes", "no", "2", "3", "21", "0", "-1", "1,5", "12.50", "twenty", "AB123456",
         "ab123456", "Ana Lima", "ana@example.com", "not@mail", "2026-12-01", "31/02/2026", "tomorrow", "09:00",
         "16:00", "dental", "checkup", "billing", "other", "12 Main Street", "back", "help", "cancel", "restart",
         "stop", "never mind", "👍", "", "   ", "٣", "1" * 40, "x" * 1200, "{{ name }}", "None", "nan", "inf"]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    | st.tuples(inner) | st.frozensets(st.integers(), max_size=2),
    max_leaves=6,
)
DELAYS = [0, 1_000, 5_000, 15_001, 600_000, 3_600_000, 7_300_000]


def actions() -> st.SearchStrategy[tuple[Any, ...]]:
    good = st.tuples(st.just("good"), st.integers(0, 2**32))  # a valid answer or service result
    return st.one_of(
        good, good, good,
        st.tuples(st.just("text"), st.sampled_from(WORDS) | st.text(max_size=12)),
        st.tuples(st.just("reply"), st.sampled_from(["button_reply", "list_reply"]),
                  st.sampled_from(["yes", "no", "large", "dental", "09:00", "billing", "zzz"]), st.none() | st.text(max_size=5)),
        st.tuples(st.just("location"), st.floats(-200, 200) | st.none(), st.floats(allow_nan=True)),
        st.tuples(st.just("media"), st.sampled_from(["image", "audio", "document"]), st.none() | st.text(max_size=4)),
        st.tuples(st.just("unsupported")),
        st.tuples(st.just("result"), st.booleans(), JSONISH, st.booleans()),
        st.tuples(st.just("timeout"), st.sampled_from(DELAYS)),
        st.tuples(st.just("command"), st.sampled_from(["cancel", "restart", "back", "help", "reset", "fail", "dance"])),
        st.tuples(st.just("rollback"), st.integers(0, 50)),
        st.tuples(st.just("migrate"), st.integers(0, 50)),
        st.tuples(st.just("start"), st.sampled_from(ROOTS), st.text(max_size=6)),
    )


def to_event(action: tuple[Any, ...], state: State, history: list[State]) -> tuple[Event, Any, int]:
    """(event, root flow, delay) for ``action`` in ``state``."""
    kind = action[0]
    root = FLOWS[state.flow]
    delay = 1_000
    if kind == "good":
        rng = random.Random(action[1])
        flows = FLOWS.get
        cur_flow, cur = locate(root, state.step or "", lambda n, v: flows(n), None) if state.step else (root, None)
        if isinstance(cur, AskStep):
            slot = cur_flow.slots.get(cur.save) if cur.save else None
            return valid_answer(cur, slot, rng, dt.date(2026, 9, 21)), root, delay
        if isinstance(cur, CallStep) and state.status == "waiting_service":
            slot = cur_flow.slots.get(cur.save) if cur.save else None
            call_id = (state.pending or {})["call_id"]
            return ServiceResult(call_id=call_id, ok=rng.random() < 0.8, value=service_value(slot, rng, call_id),
                                 error="boom"), root, delay
        return Timeout(), root, delay
    if kind == "text":
        return UserMessage(text=action[1], message_id=f"m{state.version}"), root, delay
    if kind == "reply":
        return UserMessage(type=action[1], reply_id=action[2], text=action[3]), root, delay
    if kind == "location":
        return UserMessage(type="location", location={"latitude": action[1], "longitude": action[2]}), root, delay
    if kind == "media":
        return UserMessage(type="media", media={"id": action[2], "kind": action[1]}), root, delay
    if kind == "unsupported":
        return UserMessage(type="unsupported"), root, delay
    if kind == "result":
        _, ok, value, right_id = action
        call_id = (state.pending or {}).get("call_id") if right_id else None
        return ServiceResult(call_id=call_id or "other", ok=ok, value=value if ok else None,
                             error=None if ok else "boom"), root, delay
    if kind == "timeout":
        return Timeout(), root, action[1]
    if kind == "command":
        return Command(name=action[1], args={"reason": "admin"} if action[1] == "fail" else {}), root, delay
    if kind == "rollback":
        target = history[action[1] % len(history)]
        return Command(name="rollback", args={"state": target.to_dict()}, actor="admin"), FLOWS[target.flow], delay
    if kind == "migrate":
        names = sorted(root.steps)
        return Command(name="migrate", args={"step": names[action[1] % len(names)]}, actor="admin"), root, delay
    assert kind == "start"
    return Start(flow=action[1], profile={"name": action[2]}), FLOWS[action[1]], delay


def same(a: Transition, b: Transition) -> bool:
    return (a.state.to_json() == b.state.to_json() and a.effects == b.effects and a.record == b.record)


def check(before: State | None, t: Transition, root_name: str) -> None:
    if not t.changed:
        assert before is not None and t.state is before and t.effects == ()
        return
    assert t.record is not None
    assert t.state.version == (before.version if before else 0) + 1 == t.record.version
    text = t.state.to_json()
    assert State.from_json(text) == t.state and State.from_json(text).to_json() == text
    schema_problems(t.state, FLOWS[t.state.flow], FLOWS)
    if t.record.path:
        assert t.record.path[-1] == t.state.step
    if t.state.terminal:
        assert t.state.pending is None and t.state.stack == ()
    assert t.state.flow == root_name


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(root=st.sampled_from(ROOTS), seq=st.lists(actions(), min_size=1, max_size=30))
def test_random_event_sequences(root: str, seq: list[tuple[Any, ...]]) -> None:
    now = T0
    t = step(FLOWS[root], None, Start(flow=root, profile={"name": "P"}), now, flows=FLOWS, session_id="p1")
    check(None, t, root)
    state = t.state
    history = [state]
    for action in seq:
        event, flow, delay = to_event(action, state, history)
        now += delay
        before_json = state.to_json()
        try:
            t = step(flow, state, event, now, flows=FLOWS, session_id="p1")
        except EngineError:
            assert state.to_json() == before_json  # refused: nothing changed
            continue
        # Determinism: again, and from the JSON form of the state.
        again = step(flow, State.from_json(before_json), event, now, flows=FLOWS, session_id="p1")
        assert same(t, again)
        check(state, t, flow.name)
        if t.changed:
            state = t.state
            history.append(state)


@settings(max_examples=60, deadline=None, database=None)
@given(text=st.text(max_size=40), step_name=st.sampled_from(["ask_qty", "ask_size", "upsell", "ask_address"]))
def test_any_text_at_any_question_is_an_answer_or_an_invalid_input(text: str, step_name: str) -> None:
    f = FLOWS["order_pizza"]
    t = step(f, None, Start(flow="order_pizza"), T0, session_id="p")
    t = step(f, t.state, Command(name="migrate", args={"step": step_name}), T0 + 1)
    assert t.state.step == step_name
    out = step(f, t.state, UserMessage(text=text), T0 + 2)
    assert out.changed and out.record is not None
    check(t.state, out, "order_pizza")
    err = out.record.error
    assert err is None or err.startswith("invalid_input:") or out.record.event == "command"
    if err is None and out.record.event == "message":
        saved = f.steps[step_name].save  # type: ignore[union-attr]
        value = out.state.slots[saved]
        assert not (isinstance(value, float) and not math.isfinite(value))
