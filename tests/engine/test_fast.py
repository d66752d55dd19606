"""The engine's fast path (engine/fast.py) against the general engine (``interpret``).

Whenever the fast path answers, its transition must equal the general engine's: the same
state (and JSON), effects and history record. It must also actually answer the common
case (a plain valid answer), and never trust a state it has not seen validated.
"""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit.engine import Command, Message, Start, State, Transition, fast, step
from flowkit.engine.transition import interpret
from flowkit.errors import EngineError, StateValidationError
from flowkit.flow import AskStep, Flow
from flowkit.sim.answers import valid_answer

from .helpers import FLOWS, T0, flow

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

ALL = {**FLOWS, "mixed": MIXED}
TEXTS = ["Ana", " Ana ", "ana", "A", "Ana Maria Lima Souza", "19", "35", "17", "61", "0", "120", "121", "-5", "+5", "05",
         "1,000", "٣", "²", "3.0", "12.5", "0.25", "1e3", "twenty", "yes", "no", "YES", "y", "ok", "👍", "nope", "red",
         "Red", "RED", " red ", "green", "blue", "blue ", "Blue ", "help", "Help", "back", "cancel", "stop", "restart",
         "2", "2)", "caf", "café", "cafe\u0301", "small", "large", "medium", "dental", "billing", "2026-12-01",
         "tomorrow", "31/02/2026", "ana@example.com", "+55 11 91234-5678", "12 Main Street", "", "   ", "x" * 300,
         # hostile: too long for WhatsApp, currency without a number, NaN/inf spellings, lone surrogates
         "x" * 4096, "x" * 4097, "1" + " " * 4000 + "1", "$", "€ ", "nan", "-inf", "1e309", "\ud800", "1\udfff"]
REPLY_IDS = ["yes", "no", "green", "Red", "help", "large", "small", "dental", "billing", "09:00", "zzz", ""]


def same(a: Transition, b: Transition, *, marks: bool = True) -> None:
    assert a.state == b.state
    assert a.state.to_json() == b.state.to_json()
    assert a.effects == b.effects
    assert a.record == b.record
    # the fast path's state is trusted by the next answer exactly as the general engine's is
    if marks:
        assert a.state.__dict__.get("_checked_by") is b.state.__dict__.get("_checked_by")


def both(root: Flow, state: State, msg: Message, now: int) -> Transition | None:
    """The fast path's answer (None if it declined), after checking it against the general engine."""
    quick = fast.answer(root, state, msg, now)
    try:
        general = interpret(root, state, msg, now, flows=ALL)
    except EngineError:
        assert quick is None, "the fast path answered an event the general engine refuses"
        return None
    if quick is not None:
        same(quick, general)
    assert same_as_step(root, state, msg, now, general)
    return quick


def same_as_step(root: Flow, state: State, msg: Message, now: int, general: Transition) -> bool:
    t = step(root, state, msg, now, flows=ALL)
    same(t, general)
    return True


def at(root: Flow, name: str, now: int = T0) -> State:
    """A validated session of ``root`` waiting at its ask step ``name``."""
    t = step(root, None, Start(flow=root.name, profile={"name": "Ana"}), now, flows=ALL, session_id="f1")
    if t.state.step != name:
        t = step(root, t.state, Command(name="migrate", args={"step": name}), now + 1, flows=ALL)
    assert t.state.step == name and t.state.status == "waiting_input"
    return t.state


def asks(root: Flow) -> list[str]:
    """The ask steps a session can be moved to directly (not those whose question reads a
    slot an earlier step sets: they are reached by the whole-session test)."""
    out = []
    for n, s in sorted(root.steps.items()):
        if isinstance(s, AskStep):
            try:
                at(root, n)
            except EngineError:
                continue
            out.append(n)
    return out


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_text_at_every_question_agrees_with_the_general_engine(name: str) -> None:
    root = ALL[name]
    answered = 0
    for ask in asks(root):
        state = at(root, ask)
        texts = TEXTS + [valid_answer(root.steps[ask], root.slots.get(root.steps[ask].save or ""),  # type: ignore[arg-type]
                                      random.Random(i), dt.date(2026, 9, 21)).text or "" for i in range(20)]
        for i, text in enumerate(texts):
            msg = Message(text=text, message_id=f"w{i}", profile={"name": "Ana"} if i % 2 else None)
            answered += both(root, state, msg, T0 + 1000 + i) is not None
        for i, reply_id in enumerate(REPLY_IDS):  # tapped buttons and list rows
            msg = Message(type="list_reply" if i % 3 else "button_reply", reply_id=reply_id,
                          text=None if i % 4 == 0 else reply_id.title(), message_id=f"r{i}")
            answered += both(root, state, msg, T0 + 2000 + i) is not None
    assert answered > 0, f"the fast path never answered in flow {name}"


