"""The engine: ``step(flow, state, event, now) -> Transition``. Pure and deterministic.

No I/O, no clock, no randomness: everything that varies comes in as an argument, so a
recorded history replays to the same states, and a commit conflict is handled by simply
running ``step`` again on the fresh state.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flowkit.engine import experiments, handoff
from flowkit.engine import why as _why
from flowkit.engine.events import (
    CallService,
    Command,
    Effect,
    End,
    Event,
    Message,
    Reply,
    Schedule,
    ServiceResult,
    Start,
    Timeout,
)
from flowkit.engine.flowset import FlowSet
from flowkit.engine.inputs import (
    DEFAULT_INVALID,
    EXPECTED,
    InvalidInput,
    is_other_content,
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
    make,
    slot_problem,
)
from flowkit.errors import EngineError, ExpressionError, StateValidationError
from flowkit.flow.model import (
    HELD_STATUSES,
    AskStep,
    BranchStep,
    CallStep,
    EndStep,
    Flow,
    FlowStep,
    SayStep,
    SetStep,
    SplitStep,
    Step,
)
from flowkit.flow.model import (
    Message as Say,
)
from flowkit.flow.template import Template

MAX_AUTO_STEPS = 200
FlowSource = FlowSet | Mapping[str, Flow] | Callable[[str, str | None], Flow]

CANCELLED_TEXT = "OK, I've cancelled this. Send a message any time to start again."
EXPIRED_TEXT = "This conversation has ended after a period of inactivity. Send a message to start again."
NO_BACK_TEXT = "There's no earlier question to go back to."
BUSY_TEXT = "One moment please, I'm still working on your request."


@dataclass(frozen=True)
class Transition:
    """What one event does to a session: the new state, the effects to run after the
    commit, and the history record. ``record`` is None when nothing changes (a late
    service result or a timeout that is no longer due): do not commit then."""

    state: State
    effects: tuple[Effect, ...]
    record: Record | None

    @property
    def changed(self) -> bool:
        return self.record is not None


def step(flow: Flow, state: State | None, event: Event, now: int | dt.datetime, *,
         flows: FlowSource | None = None, session_id: str | None = None) -> Transition:
    """Apply ``event`` to ``state`` under ``flow`` (the session's root flow, at its pinned version).

    ``now`` is epoch milliseconds (or an aware datetime). ``flows`` resolves sub-flows by
    name (and pinned version). ``state`` is None only for a :class:`Start` of a new session,
    whose id is ``session_id``.
    """
    if type(event) is Message and type(now) is int and state is not None and now >= state.updated_at and (
            session_id is None or session_id == state.session_id):
        done = fast.answer(flow, state, event, now)
        if done is not None:
            return done
    return interpret(flow, state, event, now, flows=flows, session_id=session_id)


def interpret(flow: Flow, state: State | None, event: Event, now: int | dt.datetime, *,
              flows: FlowSource | None = None, session_id: str | None = None) -> Transition:
    """:func:`step` without its fast path (engine/fast.py): the general engine, for any event.
    Both give equal transitions; the tests compare them."""
    now_ms = _ms(now)
    if state is None:
        if not isinstance(event, Start):
            raise EngineError(f"a new session can only begin with a Start event, not {event.kind}; route the message to a flow first")
        if not session_id:
            raise EngineError("a new session needs a session_id")
    else:
        if session_id is not None and session_id != state.session_id:
            raise EngineError(f"the state belongs to session {state.session_id!r}, not {session_id!r}")
        if now_ms < state.updated_at:
            # A clock behind the last commit would make durations negative; keep time monotonic.
            now_ms = state.updated_at
    return _Run(flow, state, now_ms, flows, session_id or (state.session_id if state else "")).apply(event)


def fail(flow: Flow, state: State, reason: str, now: int | dt.datetime, *, actor: str = "runtime") -> Transition:
    """End the session as failed (e.g. after an :class:`EngineError`), recording ``reason``."""
    return step(flow, state, Command(name="fail", args={"reason": reason}, actor=actor), now)


def _ms(now: int | dt.datetime) -> int:
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise EngineError("now must be timezone-aware (UTC); naive datetimes are ambiguous")
        return int(now.timestamp() * 1000)
    return int(now)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def scope(names: frozenset[str], declared: Mapping[str, Any], slots: Mapping[str, Any], now: int,
          session_id: str, flow: str, step: str | None) -> dict[str, Any]:
    """What an expression reading ``names`` sees: its slots (None when declared but unset),
    ``profile``, ``now`` and ``today`` (UTC, ISO-8601) and ``session``. Only the names it reads
    are worked out (the clock's text is not cheap); a name that is none of these stays
    missing, so the expression fails with "unknown name" as it should."""
    env: dict[str, Any] = {}
    for n in names:
        if n == "profile":
            env[n] = dict(slots.get(PROFILE) or {})
        elif n == "now":
            env[n] = _iso(now)
        elif n == "today":
            env[n] = _iso(now)[:10]
        elif n == "session":
            env[n] = {"id": session_id, "flow": flow, "step": step}
        elif n in slots:
            env[n] = slots[n]
        elif n in declared:
            env[n] = None
    return env


def build_reply(msg: Say, render: Callable[[Template | None, str], str | None], where: str,
                extra: AskStep | None = None) -> Reply:
    """The Reply effect for ``msg``; ``extra`` (an ask step) adds buttons or a list for its options."""
    text = render(msg.text, where)
    template = None
    if msg.template is not None:
        params = tuple(render(p, f"{where} template") or "" for p in msg.template.params)
        template = (msg.template.name, msg.template.language, params)
    buttons = tuple((b.id, b.title) for b in msg.buttons)
    list_button = msg.list.button if msg.list else None
    sections = tuple(
        (s.title, tuple((r.id, r.title, r.description) for r in s.rows)) for s in msg.list.sections
    ) if msg.list else ()
    location_request = False
    if extra is not None and not buttons and not sections and template is None and msg.cta is None:
        spec = extra.input
        if spec.type == "yes_no":
            buttons = (("yes", "Yes"), ("no", "No"))
        elif spec.type == "choice" and spec.options:
            text, buttons, list_button, sections = option_menu(text, spec.options)
        elif spec.type == "location" and msg.media is None:
            location_request = True
    cta = (msg.cta.text, render(msg.cta.url, f"{where} cta") or "") if msg.cta is not None else None
    return Reply(text=text, buttons=buttons, list_button=list_button, sections=sections, template=template,
                 header=render(msg.header, f"{where} header"), footer=render(msg.footer, f"{where} footer"),
                 media=(msg.media.kind, msg.media.ref) if msg.media is not None else None, cta=cta,
                 location_request=location_request)


# WhatsApp's limits on what options become (the channel's builders enforce them again).
_BUTTON_TITLE, _BUTTON_ID, _ROW_TITLE, _ROW_ID = 20, 256, 24, 200


def option_menu(text: str | None, options: tuple[str, ...]) -> tuple[
        str | None, tuple[tuple[str, str], ...], str | None, tuple[tuple[str, tuple[tuple[str, str, None], ...]], ...]]:
    """(text, buttons, list button, sections) offering ``options``: buttons when at most 3 fit
    whole, a list when at most 10 fit whole, else numbered lines under the text. Labels are
    never cut: two options cut to the same title could not be told apart."""
    if len(options) <= 3 and all(len(o) <= _BUTTON_TITLE and len(o) <= _BUTTON_ID for o in options):
        return text, tuple((o, o) for o in options), None, ()
    if len(options) <= 10 and all(len(o) <= _ROW_TITLE and len(o) <= _ROW_ID for o in options):
        return text, (), "Choose", (("", tuple((o, o, None) for o in options)),)
    lines = "\n".join(f"{i}) {o}" for i, o in enumerate(options, 1))
    return ((text + "\n" + lines) if text else lines), (), None, ()


def static_text(template: Template | None, where: str) -> str | None:
    """``render`` for messages whose templates are all static."""
    return None if template is None else template.source


def schedule(pending: Mapping[str, Any] | None, root: Flow, now: int) -> Schedule:
    """The next wake-up of a live session: its step's deadline or the flow's inactivity timeout."""
    due: list[tuple[int, str]] = []
    if pending and pending.get("deadline") is not None:
        due.append((int(pending["deadline"]), pending["wait"]))
    if root.timeout is not None and not handoff.is_held(pending):  # people have their own clock
        due.append((now + int(root.timeout * 1000), "session"))
    at, reason = min(due) if due else (0, "none")
    return make(Schedule, {"at": at, "reason": reason, "kind": "schedule"})


def payload_json(payload: Mapping[str, Any]) -> str:
    """An event's payload as the history record's ``input`` text."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if not text.isascii() and not is_utf8(text):  # lone surrogates: escaped, so the record has a UTF-8 form
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return text


class _Run:
    """Mutable working copy of one transition; frozen into a :class:`Transition` at the end."""

    def __init__(self, root: Flow, state: State | None, now: int, flows: FlowSource | None, session_id: str) -> None:
        self.root = root
        self.prev = state
        self.now = now
        self.flows = flows
        self.session_id = session_id
        self.version = (state.version if state else 0) + 1
        self.flow_version = state.flow_version if state else root.version_id
        self.step_name: str | None = state.step if state else None
        self.status = state.status if state else "active"
        self.slots: dict[str, Any] = dict(state.slots) if state else {}
        self.attempts: dict[str, int] = dict(state.attempts) if state else {}
        self.stack: list[dict[str, Any]] = [dict(f) for f in state.stack] if state else []
        self.pending: dict[str, Any] | None = dict(state.pending) if state and state.pending else None
        self.trail: list[str] = list(self.pending.get("trail", [])) if self.pending else []
        self.started_at = state.started_at if state else now
        self.path: list[str] = []
        self.effects: list[Effect] = []
        self.error: str | None = None
        self.redact = False
        self.judged: str | None = None  # the answer text a validation error judged
        self.auto = 0
        self.why: dict[str, Any] = {}  # the history record's `why` (engine/why.py)

    # ------------------------------------------------------------ flows and names

    def resolve(self, name: str, version: str | None) -> Flow:
        if name == self.root.name and version in (None, self.root.version_id):
            return self.root
        if self.flows is None:
            raise EngineError(f"flow {name!r} is needed as a sub-flow but no flows were given to the engine")
        if isinstance(self.flows, FlowSet):  # resolved beforehand: a lookup, never I/O
            return self.flows.resolve(name, version)
        if callable(self.flows):
            return self.flows(name, version)
        flow = self.flows.get(name)
        if flow is None:
            raise EngineError(f"sub-flow {name!r} is not loaded; load its file with the others")
        if version is not None and flow.version_id != version:
            raise EngineError(f"session is pinned to flow {name!r} version {version!r}, but version {flow.version_id!r} is loaded")
        return flow

    @property
    def flow(self) -> Flow:
        if not self.stack:
            return self.root
        top = self.stack[-1]
        return self.resolve(top["flow"], top["flow_version"])

    def qualify(self, local: str) -> str:
        return "/".join([f["at"] for f in self.stack] + [local])

    @staticmethod
    def local(qualified: str) -> str:
        return qualified.rsplit("/", 1)[-1]

    def current_step(self) -> Step:
        if self.step_name is None:
            raise EngineError("the session has no current step")
        try:
            return self.flow.steps[self.local(self.step_name)]
        except KeyError:
            raise EngineError(
                f"step {self.step_name!r} does not exist in flow {self.flow.name!r} version {self.flow.version_id}; migrate the session"
            ) from None

    # ------------------------------------------------------------ expressions

    def env(self, names: frozenset[str]) -> dict[str, Any]:
        return scope(names, self.flow.slots, self.slots, self.now, self.session_id, self.root.name, self.step_name)

    def evaluate(self, expr: Any, where: str) -> Any:
        try:
            return expr.evaluate(self.env(expr.names()))
        except ExpressionError as exc:
            raise EngineError(f"step {self.step_name!r} of flow {self.flow.name!r}: {where}: {exc}") from None

    @cached_property
    def now_iso(self) -> str:
        return _iso(self.now)

    def render(self, template: Template | None, where: str) -> str | None:
        if template is None:
            return None
        if template.is_static:
            return template.source
        try:
            return template.render(self.env(template.names()))
        except ExpressionError as exc:
            raise EngineError(f"step {self.step_name!r} of flow {self.flow.name!r}: {where}: {exc.reason} in {template.source!r}") from None

    def say(self, msg: Say, where: str, *, extra: AskStep | None = None) -> None:
        self.effects.append(build_reply(msg, self.render, where, extra))

    # ------------------------------------------------------------ moving

    def enter(self, local: str) -> None:
        self.auto += 1
        if self.auto > MAX_AUTO_STEPS:
            raise EngineError(
                f"flow {self.root.name!r} moved {MAX_AUTO_STEPS} steps without waiting for the user "
                f"(cycle {' -> '.join(_cycle(self.path))}); add an ask step or an exit condition to that loop"
            )
        flow = self.flow
        if local not in flow.steps:
            raise EngineError(f"flow {flow.name!r} has no step {local!r}")
        st = flow.steps[local]
        self.step_name = self.qualify(local)
        self.path.append(self.step_name)
        if isinstance(st, SayStep):
            self.say(st.say, "say")
            self.follow(st)
        elif isinstance(st, SetStep):
            for slot, expr in st.assign:
                self.slots[slot] = self.evaluate(expr, f"set {slot}")
            self.follow(st)
        elif isinstance(st, BranchStep):
            self.follow(st)
        elif isinstance(st, AskStep):
            self.say(st.ask, "ask", extra=st)
            self.attempts = {}
            self.wait({"wait": "input", "step": self.step_name,
                       "deadline": self.now + int(st.timeout * 1000) if st.timeout else None})
        elif isinstance(st, CallStep):
            args = {k: self.evaluate(e, f"argument {k}") for k, e in st.args}
            call_id = f"{self.session_id}/{self.version}/{self.step_name}"
            self.effects.append(CallService(call_id=call_id, service=st.call, args=args, timeout=st.timeout))
            self.wait({"wait": "service", "step": self.step_name, "call_id": call_id, "service": st.call,
                       "deadline": self.now + int(st.timeout * 1000)})
            self.status = "waiting_service"
        elif isinstance(st, FlowStep):
            args = {k: self.evaluate(e, f"argument {k}") for k, e in st.args}
            child = self.resolve(st.flow, None)
            self.stack.append({"at": local, "flow": child.name, "flow_version": child.version_id,
                               "slots": self.slots, "attempts": self.attempts, "trail": self.trail})
            profile = self.slots.get(PROFILE)
            self.slots = {**({PROFILE: profile} if profile is not None else {}), **args}
            if experiments.EXPERIMENTS in self.stack[-1]["slots"]:  # variants are per session, not per flow
                self.slots[experiments.EXPERIMENTS] = self.stack[-1]["slots"][experiments.EXPERIMENTS]
            self.attempts, self.trail = {}, []
            self.enter(child.start)
        elif isinstance(st, SplitStep):
            self.enter(self.split(st))
        elif isinstance(st, EndStep):
            if st.say is not None:
                self.say(st.say, "say")
            if self.stack:
                self.return_from_subflow(st.end)
            else:
                self.finish(st.end)
        else:  # pragma: no cover - every kind is handled above
            raise EngineError(f"unknown step kind {st.kind}")

    def split(self, st: SplitStep) -> str:
        """The goto of this session's variant, recorded in the experiments slot. A variant
        already recorded stays (sticky even if the weights changed since)."""
        assert self.step_name is not None
        seen = experiments.recorded(self.slots)
        by_name = {v.name: v for v in st.split}
        chosen = by_name.get(seen.get(self.step_name, ""))
        if chosen is None:
            chosen = experiments.assign(self.session_id, self.flow.name, st.name, st.split)
        self.slots[experiments.EXPERIMENTS] = {**seen, self.step_name: chosen.name}
        # the record says which variant (exports and analytics read it there, not only in state)
        self.why.setdefault("splits", []).append({"step": self.step_name, "variant": chosen.name})
        return chosen.goto

    def wait(self, pending: dict[str, Any]) -> None:
        pending["trail"] = self.trail
        self.pending = pending
        self.status = "waiting_input" if pending["wait"] == "input" else "waiting_service"

    def follow(self, st: Step) -> None:
        passed: list[str] = []
        for b in st.next:
            if b.when is None or self.evaluate(b.when, f"condition {b.when.source!r}"):
                if b.when is not None or passed:  # a condition decided: say which, and what it read
                    names = frozenset().union(*(c.when.names() for c in st.next[:len(passed) + 1] if c.when))
                    read = _why.read_values(self.env(names), self.flow.slots)
                    self.why.setdefault("branches", []).append(
                        _why.branch(self.step_name, b.when.source if b.when else None, passed, read, b.goto))
                self.enter(b.goto)
                return
            assert b.when is not None  # (a branch without `when` was taken above)
            passed.append(b.when.source)
        raise EngineError(f"step {self.step_name!r} of flow {self.flow.name!r} has no branch to follow; add a final `goto` without `if`")

    def finish(self, status: str) -> None:
        self.status = status
        self.pending = None
        self.attempts = {}
        self.trail = []
        if self.stack:  # ending from inside a sub-flow ends the whole session
            root_slots = dict(self.stack[0]["slots"])
            if PROFILE in self.slots:
                root_slots[PROFILE] = self.slots[PROFILE]
            if experiments.EXPERIMENTS in self.slots:
                root_slots[experiments.EXPERIMENTS] = self.slots[experiments.EXPERIMENTS]
            self.stack = []
            self.slots = root_slots
        self.effects.append(End(status=status))
        if status in HELD_STATUSES:  # `end: handoff`: live, held by people (engine/handoff.py)
            handoff.hold(self, None)

    def return_from_subflow(self, end: str) -> None:
        frame = self.stack.pop()
        child_slots, child_step = self.slots, self.step_name
        self.slots, self.attempts, self.trail = dict(frame["slots"]), dict(frame["attempts"]), list(frame["trail"])
        if PROFILE in child_slots:  # the profile may have been updated by a message inside the sub-flow
            self.slots[PROFILE] = child_slots[PROFILE]
        if experiments.EXPERIMENTS in child_slots:  # so may the variants (a split inside the sub-flow)
            self.slots[experiments.EXPERIMENTS] = child_slots[experiments.EXPERIMENTS]
        st = self.flow.steps[frame["at"]]
        assert isinstance(st, FlowStep)
        self.step_name = self.qualify(frame["at"])
        if end == "completed":
            for parent, child in st.save:
                self.slots[parent] = child_slots.get(child)
            self.follow(st)
        elif st.on_fail:
            self.enter(st.on_fail)
        else:
            # The session ends where the sub-flow ended (``contact/give_up``), so the record's
            # path ends with its to_step, as when a session is cancelled inside a sub-flow.
            self.step_name = child_step
            self.finish(end)

    # ------------------------------------------------------------ events

    def apply(self, event: Event) -> Transition:
        name: str | None = event.kind
        actor = event.actor
        message_id = getattr(event, "message_id", None)
        from_step = self.step_name
        if isinstance(event, Start) and event.flow != self.root.name:
            raise EngineError(f"the Start event names flow {event.flow!r}, but the engine was given flow {self.root.name!r}")
        if self.prev is not None and self.prev.flow != self.root.name and not (isinstance(event, Start) and self.prev.terminal):
            # An ended session may start any flow; a live one only runs under its own flow.
            raise EngineError(f"session {self.session_id!r} runs flow {self.prev.flow!r}, but the engine was given flow {self.root.name!r}")
        if isinstance(event, Start):
            if self.prev is not None and not self.prev.terminal:
                raise EngineError(f"session {self.session_id!r} is still in flow {self.prev.flow!r}; cancel it before starting another")
            from_step = None
            self.start(event)
        elif self.prev is None:  # pragma: no cover - guarded in step()
            raise EngineError("no session")
        elif isinstance(event, Command):
            name = self.command(event)
            if name is None:
                return self.noop()
        elif self.prev.status in HELD_STATUSES and not isinstance(event, Command):
            name = handoff.on_event(self, event)
            if name is None:
                return self.noop()
        elif self.prev.terminal and isinstance(event, (ServiceResult, Timeout)):
            # A result of a call the user cancelled, or a deadline scheduled before the session
            # ended: stale, not an error (like a late result of a live session).
            return self.noop()
        elif self.prev.terminal:
            raise EngineError(f"session {self.session_id!r} has ended ({self.prev.status}); start a flow to talk again")
        elif self.prev.pending is None:
            raise StateValidationError(f"session {self.session_id!r} is {self.prev.status} but its state says nothing "
                                       "about what it waits for (pending); recover or roll back the session")
        elif isinstance(event, Message):
            name = self.message(event)
        elif isinstance(event, ServiceResult):
            if not self.service_result(event):
                return self.noop()
        elif isinstance(event, Timeout):
            name = self.timeout()
            if name is None:
                return self.noop()
        else:  # pragma: no cover
            raise EngineError(f"unknown event {event!r}")
        assert name is not None  # (every branch that has none returned a noop)
        return self.freeze(event, name, actor, message_id, from_step)

    def noop(self) -> Transition:
        assert self.prev is not None
        return Transition(self.prev, (), None)

    def start(self, event: Start) -> None:
        self.root_reset()
        if event.profile:
            self.slots[PROFILE] = _json_value(_readable(dict(event.profile)), "the Start event's profile")
        elif self.prev is not None and PROFILE in self.prev.slots:
            self.slots[PROFILE] = self.prev.slots[PROFILE]
        if PROFILE in event.args:
            raise EngineError("'profile' is reserved for the user's profile; pass it as Start(profile=...), not in args")
        self.slots.update(_json_value(dict(event.args), "the Start event's args"))
        self.flow_version = self.root.version_id
        self.started_at = self.now
        self.enter(self.root.start)
        if event.template is not None:  # outside the window only a template may open (runtime/starts.py)
            self.effects = [Reply(template=event.template), *(e for e in self.effects if not isinstance(e, Reply))]

    def root_reset(self) -> None:
        profile = self.slots.get(PROFILE)
        self.slots = {PROFILE: profile} if profile is not None else {}
        self.stack, self.attempts, self.trail, self.pending = [], {}, [], None

    def message(self, msg: Message) -> str:
        assert self.pending is not None
        if msg.profile and msg.profile != self.slots.get(PROFILE):
            self.slots[PROFILE] = _json_value(_readable(dict(msg.profile)), "the message's profile")
        if msg.type == "text" and msg.text:
            cmd = self.root.commands.match(msg.text)
            if cmd is not None:
                self.command(Command(name=cmd, message_id=msg.message_id))
                return "command"
        if self.pending["wait"] == "service":
            self.effects.append(Reply(text=BUSY_TEXT))
            self.error = "busy"
            return "message"
        self.answer(msg)
        return "message"

    def answer(self, msg: Message) -> None:
        st = self.current_step()
        if not isinstance(st, AskStep):
            raise EngineError(f"session waits for input at {self.step_name!r}, which is a {st.kind} step")
        slot = self.flow.slots.get(st.save) if st.save else None
        self.redact = bool(slot and slot.sensitive)
        self.judged = msg.text if msg.text is not None else msg.reply_id
        try:
            value = parse_input(st.input, msg, slot=slot, labels=_labels(st), offered=_offered(st),
                                today=dt.date.fromisoformat(self.now_iso[:10]) if st.input.type == "date" else None)
        except InvalidInput as exc:
            self.invalid(st, exc, counts=not is_other_content(msg, exc))
            return
        if st.save:
            self.slots[st.save] = _json_value(value, "the answer") if isinstance(value, Mapping) else value
        self.attempts = {}
        assert self.step_name is not None
        # answered again (a loop came back here): the trail returns to this question, so it
        # stays as long as the distinct questions answered and `back` never repeats one
        cut = self.trail.index(self.step_name) if self.step_name in self.trail else len(self.trail)
        self.trail = [*self.trail[:cut], self.step_name]
        self.follow(st)

    def invalid(self, st: AskStep, exc: InvalidInput, *, counts: bool = True) -> None:
        assert self.step_name is not None
        self.error = f"invalid_input:{exc.code}"
        self.why["invalid"] = _why.invalid(exc.code, exc.detail, self.judged, self.redact)
        # Other content (a sticker, a stale tap) re-prompts without using up a retry.
        count = self.attempts.get(self.step_name, 0) + counts
        if counts and count > st.retries and st.on_fail:
            self.attempts = {}
            self.enter(st.on_fail)
            return
        self.attempts = {self.step_name: count} if count else {}
        self.path.append(self.step_name)  # a re-prompt re-enters the step (the retry self-edge)
        said = EXPECTED.get(st.input.type, DEFAULT_INVALID["wrong_type"]) if exc.code == "wrong_type" else (
            DEFAULT_INVALID.get(exc.code, "Sorry, I did not understand."))
        text = (self.render(st.invalid, "invalid") or "") if st.invalid is not None else (
            f"{said} {self.render(st.ask.text, 'ask') or ''}".strip()
        )
        self.say(Say(text=Template(text, (text,)), buttons=st.ask.buttons, list=st.ask.list), "invalid", extra=st)

    def service_result(self, res: ServiceResult) -> bool:
        p = self.pending
        if not p or p.get("wait") != "service" or p.get("call_id") != res.call_id:
            return False  # late or duplicated result for a call the session no longer waits on
        st = self.current_step()
        assert isinstance(st, CallStep)
        slot = self.flow.slots.get(st.save) if st.save else None
        self.redact = bool(slot and slot.sensitive)
        self.why["service"] = {"call": st.call, "ok": res.ok, "error": res.error}
        if res.ok:
            try:
                value = _json_value(res.value, "the service result")
                why = slot_problem(slot, value) if slot is not None else None
            except EngineError:
                why = "not JSON (only text, numbers, true/false, null, lists and maps with text keys)"
            if why is None:
                if st.save:
                    self.slots[st.save] = value
                self.follow(st)
                return True
            self.error = f"service_error:bad_result ({why})"
            self.why["service"]["error"] = f"bad_result ({why})"
        else:
            self.error = f"service_error:{res.error or 'unknown'}"
        self.call_failed(st, timeout=False)
        return True

    def call_failed(self, st: CallStep, *, timeout: bool) -> None:
        target = (st.on_timeout or st.on_error) if timeout else st.on_error
        if target:
            self.enter(target)
        else:
            self.finish("failed")

    def timeout(self) -> str | None:
        p = self.pending or {}
        deadline = p.get("deadline")
        if deadline is not None and self.now >= deadline:
            st = self.current_step()
            self.error = "timeout"
            if isinstance(st, CallStep):
                self.call_failed(st, timeout=True)
                return "timeout"
            if isinstance(st, AskStep) and st.on_timeout:
                self.attempts = {}
                self.enter(st.on_timeout)
                return "timeout"
            self.effects.append(Reply(text=EXPIRED_TEXT))
            self.finish("expired")
            return "expire"
        if self.root.timeout is not None and self.prev is not None and self.now >= self.prev.updated_at + int(self.root.timeout * 1000):
            self.error = "inactive"
            self.effects.append(Reply(text=EXPIRED_TEXT))
            self.finish("expired")
            return "expire"
        return None

    def command(self, cmd: Command) -> str | None:
        name = cmd.name
        assert self.prev is not None
        if name in handoff.COMMANDS:
            return handoff.command(self, cmd)
        terminal = self.prev.terminal
        if name in ("cancel", "restart", "back", "help") and terminal:
            raise EngineError(f"session {self.session_id!r} has ended ({self.prev.status}); {name} needs an active session")
        if name == "cancel":
            self.effects.append(Reply(text=CANCELLED_TEXT))
            self.finish("cancelled")
        elif name in ("restart", "reset"):
            self.root_reset()
            self.flow_version = self.root.version_id if name == "reset" else self.flow_version
            self.enter(self.root.start)
        elif name == "back":
            self.back()
        elif name == "help":
            text = self.render(self.root.help, "help") or _default_help(self.root)
            self.effects.append(Reply(text=text))
            self.reprompt()
        elif name in ("rollback", "recover"):
            target = cmd.args.get("state")
            if not isinstance(target, Mapping):
                raise EngineError(f"{name} needs the target state in args['state']")
            self.restore(State.from_dict(target))
            return "rollback" if name == "rollback" else "recovery"
        elif name == "migrate":
            self.migrate(cmd.args.get("step"))
            return "migrate"
        elif name == "delivery_failed":
            return self.undeliverable(cmd)
        elif name == "fail":
            self.error = str(cmd.args.get("reason") or "failed")[:500]
            if terminal:
                return None
            self.finish("failed")
        else:
            raise EngineError(f"unknown command {name!r} (known: cancel, restart, back, help, reset, rollback, migrate, recover, fail, "
                              "delivery_failed)")
        return "command"

    def undeliverable(self, cmd: Command) -> str:
        """A reply could not be delivered (a failed status, a permanent send error, or a
        free-form message outside the 24-hour window): record it; follow the step's or the
        flow's ``on_undeliverable`` only if the failed reply belongs to the current version
        (a late status about an old question must not move the session) and the session is
        not already there (its own message failing must not loop)."""
        assert self.prev is not None
        self.error = str(cmd.args.get("error") or "undeliverable")[:200]
        if (self.prev.terminal or cmd.args.get("version") != self.prev.version or not self.step_name
                or cmd.args.get("route") is False):
            return "delivery_failed"
        st = self.current_step()
        target = getattr(st, "on_undeliverable", None) or getattr(self.flow, "on_undeliverable", None)
        if target and target != self.local(self.step_name):
            self.attempts = {}
            self.enter(target)
        return "delivery_failed"

    def back(self) -> None:
        # At a sub-flow's first question, `back` leaves the sub-flow for the caller's last question.
        levels, trail = 0, self.trail
        while not trail and levels < len(self.stack):
            levels += 1
            trail = self.stack[-levels]["trail"]
        if not trail or (self.pending or {}).get("wait") != "input":
            self.effects.append(Reply(text=NO_BACK_TEXT))
            self.reprompt()
            return
        for _ in range(levels):
            frame = self.stack.pop()
            profile = self.slots.get(PROFILE)
            self.slots, self.attempts, self.trail = dict(frame["slots"]), dict(frame["attempts"]), list(frame["trail"])
            if profile is not None:
                self.slots[PROFILE] = profile
        target = self.trail[-1]
        self.trail = self.trail[:-1]
        self.attempts = {}
        self.enter(self.local(target))

    def reprompt(self) -> None:
        if (self.pending or {}).get("wait") == "input":
            st = self.current_step()
            if isinstance(st, AskStep):
                self.say(st.ask, "ask", extra=st)

    def restore(self, target: State) -> None:
        if target.session_id != self.session_id or target.flow != self.root.name:
            raise EngineError(f"the target state is session {target.session_id!r} in flow {target.flow!r}, "
                              f"not session {self.session_id!r} in flow {self.root.name!r}")
        if target.flow_version != self.root.version_id:
            # The restored state is pinned to its own flow version: validate it (and run the
            # session from now on) under that version, not the one the session had moved to.
            self.root = self.resolve(self.root.name, target.flow_version)
        self.step_name, self.status = target.step, target.status
        self.slots, self.attempts = dict(target.slots), dict(target.attempts)
        self.stack = [dict(f) for f in target.stack]
        self.pending = dict(target.pending) if target.pending is not None else None
        self.trail = list(self.pending.get("trail", [])) if self.pending else []
        self.flow_version, self.started_at = target.flow_version, target.started_at
        if self.step_name and self.step_name != (self.prev.step if self.prev else None):
            self.path.append(self.step_name)

    def migrate(self, new_step: Any) -> None:
        if self.stack:
            raise EngineError("cannot migrate a session inside a sub-flow; wait until it returns or map the calling step")
        self.flow_version = self.root.version_id
        target = new_step or (self.local(self.step_name) if self.step_name else None)
        if self.prev is not None and (self.prev.terminal or self.prev.status in HELD_STATUSES):
            return  # re-pinned only: an ended session stays ended, a held one stays with people
        if not isinstance(target, str) or target not in self.root.steps:
            raise EngineError(f"step {target!r} does not exist in flow {self.root.name!r} version {self.root.version_id}; give a step mapping")
        self.slots = {k: v for k, v in self.slots.items() if k == PROFILE or k in self.root.slots}
        self.attempts, self.pending = {}, None
        # `back` must only lead to questions of the new version, and never forward past the
        # step the session is moved to: keep the earlier answered ask steps that still exist.
        trail = [s for s in self.trail if isinstance(self.root.steps.get(s), AskStep)]
        if target in trail:
            trail = trail[: trail.index(target)]
        self.trail = trail
        self.enter(target)

    # ------------------------------------------------------------ result

    def freeze(self, event: Event, name: str, actor: str, message_id: str | None, from_step: str | None) -> Transition:
        if self.pending is not None:
            self.pending["trail"] = self.trail
        state = make(State, {
            "session_id": self.session_id,
            "flow": self.root.name,
            "flow_version": self.flow_version,
            "step": self.step_name,
            "status": self.status,
            "slots": self.slots,
            "attempts": self.attempts,
            "stack": tuple(self.stack),
            "pending": self.pending,
            "version": self.version,
            "started_at": self.started_at,
            "updated_at": self.now,
        })
        self.validate(state)
        if not self.stack:
            state.__dict__[CHECKED] = fast.plan_of(self.root)
        if not state.terminal:
            self.effects.append(schedule(state.pending, self.root, self.now))
        payload = event.payload()
        if self.redact and isinstance(event, (Message, ServiceResult)):
            payload = {"type": getattr(event, "type", "service_result"), "redacted": True}
        record = make(Record, {
            "version": self.version,
            "ts": self.now,
            "event": name,
            "from_step": from_step,
            "to_step": state.step,
            "path": tuple(self.path),
            "status": state.status,
            "message_id": message_id,
            "input": payload_json(payload),
            "error": self.error,
            "actor": actor,
            "why": _why.encode(self.why),
        })
        return make(Transition, {"state": state, "effects": tuple(self.effects), "record": record})

    def validate(self, state: State) -> None:
        try:
            check_state_shape(state)
            check_slots(state.slots, self.flow.slots, where=f"step {state.step!r} of flow {self.flow.name!r}")
            for i, frame in enumerate(state.stack):
                owner = self.root if i == 0 else self.resolve(state.stack[i - 1]["flow"], state.stack[i - 1]["flow_version"])
                check_slots(frame["slots"], owner.slots, where=f"step {frame['at']!r} of flow {owner.name!r}")
        except StateValidationError as exc:
            raise StateValidationError(f"{exc} (event would leave an invalid state; nothing was changed)") from None


def _cycle(path: list[str]) -> list[str]:
    """The repeating loop at the end of ``path``: ``[a, b, c, b, c, b]`` -> ``[b, c, b]``."""
    if not path:
        return []
    last = path[-1]
    for i in range(len(path) - 2, -1, -1):
        if path[i] == last:
            return path[i:]
    return path[-12:]


def _json_value(value: Any, where: str) -> Any:
    """``value`` as it reads back from the state's JSON (tuples become lists), or EngineError
    when it has no exact JSON form (objects, sets, NaN/infinity, non-text keys)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EngineError(f"{where} cannot be stored in the session state: {exc}") from None
    if not text.isascii() and not is_utf8(text):  # the store writes UTF-8
        raise EngineError(f"{where} cannot be stored in the session state: it has text with lone surrogates")
    return json.loads(text)


def _readable(value: Any) -> Any:
    """``value`` with each lone surrogate in its texts replaced by U+FFFD. For the user's
    profile only: a display name is worth keeping legible, and it cannot be asked again."""
    if isinstance(value, str):
        return value if is_utf8(value) else "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, Mapping):
        return {k: _readable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_readable(v) for v in value]
    return value


def _labels(st: AskStep) -> dict[str, str]:
    """Button and list-row titles that name an option (lower-case title -> option)."""
    options = set(st.input.options or ())
    out = {b.title.lower(): b.id for b in st.ask.buttons if b.id in options}
    if st.ask.list is not None:
        for s in st.ask.list.sections:
            out.update({r.title.lower(): r.id for r in s.rows if r.id in options})
    return out


def _offered(st: AskStep) -> frozenset[str]:
    """The button and row ids a question offers: its own buttons and rows, its options (the
    buttons or rows build_reply makes of them) and yes/no."""
    ids = {b.id for b in st.ask.buttons} | set(st.input.options or ())
    if st.ask.list is not None:
        ids.update(r.id for s in st.ask.list.sections for r in s.rows)
    if st.input.type == "yes_no":
        ids.update(("yes", "no"))
    return frozenset(ids)


def _default_help(flow: Flow) -> str:
    words = [f"'{getattr(flow.commands, n)[0]}'" for n in ("back", "restart", "cancel") if getattr(flow.commands, n)]
    return "Please answer the question above." + (f" You can also say {', '.join(words)}." if words else "")


# The fast path uses this module's helpers, so it is imported once they exist.
from flowkit.engine import fast  # noqa: E402
