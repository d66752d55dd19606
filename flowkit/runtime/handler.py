"""The Flow Handler: load -> pure engine -> versioned commit, then effects (the outbox).

One message is processed by :func:`_process`, a generator that *describes* the I/O it
needs (load, commit, sleep) and gets the answers sent back in. :class:`Runtime` drives it
with blocking calls and :class:`AsyncRuntime` with awaits, so the CAS retry loop —
the part that must be right — exists once.

No lock anywhere: two messages for one user race, one commit wins, the other gets
``conflict`` and simply reruns the engine on the fresh state. A redelivered message gets
``duplicate`` from the same commit script and changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flowkit.engine import (
    CallService,
    Command,
    Event,
    Message,
    Reply,
    Start,
    State,
    Timeout,
    Transition,
    effect_from_dict,
    fail,
    step,
)
from flowkit.engine.flowset import FlowSet, Want, pinned
from flowkit.engine.transition import schedule
from flowkit.errors import (
    ChannelError,
    ConflictError,
    EngineError,
    FlowkitError,
    FlowNeeded,
    UnknownFlowError,
)
from flowkit.flow.model import Flow
from flowkit.log import error_fields, get_logger
from flowkit.runtime import handoff as _handoff
from flowkit.runtime import resolve as _resolve
from flowkit.runtime import transcript, unrouted
from flowkit.runtime.channel import AsyncChannel, Channel, HeldChannel, RecordingChannel
from flowkit.runtime.places import SentPlaces
from flowkit.runtime.registry import FlowRegistry
from flowkit.runtime.sender import (
    OutboxSender,
    Pacer,
    classify,
    error_name,
    metric,
    outside_window,
    undeliverable_event,
)
from flowkit.runtime.sender import (
    Result as SendResult,
)
from flowkit.runtime.services import ServiceRegistry
from flowkit.store import delivery

if TYPE_CHECKING:
    from flowkit.channels.whatsapp.webhook import StatusUpdate

log = get_logger("flowkit.runtime")

_ADMIN = frozenset({"migrate", "rollback", "reset", "recover",
                    "handoff", "agent_reply", "release"})  # an agent's mistake is the agent's (runtime/handoff.py)

_MAX_RESOLVES = 64  # sub-flows one step may newly enter before it is called a loop

OutcomeStatus = Literal["applied", "duplicate", "noop", "unrouted"]


@dataclass(frozen=True)
class Outcome:
    """What handling one event did."""

    session_id: str
    status: OutcomeStatus
    version: int | None = None
    flow: str | None = None
    record: Mapping[str, Any] | None = None
    replies: tuple[Reply, ...] = ()
    conflicts: int = 0
    error: str | None = None
    effects: tuple[Any, ...] = field(default=(), repr=False)
    flow_version: str | None = None


# ---------------------------------------------------------------- the sans-io core


@dataclass(frozen=True)
class _Load:
    session_id: str
    fresh: bool


@dataclass(frozen=True)
class _Commit:
    session_id: str
    expected: int
    transition: Transition
    previous: dict[str, Any] | None
    message_id: str | None


@dataclass(frozen=True)
class _Sleep:
    seconds: float


def _inbound(event: Event) -> str | None:
    """The WhatsApp id of a user's message, to mark it read."""
    return event.message_id if isinstance(event, Message) else None


def unrouted_text(registry: FlowRegistry) -> str:
    triggers = [f.triggers[0] for f in registry.flows() if f.triggers]
    if not triggers:
        return "Hi! I can't help with that here."
    return "Hi! I can help with: " + ", ".join(triggers) + ". Send one of these words to start."