@pytest.mark.parametrize("name", sorted(ALL))
def test_whole_sessions_agree(name: str) -> None:
    """Sessions driven by valid answers (and some noise), each step compared."""
    root = ALL[name]
    rng = random.Random(7)
    for session in range(15):
        t = step(root, None, Start(flow=root.name), T0, flows=ALL, session_id=f"s{session}")
        now = T0
        for i in range(40):
            state = t.state
            if state.terminal or state.status != "waiting_input" or "/" in (state.step or ""):
                break
            cur = root.steps[state.step]  # type: ignore[index]
            assert isinstance(cur, AskStep)
            if rng.random() < 0.85:
                msg = valid_answer(cur, root.slots.get(cur.save or ""), rng, dt.date(2026, 9, 21))
                msg = Message(text=msg.text, message_id=f"m{i}") if msg.type == "text" else msg
            else:
                msg = Message(text=rng.choice(TEXTS), message_id=f"m{i}")
            now += rng.choice([1, 1000, 400_000])
            both(root, state, msg, now)
            t = step(root, state, msg, now, flows=ALL)


@settings(max_examples=300, deadline=None, database=None)
@given(name=st.sampled_from(sorted(ALL)), pick=st.integers(0, 100), text=st.text(max_size=14) | st.sampled_from(TEXTS),
       later=st.integers(0, 3_600_000))
def test_any_text_agrees(name: str, pick: int, text: str, later: int) -> None:
    root = ALL[name]
    names = asks(root)
    state = at(root, names[pick % len(names)])
    both(root, state, Message(text=text, message_id="h1"), T0 + 10 + later)


def mixed_at(name: str, now: int = T0) -> State:
    """A MIXED session answered up to its question ``name``."""
    answers = {"name": "Ana", "age": "35", "pin": "1234", "colour": "green", "ok": "yes"}
    t = step(MIXED, None, Start(flow="mixed"), now, session_id="m1")
    while t.state.step != name:
        t = step(MIXED, t.state, Message(text=answers[t.state.step]), now)  # type: ignore[index]
    return t.state


def test_the_common_case_takes_the_fast_path() -> None:
    state = mixed_at("age")
    t = fast.answer(MIXED, state, Message(text="35", message_id="a"), T0 + 5)
    assert t is not None and t.state.slots["age"] == 35 and t.state.step == "pin"
    t2 = fast.answer(MIXED, t.state, Message(text="1234", message_id="b"), T0 + 6)
    assert t2 is not None and t2.record is not None and t2.record.input == '{"redacted":true,"type":"text"}'
    tap = Message(type="button_reply", reply_id="green", text="Green", message_id="c")
    t3 = fast.answer(MIXED, t2.state, tap, T0 + 7)
    assert t3 is not None and t3.state.slots["colour"] == "green" and t3.state.step == "ok"
    assert t3.record is not None and t3.record.input == '{"reply_id":"green","text":"Green","type":"button_reply"}'


def test_timeouts_come_from_the_question_or_the_flow() -> None:
    """The Schedule effect: the earlier of the question's deadline and the session timeout."""
    now = T0 + 5
    for ask, answer, due, reason in [("name", "Ana", now + 300_000, "input"),  # age: 5m < 10m
                                     ("age", "35", now + 600_000, "session"),  # pin: 20m > 10m
                                     ("pin", "1", now + 600_000, "input")]:  # colour: 10m == 10m
        t = fast.answer(MIXED, mixed_at(ask), Message(text=answer), now)
        assert t is not None
        sched = t.effects[-1]
        assert (sched.at, sched.reason) == (due, reason)  # type: ignore[union-attr]


