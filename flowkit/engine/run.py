"""The engine's interpreter: :class:`Run`, the mutable working copy of one transition,
frozen into a :class:`~flowkit.engine.result.Transition` at the end.

One path for every event kind (issue #21): a start, an answer, a command, a service result,
a timeout. What can be worked out once per flow (static replies, option tables, quick
parsers, command words) comes from the flow's :class:`~flowkit.engine.plan.Plan`; a state
the plan already trusts is validated by the slots the event changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowkit.engine import commands, experiments, handoff, waits
from flowkit.engine import why as _why
from flowkit.engine.events import (
    CallService,
    Command,
    Effect,
    End,
    Event,
    Reply,
    ServiceResult,
    Start,
    Timeout,
    UserMessage,
)
from flowkit.engine.flowset import FlowSet
from flowkit.engine.inputs import (
    DEFAULT_INVALID,
    EXPECTED,
    InvalidInput,
    is_other_content,
    parse_input,
)
from flowkit.engine.plan import MISS, Plan, plan_of
from flowkit.engine.replies import BUSY_TEXT, build_reply
from flowkit.engine.result import Transition
from flowkit.engine.state import (
    PROFILE,
    Record,
    State,
    check_slots,
    check_state_shape,
    make,
)
from flowkit.engine.values import cycle, iso, json_value, readable, record_input, schedule, scope
from flowkit.errors import EngineError, ExpressionError, StateValidationError
from flowkit.flow.model import (
    HELD_STATUSES,
    TERMINAL_STATUSES,
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
    BotMessage as Say,
)
from flowkit.flow.template import Template

MAX_AUTO_STEPS = 200
FlowSource = FlowSet | Mapping[str, Flow] | Callable[[str, str | None], Flow]
_PLAIN = frozenset({str, int, float, bool})


class Run:
    """Mutable working copy of one transition; frozen into a :class:`Transition` at the end."""

    __slots__ = ("root", "prev", "now", "flows", "session_id", "version", "flow_version", "step_name", "status",
                 "slots", "attempts", "stack", "pending", "trail", "started_at", "path", "effects", "error", "redact",
                 "auto", "why", "root_plan", "changed")

    def __init__(self, root: Flow, state: State | None, now: int, flows: FlowSource | None, session_id: str) -> None:
        self.root = root
        self.prev = state
        self.now = now
        self.flows = flows
        self.session_id = session_id
        self.step_name: str | None
        # The slots are written only through put() and replace_slots() (typed read-only here,
        # so mypy finds any other write): validate() then checks just the slots that changed.
        self.slots: Mapping[str, Any]  # (a dict of this run's own)
        #: slots put since the copy of the previous state's, not yet checked; None once replaced whole
        self.changed: tuple[str, ...] | None = ()
        self.attempts: dict[str, int]
        self.stack: list[dict[str, Any]]
        # pending and trail may be the previous state's own objects: typed read-only, never
        # changed in place (mypy strict finds any write), replaced by new ones instead
        self.pending: Mapping[str, Any] | None
        self.trail: Sequence[str]
        if state is None:
            self.version, self.flow_version, self.step_name, self.status = 1, root.version_id, None, "active"
            self.slots = {}
            self.attempts, self.stack, self.pending, self.trail = {}, [], None, []
            self.started_at = now
        else:  # a working copy: the state itself is a value and stays as it is
            self.version, self.flow_version, self.step_name = state.version + 1, state.flow_version, state.step
            self.status, self.started_at = state.status, state.started_at
            self.slots = dict(state.slots)
            self.attempts = dict(state.attempts) if state.attempts else {}
            self.stack = [dict(f) for f in state.stack] if state.stack else []
            self.pending = state.pending or None
            trail = self.pending.get("trail") if self.pending else None
            self.trail = trail if type(trail) is list else list(trail or ())  # (a list, as it reads back from JSON)
        self.path: list[str] = []
        self.effects: list[Effect] = []
        self.error: str | None = None
        self.redact = False
        self.auto = 0
        self.why: dict[str, Any] = {}  # the history record's `why` (engine/why.py)
        self.root_plan = plan_of(root)  # (commands.restore sets it again when it changes the root)

    # ------------------------------------------------------------ slots

    def put(self, name: str, value: Any, *, checked: bool = False) -> None:
        """Write one slot; ``checked``: the value already passed its slot's spec (a parsed answer).
        The profile is always named: its rule (a mapping) is check_slots', not a spec's."""
        self.slots[name] = value  # type: ignore[index]  # (the one write: slots is this run's own dict)
        if self.changed is not None and (not checked or name == PROFILE):
            self.changed += (name,)

    def replace_slots(self, slots: dict[str, Any]) -> None:
        """Put ``slots`` in place of the session's (a sub-flow's own, a restored state's, ...):
        validate() then checks them all."""
        self.slots = slots
        self.changed = None

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
        return "/".join([f["at"] for f in self.stack] + [local]) if self.stack else local

    @staticmethod
    def local(qualified: str) -> str:
        return qualified.rsplit("/", 1)[-1] if "/" in qualified else qualified

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

    def today(self) -> dt.date:
        return dt.date.fromisoformat(iso(self.now)[:10])

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

    def plan(self) -> Plan:
        """The plan of the flow the session is in (a sub-flow's own inside one)."""
        return self.root_plan if not self.stack else plan_of(self.flow)

    # ------------------------------------------------------------ moving

    def enter(self, local: str) -> None:  # noqa: C901 -- the move and one case per step kind, on the hottest path
        """Move to the step ``local`` of the current flow and run it. Moves are counted: a loop
        without a question stops after MAX_AUTO_STEPS."""
        self.auto += 1
        if self.auto > MAX_AUTO_STEPS:
            raise EngineError(
                f"flow {self.root.name!r} moved {MAX_AUTO_STEPS} steps without waiting for the user "
                f"(cycle {' -> '.join(cycle(self.path))}); add an ask step or an exit condition to that loop"
            )
        flow = self.flow if self.stack else self.root
        st = flow.steps.get(local)
        if st is None:
            raise EngineError(f"flow {flow.name!r} has no step {local!r}")
        self.step_name = name = self.qualify(local) if self.stack else local
        self.path.append(name)
        match st:  # the common kinds first
            case AskStep():
                self._enter_ask(st)
            case SayStep():
                self._enter_say(st)
            case EndStep():
                self._enter_end(st)
            case BranchStep():
                self.follow(st)
            case SetStep():
                self._enter_set(st)
            case CallStep():
                self._enter_call(st)
            case SplitStep():
                self.enter(self.split(st))
            case FlowStep():
                self._enter_subflow(st)
            case _:  # pragma: no cover - every kind is handled above
                raise EngineError(f"unknown step kind {st.kind}")

    def _say_step(self, st: SayStep | EndStep) -> None:
        assert st.say is not None
        reply = self.plan().says[st.name]
        self.effects.append(reply if reply is not None else build_reply(st.say, self.render, "say"))

    def _enter_say(self, st: SayStep) -> None:
        self._say_step(st)
        self.follow(st)

    def _enter_set(self, st: SetStep) -> None:
        for slot, expr in st.assign:
            self.put(slot, self.evaluate(expr, f"set {slot}"))
        self.follow(st)

    def _enter_ask(self, st: AskStep) -> None:
        reply = (self.root_plan if not self.stack else self.plan()).asks[st.name].reply
        self.effects.append(reply if reply is not None else build_reply(st.ask, self.render, "ask", st))
        self.attempts = {}
        self.pending = {"wait": "input", "step": self.step_name,
                        "deadline": self.now + int(st.timeout * 1000) if st.timeout else None, "trail": self.trail}
        self.status = "waiting_input"

    def _enter_call(self, st: CallStep) -> None:
        args = {k: self.evaluate(e, f"argument {k}") for k, e in st.args}
        call_id = f"{self.session_id}/{self.version}/{self.step_name}"
        self.effects.append(CallService(call_id=call_id, service=st.call, args=args, timeout=st.timeout))
        self.wait({"wait": "service", "step": self.step_name, "call_id": call_id, "service": st.call,
                   "deadline": self.now + int(st.timeout * 1000)})

    def _enter_subflow(self, st: FlowStep) -> None:
        args = {k: self.evaluate(e, f"argument {k}") for k, e in st.args}
        child = self.resolve(st.flow, None)
        self.stack.append({"at": st.name, "flow": child.name, "flow_version": child.version_id,
                           "slots": self.slots, "attempts": self.attempts, "trail": self.trail})
        profile = self.slots.get(PROFILE)
        self.replace_slots({**({PROFILE: profile} if profile is not None else {}), **args})
        if experiments.EXPERIMENTS in self.stack[-1]["slots"]:  # variants are per session, not per flow
            self.put(experiments.EXPERIMENTS, self.stack[-1]["slots"][experiments.EXPERIMENTS])
        self.attempts, self.trail = {}, []
        self.enter(child.start)

    def _enter_end(self, st: EndStep) -> None:
        if st.say is not None:
            self._say_step(st)
        if self.stack:
            self.return_from_subflow(st.end)
        else:
            self.finish(st.end)

    def split(self, st: SplitStep) -> str:
        """The goto of this session's variant, recorded in the experiments slot. A variant
        already recorded stays (sticky even if the weights changed since)."""
        assert self.step_name is not None
        seen = experiments.recorded(self.slots)
        by_name = {v.name: v for v in st.split}
        chosen = by_name.get(seen.get(self.step_name, ""))
        if chosen is None:
            chosen = experiments.assign(self.session_id, self.flow.name, st.name, st.split)
        self.put(experiments.EXPERIMENTS, {**seen, self.step_name: chosen.name})
        # the record says which variant (exports and analytics read it there, not only in state)
        self.why.setdefault("splits", []).append({"step": self.step_name, "variant": chosen.name})
        return chosen.goto

    def wait(self, pending: dict[str, Any]) -> None:
        pending["trail"] = self.trail
        self.pending = pending
        self.status = "waiting_input" if pending["wait"] == "input" else "waiting_service"

    def follow(self, st: Step) -> None:
        nxt = st.next
        if len(nxt) == 1 and nxt[0].when is None:  # a plain goto: most steps
            self.enter(nxt[0].goto)
            return
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
            self.replace_slots(root_slots)
        self.effects.append(End(status=status))
        if status in HELD_STATUSES:  # `end: handoff`: live, held by people (engine/handoff.py)
            handoff.hold(self, None)

    def return_from_subflow(self, end: str) -> None:
        frame = self.stack.pop()
        child_slots, child_step = self.slots, self.step_name
        self.replace_slots(dict(frame["slots"]))
        self.attempts, self.trail = dict(frame["attempts"]), list(frame["trail"])
        if PROFILE in child_slots:  # the profile may have been updated by a message inside the sub-flow
            self.put(PROFILE, child_slots[PROFILE])
        if experiments.EXPERIMENTS in child_slots:  # so may the variants (a split inside the sub-flow)
            self.put(experiments.EXPERIMENTS, child_slots[experiments.EXPERIMENTS])
        st = self.flow.steps[frame["at"]]
        assert isinstance(st, FlowStep)
        self.step_name = self.qualify(frame["at"])
        if end == "completed":
            for parent, child in st.save:
                self.put(parent, child_slots.get(child))
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
        from_step = self.step_name
        name: str | None
        if isinstance(event, Start):
            self.check_start(event)
            from_step = None
            self.start(event)
            name = event.kind
        else:
            name = self.live_event(event)
            if name is None:
                return self.noop()
        return self.freeze(event, name, event.actor, getattr(event, "message_id", None), from_step)

    def check_start(self, event: Start) -> None:
        prev = self.prev
        if event.flow != self.root.name:
            raise EngineError(f"the Start event names flow {event.flow!r}, but the engine was given flow {self.root.name!r}")
        if prev is not None and not prev.terminal:
            if prev.flow != self.root.name:  # an ended session may start any flow; a live one only its own
                raise EngineError(f"session {self.session_id!r} runs flow {prev.flow!r}, but the engine was given flow {self.root.name!r}")
            raise EngineError(f"session {self.session_id!r} is still in flow {prev.flow!r}; cancel it before starting another")

    def live_event(self, event: Event) -> str | None:  # noqa: C901 -- one guard or dispatch per event kind, in order
        """What ``event`` does to an existing session: the record's event name, None for no change."""
        prev = self.prev
        if prev is None:  # pragma: no cover - guarded in step()
            raise EngineError("no session")
        if prev.flow != self.root.name:
            raise EngineError(f"session {self.session_id!r} runs flow {prev.flow!r}, but the engine was given flow {self.root.name!r}")
        if isinstance(event, Command):
            return commands.command(self, event)
        if prev.status in HELD_STATUSES:
            return handoff.on_event(self, event)
        if prev.status in TERMINAL_STATUSES:
            if isinstance(event, (ServiceResult, Timeout)):
                # A result of a call the user cancelled, or a deadline scheduled before the session
                # ended: stale, not an error (like a late result of a live session).
                return None
            raise EngineError(f"session {self.session_id!r} has ended ({prev.status}); start a flow to talk again")
        if prev.pending is None:
            raise StateValidationError(f"session {self.session_id!r} is {prev.status} but its state says nothing "
                                       "about what it waits for (pending); recover or roll back the session")
        if isinstance(event, UserMessage):
            return self.message(event)
        if isinstance(event, ServiceResult):
            return event.kind if waits.service_result(self, event) else None
        if isinstance(event, Timeout):
            return waits.timeout(self)
        raise EngineError(f"unknown event {event!r}")  # pragma: no cover

    def noop(self) -> Transition:
        assert self.prev is not None
        return Transition(self.prev, (), None)

    def start(self, event: Start) -> None:
        self.root_reset()
        if event.profile:
            self.put(PROFILE, json_value(readable(dict(event.profile)), "the Start event's profile"))
        elif self.prev is not None and PROFILE in self.prev.slots:
            self.put(PROFILE, self.prev.slots[PROFILE])
        if PROFILE in event.args:
            raise EngineError("'profile' is reserved for the user's profile; pass it as Start(profile=...), not in args")
        for name, value in json_value(dict(event.args), "the Start event's args").items():
            self.put(name, value)
        self.flow_version = self.root.version_id
        self.started_at = self.now
        self.enter(self.root.start)
        if event.template is not None:  # outside the window only a template may open (runtime/starts.py)
            self.effects = [Reply(template=event.template), *(e for e in self.effects if not isinstance(e, Reply))]

    def root_reset(self) -> None:
        profile = self.slots.get(PROFILE)
        self.replace_slots({PROFILE: profile} if profile is not None else {})
        self.stack, self.attempts, self.trail, self.pending = [], {}, [], None

    def message(self, msg: UserMessage) -> str:
        assert self.pending is not None
        if msg.profile and msg.profile != self.slots.get(PROFILE):
            self.put(PROFILE, json_value(readable(dict(msg.profile)), "the message's profile"))
        if msg.type == "text" and msg.text:
            cmd = self.root_plan.commands.get(msg.text.strip().lower())  # as Commands.match
            if cmd is not None:
                commands.command(self, Command(name=cmd, message_id=msg.message_id))
                return "command"
        if self.pending["wait"] == "service":
            self.effects.append(Reply(text=BUSY_TEXT))
            self.error = "busy"
            return "message"
        self.answer(msg)
        return "message"

    def answer(self, msg: UserMessage) -> None:
        name = self.step_name
        ask = None if name is None else (
            self.root_plan.asks.get(name) if not self.stack else self.plan().asks.get(self.local(name)))
        if ask is None or name is None:  # the step is gone, or it asks nothing
            kind = self.current_step().kind  # (raises, saying the step is gone)
            raise EngineError(f"session waits for input at {name!r}, which is a {kind} step")
        st = ask.step
        self.redact = ask.sensitive
        text = msg.text if msg.text is not None else msg.reply_id
        try:
            value = MISS
            if text is not None and msg.type == "text" and msg.reply_id is None and msg.location is None \
                    and msg.media is None:
                value = ask.quick_value(text)  # typed text already in normal form: the common case
            if value is MISS:
                value = parse_input(st.input, msg, slot=ask.slot, labels=ask.labels, offered=ask.offered,
                                    today=self.today() if st.input.type == "date" else None)
        except InvalidInput as exc:
            self.invalid(st, exc, text, counts=not is_other_content(msg, exc))
            return
        if st.save:
            # a location or media answer is normalised to its JSON form; plain values are already
            if type(value) in _PLAIN:  # parsing checked it against the slot: validate() need not again
                self.put(st.save, value, checked=ask.slot is not None)
            else:
                self.put(st.save, json_value(value, "the answer") if isinstance(value, Mapping) else value)
        self.attempts = {}
        # answered again (a loop came back here): the trail returns to this question, so it
        # stays as long as the distinct questions answered and `back` never repeats one
        trail = self.trail
        self.trail = [*trail[:trail.index(name)], name] if name in trail else [*trail, name]
        self.follow(st)

    def invalid(self, st: AskStep, exc: InvalidInput, judged: str | None, *, counts: bool = True) -> None:
        """Re-prompt (or go to ``on_fail``) after ``exc`` refused the answer text ``judged``."""
        assert self.step_name is not None
        self.error = f"invalid_input:{exc.code}"
        self.why["invalid"] = _why.invalid(exc.code, exc.detail, judged, self.redact)
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
        self.say(Say(text=Template(text, (text,)), buttons=st.ask.buttons, menu=st.ask.menu), "invalid", extra=st)

    # ------------------------------------------------------------ result

    def freeze(self, event: Event, name: str, actor: str, message_id: str | None, from_step: str | None) -> Transition:
        pending = self.pending
        if pending is not None and pending.get("trail") is not self.trail:  # (the trail moved since)
            self.pending = {**pending, "trail": self.trail}
        state = make(State, {
            "session_id": self.session_id,
            "flow": self.root.name,
            "flow_version": self.flow_version,
            "step": self.step_name,
            "status": self.status,
            "slots": self.slots,
            "attempts": self.attempts,
            "stack": tuple(self.stack) if self.stack else (),
            "pending": self.pending,
            "version": self.version,
            "started_at": self.started_at,
            "updated_at": self.now,
            # (a state validate() refuses never leaves this method, token or not)
            "checked_by": self.root_plan.token if not self.stack else None,
        })
        self.validate(state)
        if self.status not in TERMINAL_STATUSES:
            self.effects.append(schedule(self.pending, self.root, self.now))
        record = make(Record, {
            "version": self.version,
            "ts": self.now,
            "event": name,
            "from_step": from_step,
            "to_step": state.step,
            "path": tuple(self.path),
            "status": state.status,
            "message_id": message_id,
            "input": record_input(event, self.redact),
            "error": self.error,
            "actor": actor,
            "why": _why.encode(self.why) if self.why else None,
        })
        return make(Transition, {"state": state, "effects": tuple(self.effects), "record": record})

    def validate(self, state: State) -> None:
        """Check the new state against the slot schema, or raise (nothing is committed then).
        Outside sub-flows, from a state the engine made and checked (it carries the root plan's
        token, engine/plan.py) only the slots this event changed are checked: put() keeps their names."""
        try:
            check_state_shape(state)
            if state.stack:
                self._validate_frames(state)
                return
            prev, changed, slots = self.prev, self.changed, state.slots
            if changed is not None and prev is not None and self.root_plan.trusts(prev):
                if changed:  # the rest are prev's, trusted
                    check_slots({k: slots[k] for k in changed if k in slots}, self.root.slots,
                                where=f"step {state.step!r} of flow {self.root.name!r}")
            elif slots:
                check_slots(slots, self.root.slots, where=f"step {state.step!r} of flow {self.root.name!r}")
        except StateValidationError as exc:
            raise StateValidationError(f"{exc} (event would leave an invalid state; nothing was changed)") from None

    def _validate_frames(self, state: State) -> None:
        check_slots(state.slots, self.flow.slots, where=f"step {state.step!r} of flow {self.flow.name!r}")
        for i, frame in enumerate(state.stack):
            owner = self.root if i == 0 else self.resolve(state.stack[i - 1]["flow"], state.stack[i - 1]["flow_version"])
            check_slots(frame["slots"], owner.slots, where=f"step {frame['at']!r} of flow {owner.name!r}")
