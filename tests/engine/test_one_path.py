"""One engine path for every event kind (issue #21), checked against a recording of the
engine as it was when it had two (a fast path for answers and a general interpreter).

tests/data/engine_golden.json holds the cases of the old comparison tests (every text and
tap at every question of every example flow and of MIXED below, whole seeded sessions) plus
commands, timeouts and other content at each question, with a digest of what the two-route
engine gave for each (tests/engine/golden.py). The one path must give the very same
transitions (state, effects, record) or the very same error. The plan's parts are tested
here too: its quick parsers only shorten ``parse_input``, the trusted states, and that no
registry keeps a flow alive.
"""

from __future__ import annotations

import copy
import gc
import json
import pickle
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit.engine import Command, Start, State, UserMessage, step
from flowkit.engine.inputs import InvalidInput, parse_input
from flowkit.engine.plan import MISS, plan_of
from flowkit.errors import StateValidationError
from flowkit.flow import AskStep

from . import golden
from .helpers import T0, flow

MIXED_YAML = """
    flow: mixed
    start: name
    timeout: 10m
    slots:
      name: {type: text, max_length: 12}
      age: {type: int, min: 18, max: 60}
      pin: {type: text, sensitive: true}
      colour: {type: choice, options: [Red, green, "Blue ", help, "Cafe\u0301"]}
      ok: {type: bool}
      price: {type: number, min: 0.5}
      note: {type: text}
      tries: {type: int}
    steps:
      name:
        ask: "Hello! Your name?"
        input: {type: text, min_length: 2}
        save: name
        next: age
      age:
        ask: "{{ name }}, how old are you? It is {{ today }}."
        input: {type: int, min: 1, max: 120}
        save: age
        timeout: 5m
        next:
          - if: age < 21
            goto: young
          - goto: pin
      young:
        say: "Young {{ name }}!"
        next: pin
      pin:
        ask: PIN?
        input: {type: text}
        save: pin
        timeout: 20m
        next: colour
      colour:
        ask: Colour?
        input: {type: choice, options: [Red, green, "Blue ", help, "Cafe\u0301"]}
        save: colour
        timeout: 10m
        next: ok
      ok:
        ask: Sure?
        input: {type: yes_no}
        save: ok
        next:
          - if: not ok
            goto: name
          - goto: price
      price:
        ask: Price?
        input: {type: number, max: 1000}
        save: price
        next: count
      count:
        set:
          tries: (tries or 0) + 1
          note: "'seen ' + session.step + ' at ' + now"
        next:
          - if: tries < 2
            goto: again
          - goto: done
      again:
        ask: "Once more, {{ name }}: how old?"
        input: {type: int}
        save: age
        next: ok
      done:
        say: "Bye {{ name }}"
        end: completed
"""
MIXED = flow(MIXED_YAML)
RECORDED = json.loads(golden.GOLDEN.read_text(encoding="utf-8"))
FLOWS = golden.flows_from(RECORDED["flows"])
GROUPS = RECORDED["groups"]


def _group_id(g: dict[str, Any]) -> str:
    return f"{g['flow']}-{g['ask'] if 'ask' in g else 'session' + str(g['session'])}"


@pytest.mark.parametrize("group", GROUPS, ids=_group_id)
def test_the_one_path_gives_what_the_two_routes_gave(group: dict[str, Any]) -> None:
    root = FLOWS[group["flow"]]
    events = [(golden.event_from_json(e), now) for e, now in group["events"]]
    if "ask" in group:  # each event sent to the same question
        state = golden.at(root, group["ask"], FLOWS)
        got = [golden.digest(golden.run(root, state, e, now, FLOWS)) for e, now in events]
        bad = [(i, events[i][0]) for i, (a, b) in enumerate(zip(got, group["digests"], strict=True)) if a != b]
        assert not bad, f"{len(bad)} of {len(got)} events differ, first: {bad[0]}"
        return
    t = step(root, None, Start(flow=root.name), T0, flows=FLOWS, session_id=f"s{group['session']}")
    got = [golden.digest(t)]
    for e, now in events:  # a whole session, each answer to the state the last one made
        out = golden.run(root, t.state, e, now, FLOWS)
        got.append(golden.digest(out))
        assert not isinstance(out, Exception), out
        t = out
    assert got == group["digests"]


def test_the_recording_covers_every_event_kind_and_both_outcomes() -> None:
    kinds = {e["kind"] for g in GROUPS for e, _ in g["events"]}
    assert kinds == {"message", "command", "timeout"}
    assert {g["flow"] for g in GROUPS} == set(FLOWS) and len(GROUPS) > 100


def test_a_quick_parser_only_shortens_parse_input() -> None:
    """Whatever a question's quick parser accepts, parse_input accepts with the same value."""
    texts = [*golden.TEXTS, "42", "100", "101", "18", "60", "yes", "no", "Red", "green", "help", "ok", "Ana"]
    checked = 0
    for root in (*FLOWS.values(), MIXED):
        plan = plan_of(root)
        for name, ask in plan.asks.items():
            for text in texts:
                value = ask.quick_value(text)
                if value is MISS:
                    continue
                checked += 1
                assert parse_input(ask.step.input, UserMessage(text=text), slot=ask.slot, labels=ask.labels,
                                   offered=ask.offered) == value, (root.name, name, text)
    assert checked > 50


@settings(max_examples=300, deadline=None, database=None)
@given(pick=st.integers(0, 1000), text=st.text(max_size=14) | st.sampled_from(golden.TEXTS))
def test_any_text_a_quick_parser_takes_parse_input_takes_alike(pick: int, text: str) -> None:
    asks = [a for root in (*FLOWS.values(), MIXED) for a in plan_of(root).asks.values()]
    ask = asks[pick % len(asks)]
    value = ask.quick_value(text)
    if value is not MISS:
        try:
            assert parse_input(ask.step.input, UserMessage(text=text), slot=ask.slot, labels=ask.labels,
                               offered=ask.offered) == value
        except InvalidInput as exc:
            raise AssertionError(f"the quick parser took {text!r}, parse_input refuses it: {exc}") from None