def test_commands_invalid_answers_and_media_go_to_the_general_engine() -> None:
    state = mixed_at("colour")
    for msg in [Message(text="help"), Message(text=" Cancel "), Message(text="purple"),
                Message(type="button_reply", reply_id="purple", text="purple"),
                Message(type="location", location={"latitude": 1, "longitude": 2})]:
        assert fast.answer(MIXED, state, msg, T0 + 5) is None
        assert step(MIXED, state, msg, T0 + 5).changed


def test_a_state_from_elsewhere_is_validated_once_then_trusted() -> None:
    state = mixed_at("age")
    msg = Message(text="35")
    assert fast.answer(MIXED, state, msg, T0 + 5) is not None
    for other in (State.from_json(state.to_json()), pickle.loads(pickle.dumps(state)), copy.copy(state),
                  copy.deepcopy(state), state.evolve(version=state.version)):
        assert other == state and "_checked_by" not in other.__dict__  # copies never carry the mark
        same(fast.answer(MIXED, other, msg, T0 + 5), interpret(MIXED, state, msg, T0 + 5))  # type: ignore[arg-type]
        assert "_checked_by" in other.__dict__  # validated once, against the whole schema
    # an equal flow that is another object: the state is validated against it first
    twin = flow(MIXED_YAML)
    assert twin == MIXED and twin is not MIXED
    same(fast.answer(twin, state, msg, T0 + 5), interpret(MIXED, state, msg, T0 + 5), marks=False)  # type: ignore[arg-type]
    assert state.__dict__["_checked_by"].flow is twin


def test_a_broken_state_is_still_refused() -> None:
    """A slot the answer does not touch is broken: the fast path declines, the engine refuses."""
    for broken in (mixed_at("age").evolve(slots={"name": 12}), mixed_at("age").evolve(slots={"name": "Ana", "x": 1}),
                   mixed_at("age").evolve(pending=None)):
        assert fast.answer(MIXED, broken, Message(text="35"), T0 + 5) is None
        with pytest.raises(StateValidationError):
            step(MIXED, broken, Message(text="35"), T0 + 5)


def test_a_used_flow_still_pickles_and_its_plan_lives_with_it() -> None:
    import gc
    import weakref

    f = flow(MIXED_YAML)
    state = step(f, None, Start(flow="mixed"), T0, session_id="p").state
    assert fast.answer(f, state, Message(text="Ana"), T0 + 1) is not None
    twin = pickle.loads(pickle.dumps(f))
    assert twin == f and "_engine_plan" not in twin.__dict__
    assert step(twin, State.from_json(state.to_json()), Message(text="Ana"), T0 + 1).state.step == "age"
    gone = weakref.ref(f)
    del f, state, twin
    gc.collect()
    assert gone() is None  # no registry keeps flows alive


def test_simulated_histories_are_the_same_without_the_fast_path(store, redis_client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """End to end: a hostile simulation through the real runtime and Redis gives the very same
    histories and final states when every event goes through the general engine."""
    from flowkit.engine import transition
    from tests.sim.test_simulator import HOSTILE, histories, simulate, stable

    def run() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        redis_client.flushall()
        res = simulate(store, users=40, seed=31, concurrency=4, **HOSTILE)
        hist = histories(store)
        return hist, {sid: store.load(sid) for sid in hist}, stable(res.summary())

    calls = {"fast": 0}
    real = fast.answer

    def counted(*args):  # type: ignore[no-untyped-def]
        out = real(*args)
        calls["fast"] += out is not None
        return out

    monkeypatch.setattr(transition.fast, "answer", counted)
    with_fast = run()
    answers = sum(r["event"] == "message" and not r["error"] for recs in with_fast[0].values() for r in recs)  # type: ignore[attr-defined]
    assert calls["fast"] >= answers * 0.6, (calls, answers)  # most valid answers took it
    monkeypatch.setattr(transition.fast, "answer", lambda *args: None)
    without = run()
    assert with_fast[2] == without[2]
    assert with_fast[1] == without[1]
    assert with_fast[0] == without[0]