class _Core:
    """Routing and the CAS loop, shared by the sync and async runtimes."""

    def __init__(self, store: Any, flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], *,
                 services: ServiceRegistry | None, default_flow: str | None, clock: Callable[[], int] | None,
                 max_conflicts: int, cache_size: int, rng: random.Random | None, metrics: Any = None) -> None:
        self.store = store
        self.metrics = metrics
        self.places = SentPlaces()  # flow and step of replies not sent yet (delivery by step)
        self.registry = flows if isinstance(flows, FlowRegistry) else FlowRegistry(flows)
        self.services = services or ServiceRegistry()
        self.default_flow = default_flow
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.max_conflicts = max_conflicts
        self.rng = rng or random.Random()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, State] = OrderedDict()
        self._inbound: OrderedDict[str, int] = OrderedDict()  # sid -> last inbound ms this process saw
        self.stats = {"applied": 0, "duplicate": 0, "noop": 0, "unrouted": 0, "conflicts": 0, "engine_errors": 0,
                      "send_failures": 0}
        self.calls_in_flight: set[str] = set()  # call ids this process is running now
        self.run_services = True

    # -- state cache: the last state this process committed, so the happy path needs no load.
    # It keeps the engine's own State object: the engine trusts a state it validated itself
    # and checks only what the next answer changes (engine/plan.py).

    def cached_state(self, sid: str) -> State | None:
        s = self._cache.get(sid)
        if s is not None:
            self._cache.move_to_end(sid)
        return s

    def cached(self, sid: str) -> dict[str, Any] | None:
        """The cached state's JSON form (what ``store.load`` returns), or None."""
        s = self.cached_state(sid)
        return s.to_dict() if s is not None else None

    def remember(self, sid: str, state: State | None) -> None:
        if self.cache_size <= 0:
            return
        if state is None:
            self._cache.pop(sid, None)
            return
        self._cache[sid] = state
        self._cache.move_to_end(sid)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self, sid: str) -> None:
        self._cache.pop(sid, None)

    # -- routing

    def route(self, state: State | None, event: Event) -> Event | None:
        """Which event a message becomes: an answer in the active flow, a start, or nothing."""
        if not isinstance(event, Message):
            return event
        if state is not None and not state.terminal:
            return event
        text = event.text or ""
        flow = self.registry.match_trigger(text) if text else None
        # restart and the default flow need only a name: the flow itself is resolved by the
        # driver (``_resolve.Resolve``), which says UnknownFlowError if there is none
        name = flow.name if flow is not None else None
        if name is None and state is not None and text.strip().lower() in ("restart",):
            name = state.flow
        if name is None and self.default_flow:
            name = self.default_flow
        if name is None:
            return None
        return Start(flow=name, message_id=event.message_id, text=event.text, profile=event.profile or {},
                     actor=event.actor)

    def flow_for(self, state: State | None, event: Event) -> Flow:
        if isinstance(event, Start):
            return self.registry.latest(event.flow)
        assert state is not None
        if isinstance(event, Command) and event.name == "migrate" and "flow_version" in event.args:
            return self.registry.get(state.flow, event.args["flow_version"])
        return self.registry.get(state.flow, state.flow_version)

    def root_want(self, state: State | None, event: Event) -> Want:
        """Which root flow (name, version) :meth:`flow_for` would pick, without looking it up."""
        if isinstance(event, Start):
            return (event.flow, None)
        assert state is not None
        if isinstance(event, Command) and event.name == "migrate" and "flow_version" in event.args:
            return (state.flow, str(event.args["flow_version"]))
        return (state.flow, state.flow_version)

    def transition(self, sid: str, state: State | None, event: Event, now: int,
                   flow: Flow | None = None, flows: FlowSet | None = None) -> Transition:
        flow = flow if flow is not None else self.flow_for(state, event)
        try:
            return step(flow, state, event, now, flows=flows if flows is not None else self.registry, session_id=sid)
        except FlowNeeded:
            raise  # not the session's fault: process() resolves the flow and runs the step again
        except (EngineError, UnknownFlowError) as exc:
            # A broken flow or a state the flow no longer fits: fail the session visibly
            # (a failed record with the reason) instead of leaving it stuck.
            self.stats["engine_errors"] += 1
            if self.metrics is not None:
                self.metrics.engine_error()
            log.error("engine error", extra={"session_id": sid, "flow": flow.name, "flow_version": flow.version_id,
                                             **error_fields(exc)})
            if state is None or state.terminal or (isinstance(event, Command) and event.name in _ADMIN):
                raise  # an admin's mistake is reported to the admin, never turned into a failed session
            return fail(flow, state, f"engine_error: {exc}", now)

    def process(self, sid: str, event: Event) -> Generator[Any, Any, Outcome]:
        conflicts = 0
        fresh = False
        known: dict[str, Any] | None = None  # the state a conflict reply brought back
        while True:
            got = known if known is not None else (yield _Load(sid, fresh))
            known = None
            state: State | None
            if isinstance(got, State):  # from this process's cache
                state, raw = got, got.to_dict()
            else:
                raw = got
                state = State.from_dict(raw) if raw else None
            if isinstance(event, Message) and event.type == "welcome" and state is not None and not state.terminal:
                # WhatsApp's request_welcome (the chat was opened) greets a newcomer; it never
                # answers or interrupts a live session. Decided on the stored state, not a cached one.
                if not fresh:
                    fresh = True
                    continue
                return Outcome(sid, "noop", state.version, conflicts=conflicts)
            routed = self.route(state, event)
            if routed is None:
                return Outcome(sid, "unrouted", state.version if state else None,
                               replies=(Reply(text=unrouted_text(self.registry)),))
            now = self.clock()
            wants = (self.root_want(state, routed), *pinned(state))
            answers = yield _resolve.Resolve(wants)
            root = _resolve.root_of(wants[0], answers[0])
            flows = _resolve.extend(FlowSet(), wants[1:], answers[1:])
            for _ in range(_MAX_RESOLVES):
                try:
                    t = self.transition(sid, state, routed, now, root, flows)
                    break
                except FlowNeeded as need:  # a sub-flow nobody predicted: resolve it, step again (pure)
                    want = (need.name, need.version)
                    flows = _resolve.extend(flows, (want,), (yield _resolve.Resolve((want,))))
            else:
                raise EngineError(f"session {sid!r}: the step needed more than {_MAX_RESOLVES} flows; "
                                  "a flow calls sub-flows too deeply, check its `flow:` steps")
            if not t.changed:
                if not fresh and state is not None:
                    # Decided on a cached state: make sure it is the stored one (a commit whose
                    # answer was lost, e.g. Redis died mid-reply, may have moved the session on).
                    fresh = True
                    continue
                return Outcome(sid, "noop", state.version if state else None, conflicts=conflicts,
                               flow=state.flow if state else None, flow_version=state.flow_version if state else None)
            message_id = getattr(routed, "message_id", None)
            result = yield _Commit(sid, state.version if state else 0, t, raw, message_id)
            if result.outcome == "ok":
                self.remember(sid, t.state)
                assert t.record is not None
                return Outcome(sid, "applied", result.version, t.state.flow, t.record.to_dict(),
                               tuple(e for e in t.effects if isinstance(e, Reply)), conflicts, t.record.error, t.effects,
                               flow_version=t.state.flow_version)
            if result.outcome == "duplicate":
                return Outcome(sid, "duplicate", result.version, conflicts=conflicts)
            conflicts += 1
            self.stats["conflicts"] += 1
            if self.metrics is not None:
                self.metrics.conflict()
            self.forget(sid)
            fresh = True
            known = result.current  # usually there: no reload round trip
            if conflicts > self.max_conflicts:
                raise ConflictError(
                    f"session {sid!r}: {conflicts} commit conflicts in a row; another writer keeps winning. "
                    "The message was not applied; WhatsApp will redeliver it"
                )
            yield _Sleep(self.rng.uniform(0, min(0.05, 0.001 * 2 ** conflicts)))

    def transcript_in(self, sid: str, event: Event, outcome: Outcome) -> list[Any]:
        """The deferred transcript write of a handled user message (flowkit/runtime/transcript.py)."""
        return transcript.inbound_commands(self.store, sid, event, outcome.status, outcome.version, outcome.record,
                                           self.clock())

    def window_ms(self) -> int | None:
        """The channel's customer-service window (None: the channel has none, e.g. in tests)."""
        return getattr(getattr(self, "channel", None), "window_ms", None)

    def inbound_writes(self, sid: str, event: Event) -> list[Any] | None:
        """A user's message opens the 24-hour window: a deferred write, riding on the commit."""
        window = self.window_ms()
        if not window or not isinstance(event, Message) or event.actor != "runtime":
            return None
        now = self.clock()
        self._inbound[sid] = now
        self._inbound.move_to_end(sid)
        while len(self._inbound) > max(self.cache_size, 1):
            self._inbound.popitem(last=False)
        return delivery.inbound_commands(sid, now, window)

    def window_closed(self, sid: str, read: Callable[[], int | None]) -> bool:
        """Is the user's 24-hour window closed now? What this process saw answers without a
        round trip (the reply to a message just handled); else ``read`` asks the store, since
        another process may have received a newer message."""
        window = self.window_ms()
        if not window:
            return False
        now = self.clock()
        seen = self._inbound.get(sid)
        if seen is not None and not outside_window(seen, now, window):
            return False
        return outside_window(read(), now, window)

    def cut_short_call(self, raw: Mapping[str, Any] | None,
                       outbox: Mapping[int, list[dict[str, Any]]]) -> CallService | None:
        """The call a session waits for if its outbox entry is still unacknowledged (the
        process running it died, or is about to report) and this process is not running it."""
        pending = (raw or {}).get("pending") or {}
        call_id = pending.get("call_id")
        if pending.get("wait") != "service" or not call_id or call_id in self.calls_in_flight or not self.run_services:
            return None
        for effects in outbox.values():
            for e in effects:
                if e.get("kind") == "call" and e.get("call_id") == call_id:
                    return effect_from_dict(e)  # type: ignore[return-value]  # (a call effect, by its kind)
        return None

    def commit_args(self, op: _Commit) -> tuple[tuple[Any, ...], dict[str, Any]]:
        t = op.transition
        assert t.record is not None
        effects = [e.to_dict() for e in t.effects if isinstance(e, (Reply, CallService))]
        timeout_at = next((e.at for e in t.effects if e.kind == "schedule" and e.at), None)
        return (op.session_id, op.expected, t.state.to_dict(), t.record.to_dict()), {
            "previous": op.previous, "message_id": op.message_id, "effects": effects, "timeout_at_ms": timeout_at,
        }

    def count(self, outcome: Outcome, started: float, event: Event | None = None) -> None:
        self.stats[outcome.status] += 1
        if self.metrics is not None:
            self.metrics.handled(outcome.status, time.perf_counter() - started)
            if outcome.status == "applied" and outcome.record is not None:
                self.metrics.applied(outcome.flow or "", outcome.record, len(outcome.replies))
        log.info(
            "event handled",
            extra={"session_id": outcome.session_id, "flow": outcome.flow, "flow_version": outcome.flow_version,
                   "outcome": outcome.status, "version": outcome.version,
                   "message_id": (outcome.record or {}).get("message_id") or getattr(event, "message_id", None),
                   "event": (outcome.record or {}).get("event") or (type(event).__name__.lower() if event else None),
                   "step": (outcome.record or {}).get("to_step"), "conflicts": outcome.conflicts,
                   "error": outcome.error, "latency_ms": round((time.perf_counter() - started) * 1000, 3)},
        )


