"""The runtime's sans-io core (:class:`_Core`): routing, the state cache and the CAS retry loop,
shared by :class:`~flowkit.runtime.Runtime` and :class:`~flowkit.runtime.AsyncRuntime`.

:meth:`_Core.process` handles one event as a generator that *describes* the I/O it needs
(:data:`flowkit.types.Request`: load, resolve flows, commit, sleep) and gets the answers
sent back in; the sync and async drivers (runtime/sync_runtime.py, runtime/async_runtime.py)
answer with blocking calls or awaits, so the loop that must be right exists once.

No lock anywhere: two messages for one user race, one commit wins, the other gets
``conflict`` and simply reruns the engine on the fresh state. A redelivered message gets
``duplicate`` from the same commit script and changes nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flowkit.engine import (
    CallService,
    Command,
    Event,
    Reply,
    Start,
    State,
    Transition,
    UserMessage,
    effect_from_dict,
    fail,
    step,
)
from flowkit.engine.flowset import FlowSet, Want, pinned
from flowkit.engine.transition import schedule
from flowkit.errors import (
    ConflictError,
    EngineError,
    FlowNeeded,
    UnknownFlowError,
)
from flowkit.flow.model import Flow
from flowkit.log import error_fields, get_logger
from flowkit.runtime import resolve as _resolve
from flowkit.runtime import transcript
from flowkit.runtime.outcome import Outcome
from flowkit.runtime.places import SentPlaces
from flowkit.runtime.registry import FlowRegistry
from flowkit.runtime.sender import outside_window
from flowkit.runtime.services import ServiceRegistry
from flowkit.store import delivery
from flowkit.store.values import CommitResult
from flowkit.types import (
    Commit,
    FlowAnswer,
    JSONDict,
    Load,
    MetricsSink,
    Request,
    RequestAnswer,
    Resolve,
    Sleep,
)

if TYPE_CHECKING:
    from flowkit.channels.whatsapp.numbers import Numbers
    from flowkit.store.driver import Batch
    from flowkit.types import FlowSourceProtocol

log = get_logger("flowkit.runtime")

_ADMIN = frozenset({"migrate", "rollback", "reset", "recover",
                    "handoff", "agent_reply", "release"})  # an agent's mistake is the agent's (runtime/handoff.py)

_MAX_RESOLVES = 64  # sub-flows one step may newly enter before it is called a loop

#: The store a runtime drives: :class:`~flowkit.types.StoreProtocol` or the async one.
StoreT = TypeVar("StoreT", bound="transcript.TranscriptStore")


@dataclass(frozen=True)
class CommitCall:
    """A :class:`~flowkit.types.Commit` request as the store's ``commit`` arguments."""

    session_id: str
    expected: int
    state: JSONDict
    record: JSONDict
    previous: JSONDict | None
    message_id: str | None
    effects: list[JSONDict]
    timeout_at_ms: int | None


def unrouted_text(registry: FlowSourceProtocol, only: Collection[str] | None = None) -> str:
    """What a message that starts no flow gets back: the first trigger of each flow this
    number runs (``only``: its flows; None: every flow)."""
    triggers = [f.triggers[0] for f in registry.flows() if f.triggers and (only is None or f.name in only)]
    if not triggers:
        return "Hi! I can't help with that here."
    return "Hi! I can help with: " + ", ".join(triggers) + ". Send one of these words to start."


