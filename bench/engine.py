"""Benchmark of the pure engine (issue 4), one run, printed as a markdown table.

    .venv/bin/python bench/engine.py            # ~30-60 s
    .venv/bin/python bench/engine.py --quick    # a smoke run (~10 s)
    .venv/bin/python bench/engine.py --steps 20 --seconds 0.6

Side by side, in the same process, on the same answers:

- **flowkit step**: ``flowkit.engine.step(flow, state, UserMessage(text), now)``: parses and
  validates the answer (int with min/max, or a choice), saves it, follows ``next`` (with
  conditions), validates the new state against the slot schema, builds the frozen new
  state, the effects (reply, schedule, end) and the history record;
- **transitions** (pytransitions): a ``Machine`` with the same states; a trigger whose
  ``conditions`` parse and check the answer the same way and whose ``after`` saves it;
- **python-statemachine**: a ``StateMachine`` with the same states, ``cond`` and ``on``
  callbacks doing the same parsing and saving;
- **dict-dispatch floor**: plain Python: a dict from state to (validator, next) and a slots
  dict; what any implementation has to do at least.

Workloads: a linear flow of ``--steps`` ask steps (each an int 1..100), and a branching flow
(a choice of three, then one of three chains of three int questions, then a computed total).
Only answers are timed (session creation is not), best of three rounds, in CPU time.

Other events: at each question of the linear flow, a wrong answer (an attempt counted, the
error and the question again) and ``help`` (the help text and the question again); the
libraries get the same as internal transitions. Since issue #21 flowkit has one engine
path for every event kind, so the answer and the other-event rows measure the same code.

Also the cost of the state's JSON form per transition (``State.to_json`` + ``State.from_json``),
which the runtime pays on every commit and load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statemachine  # noqa: E402
import transitions  # noqa: E402
from statemachine import State as SMState  # noqa: E402
from statemachine import StateMachine  # noqa: E402
from statemachine.factory import StateMachineMetaclass  # noqa: E402
from transitions import Machine  # noqa: E402

from flowkit.engine import Record, Start, State, Transition, UserMessage, step  # noqa: E402
from flowkit.flow import Flow, FlowBuilder, when  # noqa: E402

T0 = 1_790_000_000_000
KINDS = ("a", "b", "c")
CHAIN = 3


# ---------------------------------------------------------------- shared validation (the libraries' side)


def parse_int_1_100(text: str) -> int | None:
    t = text.strip()
    if not t.lstrip("+-").isdigit():
        return None
    v = int(t)
    return v if 1 <= v <= 100 else None


def parse_kind(text: str) -> str | None:
    t = text.strip().lower()
    return t if t in KINDS else None


# ---------------------------------------------------------------- flows


def linear_flow(n: int) -> Flow:
    b = FlowBuilder("linear", start="q0")
    for i in range(n):
        b.slot(f"a{i}", "int", min=1, max=100)
        b.ask(f"q{i}", f"Question {i}?", input={"type": "int", "min": 1, "max": 100}, save=f"a{i}",
              next=f"q{i + 1}" if i + 1 < n else "done")
    b.end("done")
    return b.build()


def branching_flow() -> Flow:
    b = FlowBuilder("branching", start="kind")
    b.slot("kind", "choice", options=list(KINDS))
    b.slot("total", "int")
    for k in KINDS:
        for j in range(CHAIN):
            b.slot(f"{k}{j}", "int", min=1, max=100)
    b.ask("kind", "Which kind?", input={"type": "choice", "options": list(KINDS)}, save="kind",
          next=[when(f"kind == '{k}'", f"{k}0") for k in KINDS[:-1]] + [f"{KINDS[-1]}0"])
    for k in KINDS:
        for j in range(CHAIN):
            nxt = f"{k}{j + 1}" if j + 1 < CHAIN else "sum"
            b.ask(f"{k}{j}", f"{k} {j}?", input={"type": "int", "min": 1, "max": 100}, save=f"{k}{j}", next=nxt)
    b.set("sum", {"total": " + ".join(f"({k}0 or 0) + ({k}1 or 0) + ({k}2 or 0)" for k in KINDS)}, next="done")
    b.end("done")
    return b.build()


def answers_linear(n: int) -> list[str]:
    return [str(1 + i % 100) for i in range(n)]


def answers_branching(kind: str) -> list[str]:
    return [f" {kind.upper()} "] + [str(10 + j) for j in range(CHAIN)]


# ---------------------------------------------------------------- flowkit


def flowkit_runner(flow: Flow, answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    start = step(flow, None, Start(flow=flow.name), T0, session_id="bench").state
    msgs = [UserMessage(text=a, message_id=f"m{i}") for i, a in enumerate(answers)]

    def prepare(sessions: int) -> int:
        return sessions

    def run(sessions: int) -> int:
        for _ in range(sessions):
            state = start
            now = T0
            for m in msgs:
                now += 1000
                state = step(flow, state, m, now).state
            assert state.status == "completed", state
        return sessions * len(msgs)

    return prepare, run


def outputs_floor(flow: Flow, answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    """Only what a flowkit step hands back, built the cheapest way Python allows: the new
    frozen state (slots, trail, pending), the history record with its input JSON, the reply
    and schedule effects and the Transition, from the transitions flowkit itself computed.
    No parsing, no validation, no choosing the next step: the cost of the result alone."""
    new, put = object.__new__, object.__setattr__
    start = step(flow, None, Start(flow=flow.name), T0, session_id="bench").state
    plan: list[tuple[str, str, Any, Any, tuple[str, ...], tuple[Any, ...]]] = []
    state = start
    for i, a in enumerate(answers):
        t = step(flow, state, UserMessage(text=a, message_id=f"m{i}"), T0 + 1000 * (i + 1))
        saved = {k: v for k, v in t.state.slots.items() if state.slots.get(k) != v}
        plan.append((a, t.state.step, saved, t.state.pending, t.record.path, t.effects))  # type: ignore[union-attr]
        state = t.state

    def run(sessions: int) -> int:
        for _ in range(sessions):
            state = start
            now = T0
            for i, (text, to, saved, pending, path, effects) in enumerate(plan):
                now += 1000
                slots = state.slots.copy()  # type: ignore[attr-defined]
                slots.update(saved)
                trail = [*state.pending["trail"], state.step] if state.pending else []
                d = state.__dict__.copy()
                d["step"], d["slots"], d["attempts"], d["version"], d["updated_at"] = to, slots, {}, state.version + 1, now
                d["pending"] = {**pending, "trail": trail} if pending else None
                d["status"] = status = "waiting_input" if pending else "completed"
                s = new(State)
                put(s, "__dict__", d)
                r = new(Record)
                put(r, "__dict__", {"version": d["version"], "ts": now, "event": "message", "from_step": state.step,
                                    "to_step": to, "path": path, "status": status, "message_id": f"m{i}",
                                    "input": '{"text":' + encode_basestring(text) + ',"type":"text"}', "error": None,
                                    "actor": "runtime"})
                out = new(Transition)
                put(out, "__dict__", {"state": s, "effects": effects, "record": r})
                state = out.state
            assert state.status == "completed", state
        return sessions * len(plan)

    return (lambda sessions: sessions), run


def _transitions_run(machine: Any, model: Any, initial: str, answers: list[str]
                     ) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    """Sessions of ``answers`` through a pytransitions machine, each from ``initial`` to done."""
    def run(sessions: int) -> int:
        for _ in range(sessions):
            machine.set_state(initial, model)
            model.slots = {}
            for a in answers:
                if not model.answer(text=a):
                    raise AssertionError("refused")
            assert model.state == "done"
        return sessions * len(answers)

    return (lambda sessions: sessions), run


def _statemachine_run(cls: type[StateMachine], answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    """Sessions of ``answers`` through fresh python-statemachine machines (made before timing)."""
    def run(machines: list[Any]) -> int:
        for m in machines:
            for a in answers:
                m.send("answer", text=a)
            assert m.current_state_value == "done"
        return len(machines) * len(answers)

    return (lambda sessions: [cls() for _ in range(sessions)]), run


# ---------------------------------------------------------------- pytransitions


class _TModel:
    def __init__(self) -> None:
        self.slots: dict[str, Any] = {}


def transitions_linear(n: int, answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    model = _TModel()

    def valid(event: Any) -> bool:
        return parse_int_1_100(event.kwargs["text"]) is not None

    def save(event: Any) -> None:
        model.slots[f"a{event.transition.source[1:]}"] = int(event.kwargs["text"])

    model.valid, model.save = valid, save  # type: ignore[attr-defined]
    states = [f"q{i}" for i in range(n)] + ["done"]
    trans = [{"trigger": "answer", "source": states[i], "dest": states[i + 1], "conditions": "valid", "after": "save"}
             for i in range(n)]
    machine = Machine(model=model, states=states, transitions=trans, initial="q0", auto_transitions=False,
                      send_event=True)

    return _transitions_run(machine, model, "q0", answers)


def transitions_branching(answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    model = _TModel()

    def make_is(k: str) -> Callable[[Any], bool]:
        return lambda event: parse_kind(event.kwargs["text"]) == k

    def valid(event: Any) -> bool:
        return parse_int_1_100(event.kwargs["text"]) is not None

    def save(event: Any) -> None:
        model.slots[event.transition.source] = int(event.kwargs["text"])

    def save_kind(event: Any) -> None:
        model.slots["kind"] = parse_kind(event.kwargs["text"])

    def total(event: Any) -> None:
        model.slots[event.transition.source] = int(event.kwargs["text"])
        model.slots["total"] = sum(v for k, v in model.slots.items() if k not in ("kind", "total"))

    for k in KINDS:
        setattr(model, f"is_{k}", make_is(k))
    model.valid, model.save, model.save_kind, model.total = valid, save, save_kind, total  # type: ignore[attr-defined]
    states = ["kind", "done"] + [f"{k}{j}" for k in KINDS for j in range(CHAIN)]
    trans = [{"trigger": "answer", "source": "kind", "dest": f"{k}0", "conditions": f"is_{k}", "after": "save_kind"}
             for k in KINDS]
    for k in KINDS:
        for j in range(CHAIN):
            last = j + 1 == CHAIN
            trans.append({"trigger": "answer", "source": f"{k}{j}", "dest": "done" if last else f"{k}{j + 1}",
                          "conditions": "valid", "after": "total" if last else "save"})
    machine = Machine(model=model, states=states, transitions=trans, initial="kind", auto_transitions=False,
                      send_event=True)

    return _transitions_run(machine, model, "kind", answers)


# ---------------------------------------------------------------- python-statemachine


def _sm_class(name: str, states: dict[str, SMState], event: Any, methods: dict[str, Any]) -> type[StateMachine]:
    def __init__(self: Any) -> None:
        self.slots = {}
        StateMachine.__init__(self)

    ns: dict[str, Any] = {**states, "answer": event, **methods, "__init__": __init__}
    return StateMachineMetaclass(name, (StateMachine,), ns)  # type: ignore[return-value]


def statemachine_linear(n: int, answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    states = {f"q{i}": SMState(f"q{i}", initial=(i == 0)) for i in range(n)}
    states["done"] = SMState("done", final=True)
    names = [f"q{i}" for i in range(n)] + ["done"]
    event = None
    for i in range(n):
        t = states[names[i]].to(states[names[i + 1]], cond="valid", on="save")
        event = t if event is None else event | t

    def valid(self: Any, text: str) -> bool:
        return parse_int_1_100(text) is not None

    def save(self: Any, text: str, source: Any) -> None:
        self.slots[f"a{source.id[1:]}"] = int(text)

    cls = _sm_class("Linear", states, event, {"valid": valid, "save": save})

    return _statemachine_run(cls, answers)


def statemachine_branching(answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    states = {"kind": SMState("kind", initial=True), "done": SMState("done", final=True)}
    for k in KINDS:
        for j in range(CHAIN):
            states[f"{k}{j}"] = SMState(f"{k}{j}")
    event = None
    for k in KINDS:
        t = states["kind"].to(states[f"{k}0"], cond=f"is_{k}", on="save_kind")
        event = t if event is None else event | t
    for k in KINDS:
        for j in range(CHAIN):
            last = j + 1 == CHAIN
            t = states[f"{k}{j}"].to(states["done" if last else f"{k}{j + 1}"], cond="valid",
                                     on="total" if last else "save")
            event = event | t

    def make_is(k: str) -> Callable[..., bool]:
        return lambda self, text: parse_kind(text) == k

    def valid(self: Any, text: str) -> bool:
        return parse_int_1_100(text) is not None

    def save(self: Any, text: str, source: Any) -> None:
        self.slots[source.id] = int(text)

    def save_kind(self: Any, text: str) -> None:
        self.slots["kind"] = parse_kind(text)

    def total(self: Any, text: str, source: Any) -> None:
        self.slots[source.id] = int(text)
        self.slots["total"] = sum(v for k, v in self.slots.items() if k not in ("kind", "total"))

    methods = {"valid": valid, "save": save, "save_kind": save_kind, "total": total,
               **{f"is_{k}": make_is(k) for k in KINDS}}
    cls = _sm_class("Branching", states, event, methods)

    return _statemachine_run(cls, answers)


# ---------------------------------------------------------------- plain Python floor


def floor_linear(n: int, answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    table = {f"q{i}": (parse_int_1_100, f"a{i}", f"q{i + 1}" if i + 1 < n else "done") for i in range(n)}

    def run(sessions: int) -> int:
        for _ in range(sessions):
            state, slots = "q0", {}
            for a in answers:
                parse, slot, nxt = table[state]
                v = parse(a)
                if v is None:
                    raise AssertionError("refused")
                slots[slot] = v
                state = nxt
            assert state == "done"
        return sessions * len(answers)

    return (lambda sessions: sessions), run


def floor_branching(answers: list[str]) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    table: dict[str, Any] = {"kind": (parse_kind, "kind", lambda v: f"{v}0")}
    for k in KINDS:
        for j in range(CHAIN):
            nxt = f"{k}{j + 1}" if j + 1 < CHAIN else "done"
            table[f"{k}{j}"] = (parse_int_1_100, f"{k}{j}", lambda v, nxt=nxt: nxt)

    def run(sessions: int) -> int:
        for _ in range(sessions):
            state, slots = "kind", {}
            for a in answers:
                parse, slot, nxt = table[state]
                v = parse(a)
                if v is None:
                    raise AssertionError("refused")
                slots[slot] = v
                state = nxt(v)
            slots["total"] = sum(v for k, v in slots.items() if k != "kind")
            assert state == "done"
        return sessions * len(answers)

    return (lambda sessions: sessions), run


# ---------------------------------------------------------------- other events (not a valid answer)

WRONG, HELP = "abc", "help"


def flowkit_other(flow: Flow, n: int) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    """At each question of the linear flow: a wrong answer (counted attempt, the error and the
    question again) and ``help`` typed (the help text and the question again)."""
    answers = answers_linear(n)
    state = step(flow, None, Start(flow=flow.name), T0, session_id="bench").state
    states = []
    for i, a in enumerate(answers):
        states.append(state)
        state = step(flow, state, UserMessage(text=a), T0 + 1000 * (i + 1)).state
    wrong, help_ = UserMessage(text=WRONG, message_id="w"), UserMessage(text=HELP, message_id="h")
    now = T0 + 1000 * (n + 1)

    def run(sessions: int) -> int:
        for _ in range(sessions):
            for s in states:
                assert step(flow, s, wrong, now).record.error == "invalid_input:not_an_integer"  # type: ignore[union-attr]
                step(flow, s, help_, now)
        return sessions * 2 * len(states)

    return (lambda sessions: sessions), run


def transitions_other(n: int) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    """The same with pytransitions: ``answer`` falls through to an internal transition that
    counts the attempt and re-asks; ``help`` is an internal transition that replies."""
    model = _TModel()
    model.replies = []  # type: ignore[attr-defined]

    def valid(event: Any) -> bool:
        return parse_int_1_100(event.kwargs["text"]) is not None

    def save(event: Any) -> None:
        model.slots[f"a{event.transition.source[1:]}"] = int(event.kwargs["text"])

    def retry(event: Any) -> None:
        model.slots["attempts"] = model.slots.get("attempts", 0) + 1
        model.replies.append(f"Please send a number. Question {event.transition.source[1:]}?")  # type: ignore[attr-defined]

    def helped(event: Any) -> None:
        model.replies.append(f"Please answer the question above. Question {event.transition.source[1:]}?")  # type: ignore[attr-defined]

    model.valid, model.save, model.retry, model.helped = valid, save, retry, helped  # type: ignore[attr-defined]
    states = [f"q{i}" for i in range(n)] + ["done"]
    trans: list[dict[str, Any]] = []
    for i in range(n):
        trans += [{"trigger": "answer", "source": states[i], "dest": states[i + 1], "conditions": "valid", "after": "save"},
                  {"trigger": "answer", "source": states[i], "dest": None, "unless": "valid", "after": "retry"},
                  {"trigger": "help", "source": states[i], "dest": None, "after": "helped"}]
    machine = Machine(model=model, states=states, transitions=trans, initial="q0", auto_transitions=False,
                      send_event=True)

    def run(sessions: int) -> int:
        for _ in range(sessions):
            for q in states[:-1]:
                machine.set_state(q, model)
                model.slots, model.replies = {}, []  # type: ignore[attr-defined]
                model.answer(text=WRONG)  # type: ignore[attr-defined]
                model.help(text=HELP)  # type: ignore[attr-defined]
                assert len(model.replies) == 2 and model.state == q  # type: ignore[attr-defined]
        return sessions * 2 * n

    return (lambda sessions: sessions), run


def statemachine_other(n: int) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    states = {f"q{i}": SMState(f"q{i}", initial=(i == 0)) for i in range(n)}
    states["done"] = SMState("done", final=True)
    names = [f"q{i}" for i in range(n)] + ["done"]
    answer = help_ = None
    for i in range(n):
        here = states[names[i]]
        t = here.to(states[names[i + 1]], cond="valid", on="save") | here.to.itself(internal=True, unless="valid", on="retry")
        answer = t if answer is None else answer | t
        h = here.to.itself(internal=True, on="helped")
        help_ = h if help_ is None else help_ | h

    def valid(self: Any, text: str) -> bool:
        return parse_int_1_100(text) is not None

    def save(self: Any, text: str, source: Any) -> None:
        self.slots[f"a{source.id[1:]}"] = int(text)

    def retry(self: Any, source: Any) -> None:
        self.slots["attempts"] = self.slots.get("attempts", 0) + 1
        self.replies.append(f"Please send a number. Question {source.id[1:]}?")

    def helped(self: Any, source: Any) -> None:
        self.replies.append(f"Please answer the question above. Question {source.id[1:]}?")

    def __init__(self: Any, start: str) -> None:
        self.slots, self.replies = {}, []
        StateMachine.__init__(self, start_value=start)

    ns: dict[str, Any] = {**states, "answer": answer, "help": help_, "valid": valid, "save": save, "retry": retry,
                          "helped": helped, "__init__": __init__}
    cls: Any = StateMachineMetaclass("Other", (StateMachine,), ns)

    def run(machines: list[Any]) -> int:
        for m in machines:
            m.send("answer", text=WRONG)
            m.send("help", text=HELP)
            assert len(m.replies) == 2
        return len(machines) * 2

    return (lambda sessions: [cls(f"q{i % n}") for i in range(sessions * n)]), run


def floor_other(n: int) -> tuple[Callable[[int], Any], Callable[[Any], int]]:
    table = {f"q{i}": (parse_int_1_100, f"Question {i}?") for i in range(n)}

    def run(sessions: int) -> int:
        for _ in range(sessions):
            for q in table:
                slots: dict[str, Any] = {}
                replies = []
                parse, ask = table[q]
                if parse(WRONG) is None:
                    slots["attempts"] = slots.get("attempts", 0) + 1
                    replies.append("Please send a number. " + ask)
                if HELP == "help":
                    replies.append("Please answer the question above. " + ask)
        return sessions * 2 * n

    return (lambda sessions: sessions), run


# ---------------------------------------------------------------- measuring

# CPU time of this process, not wall time: every implementation runs single-threaded in this
# process, and on a shared machine wall time also counts the time other processes held the
# CPU (it moved rows by 3x between identical runs at load ~10; CPU time by about 10%).
_clock = time.process_time



def rate(prepare: Callable[[int], Any], run: Callable[[Any], int], seconds: float, rounds: int = 3) -> float:
    """Best transitions/second over ``rounds`` rounds of about ``seconds`` each."""
    run(prepare(2))  # warm up and check it works
    sessions = 4
    while True:  # calibrate
        batch = prepare(sessions)
        t0 = _clock()
        run(batch)
        took = _clock() - t0
        if took > seconds / 8:
            break
        sessions *= 2
    sessions = max(1, int(sessions * seconds / took))
    best = 0.0
    for _ in range(rounds):
        batch = prepare(sessions)
        t0 = _clock()
        count = run(batch)
        best = max(best, count / (_clock() - t0))
    return best


def json_cost(flow: Flow, answers: list[str], seconds: float) -> tuple[float, int]:
    """Mean microseconds for ``to_json`` + ``from_json`` of the states a session goes through."""
    state: State = step(flow, None, Start(flow=flow.name), T0, session_id="bench").state
    states = [state]
    for i, a in enumerate(answers):
        state = step(flow, state, UserMessage(text=a), T0 + 1000 * (i + 1)).state
        states.append(state)
    sizes = [len(s.to_json()) for s in states]
    loops, took = 0, 0.0
    t0 = _clock()
    while took < seconds:
        for s in states:
            State.from_json(s.to_json())
        loops += 1
        took = _clock() - t0
    return took / (loops * len(states)) * 1e6, sum(sizes) // len(sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10, help="ask steps of the linear flow (default 10, as issue 4 says)")
    ap.add_argument("--seconds", type=float, default=0.6, help="time per measuring round (default 0.6)")
    ap.add_argument("--quick", action="store_true", help="short rounds, for a smoke run")
    args = ap.parse_args()
    seconds = 0.1 if args.quick else args.seconds
    warnings.simplefilter("ignore", DeprecationWarning)
    started = time.perf_counter()

    n = args.steps
    lin, br = linear_flow(n), branching_flow()
    lin_answers = answers_linear(n)
    rows: list[tuple[str, str, float, str]] = []

    workloads = [
        (f"linear, {n} int asks", [
            ("flowkit step", flowkit_runner(lin, lin_answers)),
            ("flowkit outputs only (result floor)", outputs_floor(lin, lin_answers)),
            (f"transitions {transitions.__version__}", transitions_linear(n, lin_answers)),
            (f"python-statemachine {statemachine.__version__}", statemachine_linear(n, lin_answers)),
            ("dict-dispatch floor", floor_linear(n, lin_answers)),
        ]),
        (f"branching, choice + {CHAIN} int asks + set", [
            ("flowkit step", flowkit_runner(br, answers_branching("b"))),
            ("flowkit outputs only (result floor)", outputs_floor(br, answers_branching("b"))),
            (f"transitions {transitions.__version__}", transitions_branching(answers_branching("b"))),
            (f"python-statemachine {statemachine.__version__}", statemachine_branching(answers_branching("b"))),
            ("dict-dispatch floor", floor_branching(answers_branching("b"))),
        ]),
        (f"other events: a wrong answer and `help` at each of {n} asks", [
            ("flowkit step", flowkit_other(lin, n)),
            (f"transitions {transitions.__version__}", transitions_other(n)),
            (f"python-statemachine {statemachine.__version__}", statemachine_other(n)),
            ("dict-dispatch floor", floor_other(n)),
        ]),
    ]
    table: list[str] = [
        "| workload | implementation | events/s | µs/event | vs flowkit step | vs floor |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, impls in workloads:
        rates = [(label, rate(prepare, run, seconds)) for label, (prepare, run) in impls]
        fk = rates[0][1]
        floor = rates[-1][1]
        for label, r in rates:
            table.append(f"| {name} | {label} | {r:,.0f} | {1e6 / r:.1f} | {r / fk:.2f}x | {r / floor:.3f}x |")
            rows.append((name, label, r, ""))
    us, size = json_cost(lin, lin_answers, seconds * 2)
    fk_lin = next(r for w, lbl, r, _ in rows if w.startswith("linear") and lbl == "flowkit step")
    table.append(f"| linear, {n} int asks | state JSON serialise + parse (avg {size} B) | {1e6 / us:,.0f} | {us:.1f} | "
                 f"{(1e6 / us) / fk_lin:.2f}x | |")
    print(f"flowkit engine benchmark, {dt.date.today().isoformat()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {time.perf_counter() - started:.0f} s")
    print()
    print("\n".join(table))
    print()
    print("| workload | flowkit µs/event | flowkit ÷ transitions | flowkit ÷ python-statemachine |")
    print("| --- | ---: | ---: | ---: |")
    for name, _ in workloads:
        got = {label: r for w, label, r, _ in rows if w == name}
        fk = got["flowkit step"]
        tr = next(r for label, r in got.items() if label.startswith("transitions"))
        sm = next(r for label, r in got.items() if label.startswith("python-statemachine"))
        print(f"| {name} | {1e6 / fk:.1f} | {fk / tr:.2f}x | {fk / sm:.2f}x |")


if __name__ == "__main__":
    main()