# ---------------------------------------------------------------- sync


class Runtime(_handoff.AgentActions, _Core):
    """The Flow Handler with blocking I/O (threads are fine: it holds no lock).

        rt = Runtime(Store(connect()), load_flows("flows/"), channel=WhatsAppChannel(sender))
        rt.handle_message("31612345678", Message(text="pizza", message_id="wamid.1"))
    """

    def __init__(self, store: Any, flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], *,
                 channel: Channel | None = None, services: ServiceRegistry | None = None,
                 default_flow: str | None = None, clock: Callable[[], int] | None = None,
                 max_conflicts: int = 32, cache_size: int = 10_000, rng: random.Random | None = None,
                 run_services: bool = True, metrics: Any = None, rate: float = 80.0) -> None:
        super().__init__(store, flows, services=services, default_flow=default_flow, clock=clock,
                         max_conflicts=max_conflicts, cache_size=cache_size, rng=rng, metrics=metrics)
        self.channel: Channel = channel or RecordingChannel()
        self.run_services = run_services
        self.pacer = Pacer(rate)

    def drain(self) -> None:
        """Send the deferred outbox acknowledgements now (before exit; they otherwise ride
        on the next round trip or go within 0.1 s)."""
        self.store.flush()

    def _drive(self, gen: Generator[Any, Any, Outcome]) -> Outcome:
        reply: Any = None
        try:
            while True:
                op = gen.send(reply)
                if isinstance(op, _Load):
                    reply = (None if op.fresh else self.cached_state(op.session_id)) or self.store.load(op.session_id)
                elif isinstance(op, _Commit):
                    args, kwargs = self.commit_args(op)
                    self.forget(op.session_id)  # until the outcome is known, the cached state may be stale
                    reply = self.store.commit(*args, **kwargs)
                elif isinstance(op, _resolve.Resolve):
                    reply = _resolve.answer_sync(self.registry, op.wants)
                elif isinstance(op, _Sleep):
                    time.sleep(op.seconds)
                    reply = None
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

    def handle(self, session_id: str, event: Event) -> Outcome:
        """Apply one event (message, service result, timeout, command) and run its effects."""
        started = time.perf_counter()
        writes = self.inbound_writes(session_id, event)
        if writes:
            self.store.defer(writes)
        outcome = self._drive(self.process(session_id, event))
        if outcome.status == "unrouted" and isinstance(event, Message) and event.message_id:
            # a redelivery of a message that ended the session: a duplicate, not a stranger
            outcome = _as_duplicate(outcome, self.store.seen(session_id, event.message_id))
            if outcome.status == "unrouted" and not unrouted.claim(self.store.client, session_id, event.message_id):
                outcome = Outcome(session_id, "duplicate", outcome.version)  # already answered once
        self.count(outcome, started, event)
        if tx_in := self.transcript_in(session_id, event, outcome):
            self.store.defer(tx_in)
        if outcome.status == "unrouted":
            if not self._send(session_id, outcome.replies) and isinstance(event, Message) and event.message_id:
                unrouted.release(self.store.client, session_id, event.message_id)
        elif outcome.status == "applied":
            self.places.note(session_id, outcome.version, outcome.flow, outcome.record)
            self.run_effects(session_id, outcome.version or 0, outcome.effects, route=_routes(outcome),
                             inbound=_inbound(event))
            _handoff.after_sync(self.store.client, outcome, self.metrics)  # the agents' queue and webhook, if it is about a hand-off
        return outcome

    handle_message = handle

    def _send(self, sid: str, replies: Iterable[Reply]) -> bool:
        for r in replies:
            try:
                wamid = self.channel.send(sid, r)
                self.store.defer(transcript.outbound_commands(self.store, sid, r, wamid=wamid, ts=self.clock(),
                                                              version=None, index=None))
                if self.metrics is not None:
                    self.metrics.sent()
            except (ChannelError, OSError) as exc:
                self.stats["send_failures"] += 1
                if self.metrics is not None:
                    self.metrics.send_failed()
                log.warning("reply send failed; left in the outbox for recovery", extra={"session_id": sid, **error_fields(exc)})
                return False
        return True

    def deliver(self, sid: str, version: int, replies: list[Reply], *, resend: bool = False, route: bool = True) -> bool:
        """Send an outbox entry's replies in order (see runtime/sender.py); True if the entry
        is done with (all accepted, or a permanent failure recorded on the session).

        ``resend`` (recovery): skip the replies Graph accepted before. Blocking, so no queue:
        the caller's thread is the order per user."""
        if not replies:
            return True
        if isinstance(self.channel, HeldChannel):
            return False  # --no-send: the entry waits for a process that sends
        done = self.store.sent_replies(sid, version, len(replies)) if resend else {}
        closed = False
        if any(r.template is None for i, r in enumerate(replies) if i not in done):
            closed = self.window_closed(sid, lambda: self.store.last_inbound(sid))
        for i, reply in enumerate(replies):
            if i in done:
                continue
            if closed and reply.template is None:
                self._undeliverable(sid, version, i, "outside_window", route)
                return True
            self.pacer.wait_sync()
            try:
                wamid = self.channel.send(sid, reply)
            except (ChannelError, OSError) as exc:
                self.stats["send_failures"] += 1
                metric(self.metrics, "send_failed")
                kind = classify(exc)
                if kind == "permanent":
                    self._undeliverable(sid, version, i, error_name(exc), route)
                    return True
                if kind == "account":
                    metric(self.metrics, "whatsapp_alert", error_name(exc))
                    log.error("WhatsApp refuses every send from this account; fix it, the replies wait in the outbox",
                              extra={"session_id": sid, "error": str(exc), "alert": "whatsapp_account"})
                else:
                    log.warning("reply send failed; left in the outbox for recovery",
                                extra={"session_id": sid, "error": str(exc)})
                return False
            metric(self.metrics, "sent")
            out = transcript.outbound_commands(self.store, sid, reply, wamid=wamid, ts=self.clock(), version=version,
                                               index=i)
            self.store.defer((delivery.sent_commands(sid, version, i, wamid, where=self.places.get(sid, version))
                              if wamid else []) + out)
        return True

    def _undeliverable(self, sid: str, version: int, index: int, error: str, route: bool) -> None:
        metric(self.metrics, "delivery_failed", error)
        log.error("reply not delivered", extra={"session_id": sid, "version": version, "index": index,
                                                "error_code": error})
        self.record_undeliverable(sid, version, index, error, route=route)

    def record_undeliverable(self, sid: str, version: int, index: int, error: str, wamid: str | None = None, *,
                             route: bool = True) -> Outcome | None:
        """Record a reply that could not be delivered on its session (a ``delivery_failed``
        history record; the flow's ``on_undeliverable`` may route it)."""
        try:
            return self.handle(sid, undeliverable_event(version, index, error, wamid, route=route))
        except FlowkitError as exc:
            log.error("delivery failure not recorded", extra={"session_id": sid, "error": str(exc)})
            return None

    def run_effects(self, sid: str, version: int, effects: Iterable[Any], *, actor: str = "runtime",
                    route: bool = True, inbound: str | None = None) -> None:
        """Send replies, run service calls and feed back their results, then acknowledge the outbox.

        The outbox entry is acknowledged last, so a crash anywhere in between leaves it for
        :meth:`recover`: replies are at-least-once, service calls are retried with the same
        idempotency key, and a result already applied is recognised as stale by the engine.
        """
        effects = list(effects)
        sent = self.deliver(sid, version, [e for e in effects if isinstance(e, Reply)], route=route)
        seen = getattr(self.channel, "seen", None)
        if inbound and seen is not None:  # read receipt, "typing…" while the calls below run
            seen(inbound, working=self.run_services and any(isinstance(e, CallService) for e in effects))
        if self.run_services:
            for call in (e for e in effects if isinstance(e, CallService)):
                self._call_and_feed(sid, call, actor)
        elif any(isinstance(e, CallService) for e in effects):
            return  # someone else runs the calls; recovery finds the entry if nobody does
        if sent:
            self.store.ack_effects(sid, version, defer=True)  # rides on the next round trip

    def _call_and_feed(self, sid: str, call: CallService, actor: str = "runtime") -> None:
        t0 = time.perf_counter()
        self.calls_in_flight.add(call.call_id)
        try:
            result = self.services.call(call)
        finally:
            self.calls_in_flight.discard(call.call_id)
        if self.metrics is not None:
            self.metrics.service_called(call.service, result.ok, time.perf_counter() - t0)
        self.handle(sid, dataclasses.replace(result, actor=actor))

    def fire_due_timeouts(self, now: int | None = None, limit: int = 500) -> int:
        """Fire the timeouts that are due (from the Redis index). Returns how many changed a session."""
        now = self.clock() if now is None else now
        fired = 0
        for sid in self.store.due_timeouts(now, limit):
            try:
                if self._resume_cut_short_call(sid):
                    fired += 1
                    continue
                out = self.handle(sid, Timeout())
            except FlowkitError as exc:
                log.error("timeout failed", extra={"session_id": sid, **error_fields(exc)})
                continue
            if out.status == "noop":
                self._reschedule(sid)
            else:
                fired += 1
        return fired

    def _resume_cut_short_call(self, sid: str) -> bool:
        """Re-run (same idempotency key) a call a crash cut short, instead of failing its step
        on the timeout: the call's own timeout still bounds it, and a late result is applied."""
        raw = self.store.load(sid)
        call = self.cut_short_call(raw, self.store.pending_effects(sid) if raw and raw.get("pending") else {})
        if call is None:
            return False
        log.warning("resuming a service call cut short before its deadline",
                    extra={"session_id": sid, "service": call.service, "call_id": call.call_id})
        self.store.set_timeout(sid, self.clock() + resume_grace_ms(call))  # no process fails it meanwhile
        self._call_and_feed(sid, call, "recovery")
        if self.metrics is not None:
            self.metrics.recovered("call", 1)
        return True

    def _reschedule(self, sid: str) -> None:
        raw = self.store.load(sid)
        state = State.from_dict(raw) if raw else None
        self.store.set_timeout(sid, _next_due(state, self.registry))

    def redeliver_outbox(self, older_than_ms: int = 30_000, limit: int = 500) -> tuple[int, int, int]:
        """Finish the effects of commits whose outbox entry was never acknowledged (a crash, a
        failed send, a call cut short). Returns (entries redelivered, calls resumed, superseded).

        Replies are re-sent only if the session has not moved on since (a later commit means
        the user already got newer messages; an old question out of context helps nobody).
        A call is re-run only if the session still waits for that very call id.
        """
        redelivered = resumed = superseded = 0
        self.store.flush()  # this process's deferred (or in-flight) acknowledgements are not lost effects
        for sid, version, effects in self.store.unacked_effects(older_than_ms=older_than_ms, limit=limit):
            raw = self.store.load(sid)
            current = raw["version"] if raw else None
            decoded = [effect_from_dict(e) for e in effects]
            waiting = ((raw or {}).get("pending") or {}).get("call_id")
            calls = [e for e in decoded if isinstance(e, CallService) and e.call_id == waiting]
            if current != version and not calls:
                superseded += 1
                log.info("outbox entry superseded by a later commit", extra={"session_id": sid, "version": version,
                                                                              "current": current})
                self.store.ack_effects(sid, version)
                continue
            if current == version and not self.deliver(sid, version, [e for e in decoded if isinstance(e, Reply)],
                                                       resend=True):
                continue  # still failing: try again next round
            for call in calls if self.run_services else ():
                self._call_and_feed(sid, call, "recovery")
                resumed += 1
            self.store.ack_effects(sid, version)
            redelivered += 1
        if self.metrics is not None:
            self.metrics.recovered("outbox", redelivered)
            self.metrics.recovered("call", resumed)
        return redelivered, resumed, superseded

    def recover(self, *, now: int | None = None, outbox_age_ms: int = 30_000, expire_grace_ms: int = 60_000,
                scan: bool = False, limit: int = 1000, redeliver: bool = True) -> RecoveryReport:
        """One round of repairs; each is a normal commit (actor ``recovery``) or a re-send.

        - due timeouts (sessions waiting on input or a service past their deadline);
        - unacknowledged outbox entries (unsent replies, calls cut short by a crash), unless ``redeliver`` is False;
        - sessions idle past their flow's timeout that the timeout index missed (``expire``);
        - with ``scan``: every session is loaded, so corrupt states are quarantined and restored.
        """
        now = self.clock() if now is None else now
        # The outbox first: a call cut short by a crash is re-run with its idempotency key
        # before its step's timeout could fail the session (fire_due_timeouts also resumes
        # calls whose outbox entry is younger than outbox_age_ms). redeliver=False: this
        # process cannot send (--no-send); the entries wait for one that can.
        redelivered, resumed, superseded = self.redeliver_outbox(outbox_age_ms, limit) if redeliver else (0, 0, 0)
        fired = self.fire_due_timeouts(now, limit)
        timeouts = {f.name: int(f.timeout * 1000) + expire_grace_ms for f in self.registry.flows() if f.timeout}
        expired = self.store.expire_idle(now, flow_timeouts=timeouts, limit=limit) if timeouts else []
        before = self.store.quarantine_count()
        scanned = 0
        if scan:
            for sid in self.store.iter_session_ids():
                self.store.load(sid)
                scanned += 1
        repaired = self.store.quarantine_count() - before
        if self.metrics is not None:
            self.metrics.recovered("timeout", fired)
            self.metrics.recovered("expire", len(expired))
            self.metrics.recovered("quarantine", repaired)
        report = RecoveryReport(fired, redelivered, resumed, superseded, len(expired), repaired, scanned)
        # a worker runs a round a second: quiet rounds only at DEBUG, repairs at INFO
        (log.info if any(v for k, v in report.to_dict().items() if k != "scanned") else log.debug)(
            "recovery round", extra=report.to_dict())
        return report