class _Core(Generic[StoreT]):
    """Routing and the CAS loop, shared by the sync and async runtimes."""

    #: May a registry lookup refresh from Redis by itself? Only with a blocking client to
    #: spare: the async runtime refreshes through its async store (AsyncRuntime.handle).
    refresh_in_lookups: bool = True

    def __init__(self, store: StoreT, flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], *,
                 services: ServiceRegistry | None, default_flow: str | None, clock: Callable[[], int] | None,
                 max_conflicts: int, cache_size: int, rng: random.Random | None,
                 metrics: MetricsSink | None = None) -> None:
        self.store: StoreT = store
        self.metrics: MetricsSink | None = metrics
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
        self.numbers: Numbers | None = None  # several WhatsApp numbers, each with its flows (serve sets it)

    def allowed_flows(self, sid: str | None) -> frozenset[str] | None:
        """The flows session ``sid`` may start: its number's (the numbers file); None: every flow."""
        return self.numbers.flows_for(sid) if self.numbers is not None and sid is not None else None

    # -- state cache: the last state this process committed, so the happy path needs no load.
    # It keeps the engine's own State object: the engine trusts a state it validated itself
    # and checks only what the next answer changes (engine/plan.py).

    def cached_state(self, sid: str) -> State | None:
        s = self._cache.get(sid)
        if s is not None:
            self._cache.move_to_end(sid)
        return s

    def cached(self, sid: str) -> JSONDict | None:
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

    def unsent(self, sid: str, exc: BaseException) -> None:
        """A reply that could not be sent stays in the outbox for recovery: count and log it."""
        self.stats["send_failures"] += 1
        if self.metrics is not None:
            self.metrics.send_failed()
        log.warning("reply send failed; left in the outbox for recovery", extra={"session_id": sid, **error_fields(exc)})

    def forget(self, sid: str) -> None:
        self._cache.pop(sid, None)

    # -- routing

    def route(self, state: State | None, event: Event, sid: str | None = None) -> Event | None:
        """Which event a message becomes: an answer in the active flow, a start (of a flow the
        session's number runs), or nothing."""
        if not isinstance(event, UserMessage):
            return event
        if state is not None and not state.terminal:
            return event
        text = event.text or ""
        only = self.allowed_flows(sid)
        flow = self.registry.match_trigger(text, only, refresh=self.refresh_in_lookups) if text else None
        # restart and the default flow need only a name: the flow itself is resolved by the
        # driver (``_resolve.Resolve``), which says UnknownFlowError if there is none
        name = flow.name if flow is not None else None
        if name is None and state is not None and text.strip().lower() in ("restart",) and (
                only is None or state.flow in only):
            name = state.flow
        if name is None and self.default_flow and (only is None or self.default_flow in only):
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

    def process(self, sid: str, event: Event) -> Generator[Request, RequestAnswer, Outcome]:
        conflicts = 0
        fresh = False
        known: JSONDict | None = None  # the state a conflict reply brought back
        while True:
            state, raw = _decoded(known if known is not None else _loaded((yield Load(sid, fresh))))
            known = None
            if isinstance(event, UserMessage) and event.type == "welcome" and state is not None and not state.terminal:
                # WhatsApp's request_welcome (the chat was opened) greets a newcomer; it never
                # answers or interrupts a live session. Decided on the stored state, not a cached one.
                if not fresh:
                    fresh = True
                    continue
                return Outcome(sid, "noop", state.version, conflicts=conflicts)
            routed = self.route(state, event, sid)
            if routed is None:
                return Outcome(sid, "unrouted", state.version if state else None,
                               replies=(Reply(text=unrouted_text(self.registry, self.allowed_flows(sid))),))
            t = yield from self._resolving_step(sid, state, routed)
            if not t.changed:
                if not fresh and state is not None:
                    # Decided on a cached state: make sure it is the stored one (a commit whose
                    # answer was lost, e.g. Redis died mid-reply, may have moved the session on).
                    fresh = True
                    continue
                return Outcome(sid, "noop", state.version if state else None, conflicts=conflicts,
                               flow=state.flow if state else None, flow_version=state.flow_version if state else None)
            message_id = getattr(routed, "message_id", None)
            result = _committed((yield Commit(sid, state.version if state else 0, t, raw, message_id)))
            if result.outcome == "ok":
                self.remember(sid, t.state)
                assert t.record is not None
                return Outcome(sid, "applied", result.version, t.state.flow, t.record.to_dict(),
                               tuple(e for e in t.effects if isinstance(e, Reply)), conflicts, t.record.error, t.effects,
                               flow_version=t.state.flow_version)
            if result.outcome == "duplicate":
                return Outcome(sid, "duplicate", result.version, conflicts=conflicts)
            conflicts += 1
            self._count_conflict(sid, conflicts)
            fresh = True
            known = result.current  # usually there: no reload round trip
            yield Sleep(self.rng.uniform(0, min(0.05, 0.001 * 2 ** conflicts)))

    def _count_conflict(self, sid: str, conflicts: int) -> None:
        """Another writer won the commit: count it, drop the stale cache, give up after too many."""
        self.stats["conflicts"] += 1
        if self.metrics is not None:
            self.metrics.conflict()
        self.forget(sid)
        if conflicts > self.max_conflicts:
            raise ConflictError(
                f"session {sid!r}: {conflicts} commit conflicts in a row; another writer keeps winning. "
                "The message was not applied; WhatsApp will redeliver it"
            )

    def _resolving_step(self, sid: str, state: State | None,
                        routed: Event) -> Generator[Request, RequestAnswer, Transition]:
        """The engine's step, with the flows it needs resolved first (a ``Resolve`` request for
        the root and the pinned sub-flows, one more per sub-flow nobody predicted)."""
        now = self.clock()
        wants = (self.root_want(state, routed), *pinned(state))
        answers = _resolved((yield Resolve(wants)))
        root = _resolve.root_of(wants[0], answers[0])
        flows = _resolve.extend(FlowSet(), wants[1:], answers[1:])
        for _ in range(_MAX_RESOLVES):
            try:
                return self.transition(sid, state, routed, now, root, flows)
            except FlowNeeded as need:  # a sub-flow nobody predicted: resolve it, step again (pure)
                want = (need.name, need.version)
                flows = _resolve.extend(flows, (want,), _resolved((yield Resolve((want,)))))
        raise EngineError(f"session {sid!r}: the step needed more than {_MAX_RESOLVES} flows; "
                          "a flow calls sub-flows too deeply, check its `flow:` steps")

    def transcript_in(self, sid: str, event: Event, outcome: Outcome) -> Batch:
        """The deferred transcript write of a handled user message (flowkit/runtime/transcript.py)."""
        return transcript.inbound_commands(self.store, sid, event, outcome.status, outcome.version, outcome.record,
                                           self.clock())

    def window_ms(self) -> int | None:
        """The channel's customer-service window (None: the channel has none, e.g. in tests)."""
        return getattr(getattr(self, "channel", None), "window_ms", None)

    def inbound_writes(self, sid: str, event: Event) -> Batch | None:
        """A user's message opens the 24-hour window: a deferred write, riding on the commit."""
        window = self.window_ms()
        if not window or not isinstance(event, UserMessage) or event.actor != "runtime":
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

    def commit_call(self, op: Commit) -> CommitCall:
        t = op.transition
        assert t.record is not None
        effects = [e.to_dict() for e in t.effects if isinstance(e, (Reply, CallService))]
        timeout_at = next((e.at for e in t.effects if e.kind == "schedule" and e.at), None)
        return CommitCall(op.session_id, op.expected, t.state.to_dict(), t.record.to_dict(), op.previous,
                          op.message_id, effects, timeout_at)

    def count(self, outcome: Outcome, started: float, event: Event | None = None) -> None:
        self.stats[outcome.status] += 1
        if self.metrics is not None:
            self.metrics.handled(outcome.status, time.perf_counter() - started)
            if outcome.status == "applied" and outcome.record is not None:
                self.metrics.applied(outcome.flow or "", outcome.record, len(outcome.replies))
        if not log.isEnabledFor(logging.INFO):
            return  # (the line's fields cost ~2 µs to gather: not for a log that drops them)
        log.info(
            "event handled",
            extra={"session_id": outcome.session_id, "flow": outcome.flow, "flow_version": outcome.flow_version,
                   "outcome": outcome.status, "version": outcome.version,
                   "message_id": (outcome.record or {}).get("message_id") or getattr(event, "message_id", None),
                   "event": (outcome.record or {}).get("event") or (type(event).__name__.lower() if event else None),
                   "step": (outcome.record or {}).get("to_step"), "conflicts": outcome.conflicts,
                   "error": outcome.error, "latency_ms": round((time.perf_counter() - started) * 1000, 3)},
        )