def mixed_at(name: str, now: int = T0) -> State:
    """A MIXED session answered up to its question ``name``."""
    answers = {"name": "Ana", "age": "35", "pin": "1234", "colour": "green", "ok": "yes"}
    t = step(MIXED, None, Start(flow="mixed"), now, session_id="m1")
    while t.state.step != name:
        t = step(MIXED, t.state, UserMessage(text=answers[t.state.step]), now)  # type: ignore[index]
    return t.state


def test_the_common_cases() -> None:
    state = mixed_at("age")
    t = step(MIXED, state, UserMessage(text="35", message_id="a"), T0 + 5)
    assert t.state.slots["age"] == 35 and t.state.step == "pin"
    t2 = step(MIXED, t.state, UserMessage(text="1234", message_id="b"), T0 + 6)
    assert t2.record is not None and t2.record.input == '{"redacted":true,"type":"text"}'
    tap = UserMessage(type="button_reply", reply_id="green", text="Green", message_id="c")
    t3 = step(MIXED, t2.state, tap, T0 + 7)
    assert t3.state.slots["colour"] == "green" and t3.state.step == "ok"
    assert t3.record is not None and t3.record.input == '{"reply_id":"green","text":"Green","type":"button_reply"}'
    typed = step(MIXED, mixed_at("name"), UserMessage(text='Zoë \\ "x"'), T0 + 8)  # written without json.dumps
    assert typed.record is not None and json.loads(typed.record.input or "") == {"text": 'Zoë \\ "x"', "type": "text"}


def test_timeouts_come_from_the_question_or_the_flow() -> None:
    """The Schedule effect: the earlier of the question's deadline and the session timeout."""
    now = T0 + 5
    for ask, answer, due, reason in [("name", "Ana", now + 300_000, "input"),  # age: 5m < 10m
                                     ("age", "35", now + 600_000, "session"),  # pin: 20m > 10m
                                     ("pin", "1", now + 600_000, "input")]:  # colour: 10m == 10m
        t = step(MIXED, mixed_at(ask), UserMessage(text=answer), now)
        sched = t.effects[-1]
        assert (sched.at, sched.reason) == (due, reason)  # type: ignore[union-attr]


def test_the_engines_states_are_trusted_and_no_other() -> None:
    state = mixed_at("age")
    plan = plan_of(MIXED)
    assert plan.trusts(state)  # the engine made and validated it
    for other in (State.from_json(state.to_json()), pickle.loads(pickle.dumps(state)), copy.deepcopy(state),
                  state.evolve(version=state.version), State(**{k: v for k, v in vars(state).items() if k != "checked_by"})):
        assert other == state and not plan.trusts(other)  # equal, but nobody checked this object
        assert step(MIXED, other, UserMessage(text="35"), T0 + 5) == step(MIXED, state, UserMessage(text="35"), T0 + 5)
    assert plan.trusts(copy.copy(state))  # the very same values (the slots are the same dict)
    twin = flow(MIXED_YAML)
    assert twin == MIXED and plan_of(twin) is not plan and not plan_of(twin).trusts(state)
    assert step(twin, state, UserMessage(text="35"), T0 + 5) == step(MIXED, state, UserMessage(text="35"), T0 + 5)


def test_a_broken_state_is_refused_even_where_the_event_does_not_touch_it() -> None:
    """A slot the answer does not write is broken: a state from outside is checked whole."""
    for broken in (mixed_at("age").evolve(slots={"name": 12}), mixed_at("age").evolve(slots={"name": "Ana", "x": 1}),
                   mixed_at("age").evolve(pending=None)):
        with pytest.raises(StateValidationError):
            step(MIXED, broken, UserMessage(text="35"), T0 + 5)
        with pytest.raises(StateValidationError):
            step(MIXED, broken, Command(name="help"), T0 + 5)


def test_a_trusted_state_is_checked_by_what_the_event_changed() -> None:
    """From a trusted state, a `set` step writing a value its slot refuses is still caught."""
    f = flow("""
        flow: setter
        start: q
        slots:
          n: {type: int, max: 5}
        steps:
          q:
            ask: How many?
            input: {type: int}
            next: bump
          bump:
            set: {n: 3 + 4}
            next: done
          done:
            end: completed
    """)
    state = step(f, None, Start(flow="setter"), T0, session_id="t").state
    assert plan_of(f).trusts(state)
    with pytest.raises(StateValidationError, match="'n' is invalid"):
        step(f, state, UserMessage(text="1"), T0 + 1)


def test_a_used_flow_still_pickles_and_its_plan_goes_with_it() -> None:
    f = flow(MIXED_YAML)
    state = step(f, None, Start(flow="mixed"), T0, session_id="p").state
    assert step(f, state, UserMessage(text="Ana"), T0 + 1).state.step == "age"
    twin = pickle.loads(pickle.dumps(f))
    assert twin == f
    assert step(twin, State.from_json(state.to_json()), UserMessage(text="Ana"), T0 + 1).state.step == "age"
    plan = weakref.ref(plan_of(f))
    gone = weakref.ref(f)
    del f, state, twin
    gc.collect()
    assert gone() is None and plan() is None  # no registry keeps flows (or their plans) alive


def test_every_question_of_every_flow_has_its_plan() -> None:
    for root in (*FLOWS.values(), MIXED):
        asks = {n for n, s in root.steps.items() if isinstance(s, AskStep)}
        assert set(plan_of(root).asks) == asks