@dataclass(frozen=True)
class RecoveryReport:
    """What one :meth:`Runtime.recover` round repaired."""

    timeouts_fired: int
    outbox_redelivered: int
    calls_resumed: int
    outbox_superseded: int
    expired: int
    quarantined_restored: int
    scanned: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- async


class AsyncRuntime(_handoff.AsyncAgentActions, _Core):
    """The Flow Handler on asyncio (``store`` is an :class:`flowkit.store.AsyncStore`)."""

    def __init__(self, store: Any, flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], *,
                 channel: AsyncChannel | None = None, services: ServiceRegistry | None = None,
                 default_flow: str | None = None, clock: Callable[[], int] | None = None,
                 max_conflicts: int = 32, cache_size: int = 10_000, rng: random.Random | None = None,
                 run_services: bool = True, metrics: Any = None, background: bool = False,
                 rate: float = 80.0) -> None:
        super().__init__(store, flows, services=services, default_flow=default_flow, clock=clock,
                         max_conflicts=max_conflicts, cache_size=cache_size, rng=rng, metrics=metrics)
        from flowkit.runtime.channel import AsyncRecordingChannel

        self.channel: AsyncChannel = channel or AsyncRecordingChannel()
        self.run_services = run_services
        self._tasks: set[asyncio.Task[Any]] = set()
        # background=True: replies leave through a queue per user after handle() returns, so a
        # slow or rate-limited Graph API never holds the webhook's answer (runtime/sender.py)
        self.outbox: OutboxSender | None = OutboxSender(self, rate=rate) if background else None
        self.drain_timeout = 10.0

    async def _drive(self, gen: Generator[Any, Any, Outcome]) -> Outcome:
        reply: Any = None
        try:
            while True:
                op = gen.send(reply)
                if isinstance(op, _Load):
                    reply = (None if op.fresh else self.cached_state(op.session_id)) or await self.store.load(op.session_id)
                elif isinstance(op, _Commit):
                    args, kwargs = self.commit_args(op)
                    self.forget(op.session_id)  # until the outcome is known, the cached state may be stale
                    reply = await self.store.commit(*args, **kwargs)
                elif isinstance(op, _resolve.Resolve):  # the async store on a miss: never a sync client here
                    reply = await _resolve.answer_async(self.registry, self.store, op.wants)
                elif isinstance(op, _Sleep):
                    await asyncio.sleep(op.seconds)
                    reply = None
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

    async def handle(self, session_id: str, event: Event, *, wait_services: bool = True) -> Outcome:
        started = time.perf_counter()
        writes = self.inbound_writes(session_id, event)
        if writes:
            await self.store.defer(writes)
        outcome = await self._drive(self.process(session_id, event))
        if outcome.status == "unrouted" and isinstance(event, Message) and event.message_id:
            outcome = _as_duplicate(outcome, await self.store.seen(session_id, event.message_id))
            if outcome.status == "unrouted" and not await unrouted.aclaim(self.store.client, session_id,
                                                                            event.message_id):
                outcome = Outcome(session_id, "duplicate", outcome.version)  # already answered once
        self.count(outcome, started, event)
        if tx_in := self.transcript_in(session_id, event, outcome):
            await self.store.defer(tx_in)
        if outcome.status == "unrouted":
            if self.outbox is not None:
                self.outbox.submit(session_id, 0, list(outcome.replies), ack=False, record=False)
            elif not await self._send(session_id, outcome.replies) and isinstance(event, Message) and event.message_id:
                await unrouted.arelease(self.store.client, session_id, event.message_id)
        elif outcome.status == "applied":
            self.places.note(session_id, outcome.version, outcome.flow, outcome.record)
            await self.run_effects(session_id, outcome.version or 0, outcome.effects, wait_services=wait_services,
                                   route=_routes(outcome), inbound=_inbound(event))
            await _handoff.after_async(self.store.client, outcome, self.metrics)
        return outcome

    async def delivery_status(self, status: StatusUpdate) -> str | None:
        """Match a WhatsApp status (a ``StatusUpdate``) to the session and reply it is about.

        Every status joins the session's bounded delivery list (for transcripts); a
        ``failed`` one also becomes a ``delivery_failed`` history record (the flow's
        ``on_undeliverable`` may route it). Returns the session id, or None for a message
        flowkit did not send (or whose mapping expired after 30 days)."""
        found: delivery.SentMessage | None = await self.store.lookup_sent(status.message_id)
        if found is None:
            return None
        sid, version, index = found.session_id, found.version, found.index
        if found.flow is not None and found.step is not None:
            metric(self.metrics, "delivery_step", found.flow, found.step, status.status)
        code = next((e.code for e in status.errors if e.code is not None), None)
        entry: dict[str, Any] = {"wamid": status.message_id, "status": status.status, "ts": status.timestamp * 1000,
                                 "version": version, "index": index}
        if code is not None:
            entry["error"] = f"whatsapp:{code}"
        await self.store.defer(delivery.status_commands(sid, entry))
        if status.status == "failed":
            error = f"whatsapp:{code}" if code is not None else "whatsapp:failed"
            out = await self.record_undeliverable(sid, version, index, error, wamid=status.message_id)
            if out is not None and out.status == "applied":  # a redelivered status is a duplicate
                metric(self.metrics, "delivery_failed", error)
                log.warning("WhatsApp could not deliver a reply", extra={"session_id": sid, "version": version,
                                                                         "index": index, "error_code": error})
        return sid

    async def record_undeliverable(self, sid: str, version: int, index: int, error: str, wamid: str | None = None, *,
                                   route: bool = True) -> Outcome | None:
        """See :meth:`Runtime.record_undeliverable`."""
        try:
            return await self.handle(sid, undeliverable_event(version, index, error, wamid, route=route),
                                     wait_services=False)
        except FlowkitError as exc:
            log.error("delivery failure not recorded", extra={"session_id": sid, "error": str(exc)})
            return None

    handle_message = handle

    async def _send(self, sid: str, replies: Iterable[Reply], version: int | None = None) -> bool:
        for i, r in enumerate(replies):
            try:
                wamid = await self.channel.send(sid, r)
                await self.store.defer(transcript.outbound_commands(
                    self.store, sid, r, wamid=wamid, ts=self.clock(), version=version,
                    index=None if version is None else i))
                if self.metrics is not None:
                    self.metrics.sent()
            except (ChannelError, OSError) as exc:
                self.stats["send_failures"] += 1
                if self.metrics is not None:
                    self.metrics.send_failed()
                log.warning("reply send failed; left in the outbox for recovery", extra={"session_id": sid, **error_fields(exc)})
                return False
        return True

    async def run_effects(self, sid: str, version: int, effects: Iterable[Any], *, wait_services: bool = True,
                          route: bool = True, inbound: str | None = None) -> None:
        """Send replies, run calls and feed back results, then acknowledge the outbox (see Runtime.run_effects)."""
        effects = list(effects)
        replies = [e for e in effects if isinstance(e, Reply)]
        has_calls = any(isinstance(e, CallService) for e in effects)
        seen = getattr(self.channel, "seen", None)
        sent: bool | asyncio.Future[SendResult]
        if self.outbox is not None:
            # the sender acknowledges the entry itself unless calls must finish first
            owns_ack = not has_calls
            if replies:
                sent = self.outbox.submit(sid, version, replies, ack=owns_ack, route=route)
            else:
                sent = True
            if inbound and seen is not None:  # read receipt, "typing…" while the calls run
                await seen(inbound, working=self.run_services and has_calls)
            if owns_ack:
                if not replies and not has_calls:
                    await self.store.ack_effects(sid, version, defer=True)
                return
        else:
            sent = await self._send(sid, replies, version)
            if inbound and seen is not None:
                await seen(inbound, working=self.run_services and has_calls)
        calls = [e for e in effects if isinstance(e, CallService)] if self.run_services else []
        if not self.run_services and any(isinstance(e, CallService) for e in effects):
            return
        if not calls:
            if sent:
                await self.store.ack_effects(sid, version, defer=True)  # rides on the next round trip
            return
        job = self._calls_then_ack(sid, version, calls, sent)
        if wait_services:
            await job
        else:  # a webhook answers WhatsApp at once; the calls finish in the background
            task = asyncio.create_task(job)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _calls_then_ack(self, sid: str, version: int, calls: list[CallService],
                              sent: bool | asyncio.Future[SendResult]) -> None:
        for call in calls:
            t0 = time.perf_counter()
            self.calls_in_flight.add(call.call_id)
            try:
                result = await self.services.acall(call)
            finally:
                self.calls_in_flight.discard(call.call_id)
            if self.metrics is not None:
                self.metrics.service_called(call.service, result.ok, time.perf_counter() - t0)
            await self.handle(sid, result)
        if isinstance(sent, asyncio.Future):
            sent = await sent != "left"
        if sent:
            await self.store.ack_effects(sid, version, defer=True)

    async def drain(self) -> None:
        """Wait for background service calls and send deferred acknowledgements (tests and
        graceful shutdown)."""
        while self._tasks or (self.outbox is not None and self.outbox.backlog):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if self.outbox is not None:
                # bounded: on shutdown with Graph down, what is unsent stays in the outbox
                await self.outbox.close(self.drain_timeout)
        await self.store.flush()

    async def fire_due_timeouts(self, now: int | None = None, limit: int = 500) -> int:
        now = self.clock() if now is None else now
        fired = 0
        for sid in await self.store.due_timeouts(now, limit):
            try:
                raw = await self.store.load(sid)
                call = self.cut_short_call(raw, await self.store.pending_effects(sid) if raw and raw.get("pending") else {})
                if call is not None:  # see Runtime._resume_cut_short_call
                    log.warning("resuming a service call cut short before its deadline",
                                extra={"session_id": sid, "service": call.service, "call_id": call.call_id})
                    await self.store.set_timeout(sid, self.clock() + resume_grace_ms(call))
                    self.calls_in_flight.add(call.call_id)
                    task = asyncio.create_task(self._calls_then_ack(sid, -1, [call], False))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    fired += 1
                    continue
                out = await self.handle(sid, Timeout())
            except FlowkitError as exc:
                log.error("timeout failed", extra={"session_id": sid, **error_fields(exc)})
                continue
            if out.status == "noop":
                raw = await self.store.load(sid)
                await self.store.set_timeout(sid, _next_due(State.from_dict(raw) if raw else None, self.registry))
            else:
                fired += 1
        return fired


def _routes(outcome: Outcome) -> bool:
    """May a failure of this outcome's replies follow on_undeliverable? Not if they answer a failure."""
    return (outcome.record or {}).get("event") != "delivery_failed"


def resume_grace_ms(call: CallService) -> int:
    """How long the timeout index waits for a resumed call: its own timeout plus a margin."""
    return int(call.timeout * 1000) + 5_000


def _as_duplicate(outcome: Outcome, seen_version: int | None) -> Outcome:
    return outcome if not seen_version else Outcome(outcome.session_id, "duplicate", seen_version)


def _next_due(state: State | None, registry: FlowRegistry) -> int | None:
    """When a session should next wake up (None: never), recomputed from its state."""
    if state is None or state.terminal:
        return None
    try:
        flow = registry.get(state.flow, state.flow_version)
    except UnknownFlowError:
        deadline = (state.pending or {}).get("deadline")
        return int(deadline) if deadline is not None else None
    return schedule(state.pending, flow, state.updated_at).at or None  # (the engine's rule)


__all__ = ["AsyncRuntime", "Outcome", "RecoveryReport", "Runtime"]