# The answer a driver sends back for each request (flowkit.types.RequestAnswer), narrowed:
# a mismatch is a bug in a driver, said at once instead of as an AttributeError later.

def _loaded(got: RequestAnswer) -> State | JSONDict | None:
    if got is None or isinstance(got, (State, dict)):
        return got
    raise TypeError(f"a Load request was answered with {type(got).__name__}; a runtime driver is broken")


def _decoded(got: State | JSONDict | None) -> tuple[State | None, JSONDict | None]:
    """The loaded state as the engine's State and as its JSON form (the commit's ``previous``)."""
    if isinstance(got, State):  # from this process's cache
        return got, got.to_dict()
    return (State.from_dict(got) if got else None), got


def _resolved(got: RequestAnswer) -> tuple[FlowAnswer, ...]:
    if isinstance(got, tuple):
        return got
    raise TypeError(f"a Resolve request was answered with {type(got).__name__}; a runtime driver is broken")


def _committed(got: RequestAnswer) -> CommitResult:
    if isinstance(got, CommitResult):
        return got
    raise TypeError(f"a Commit request was answered with {type(got).__name__}; a runtime driver is broken")


def next_due(state: State | None, registry: FlowSourceProtocol) -> int | None:
    """When a session should next wake up (None: never), recomputed from its state.

    Reads the flow through ``registry.get``: a sync path only (the async runtime resolves
    the flow first and calls :func:`next_due_of`)."""
    if state is None or state.terminal:
        return None
    try:
        flow = registry.get(state.flow, state.flow_version)
    except UnknownFlowError:
        flow = None
    return next_due_of(state, flow)


def next_due_of(state: State | None, flow: Flow | None) -> int | None:
    """:func:`next_due` with the session's flow already looked up (None: not known anywhere)."""
    if state is None or state.terminal:
        return None
    if flow is None:
        deadline = (state.pending or {}).get("deadline")
        return int(deadline) if deadline is not None else None
    return schedule(state.pending, flow, state.updated_at).at or None  # (the engine's rule)
