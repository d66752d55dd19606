"""Drive simulated users through the real runtime on a real Redis.

Virtual-clock mode (the default) runs days of traffic in seconds: events sit in a heap
ordered by virtual time, the runtime's clock reads the time of the event being handled,
and timeouts fire from the store's index at virtual time. Each user has its own seeded
random generator, so the same seed gives the same histories whatever the concurrency.

Hostile traffic is opt-in: duplicated deliveries (processed concurrently, as WhatsApp's
retries can be), out-of-order pairs, runtime crashes between commit and effects (the
message is then redelivered and the outbox repaired by recovery), and Redis restarts.
Everything the simulator sent is kept in :attr:`SimResult.sent` for ``flowkit check``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkit.engine import CallService, Message, ServiceResult, State, Timeout
from flowkit.engine.locate import locate
from flowkit.errors import FlowkitError, StoreUnavailable
from flowkit.flow.model import AskStep, CallStep, Flow
from flowkit.runtime import Outcome, RecordingChannel, Runtime
from flowkit.sim.answers import invalid_answer, service_value, valid_answer

SIM_EPOCH_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z: a fixed start so runs are reproducible


@dataclass(frozen=True)
class Persona:
    """How one kind of user behaves. Rates are per ask step."""

    name: str = "typical"
    weight: float = 1.0
    invalid_rate: float = 0.1
    abandon_rate: float = 0.03
    think_time: float = 20.0  # mean seconds between a question and the answer (exponential)
    back_rate: float = 0.01
    cancel_rate: float = 0.005
    help_rate: float = 0.01


@dataclass(frozen=True)
class ServiceBehaviour:
    """Outcomes of a simulated service: errors, slow answers (after latency x 5) and timeouts (no answer)."""

    error_rate: float = 0.05
    slow_rate: float = 0.05
    timeout_rate: float = 0.02
    latency: float = 0.3  # seconds


@dataclass(frozen=True)
class SimConfig:
    users: int = 100
    concurrency: int = 4
    seed: int = 0
    flows: Sequence[str] | None = None  # which flows users start (default: every flow with a trigger)
    personas: Sequence[Persona] = (Persona(),)
    services: Mapping[str, ServiceBehaviour] = field(default_factory=dict)
    default_service: ServiceBehaviour = ServiceBehaviour()
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    crash_rate: float = 0.0
    redis_restart_every: int = 0  # restart Redis after every N events (0: never)
    arrival_seconds: float = 600.0  # users start spread over this many (virtual) seconds
    realtime: bool = False
    speed: float = 1.0  # realtime only: virtual seconds per real second
    start_ms: int = SIM_EPOCH_MS


@dataclass(frozen=True)
class Sent:
    """One delivery the simulator made (a duplicate is a second Sent with the same message_id)."""

    session_id: str
    message_id: str
    ts: int
    text: str | None
    acked: bool
    outcome: str


@dataclass
class SimResult:
    users: int = 0
    started: int = 0
    completed: int = 0
    abandoned: int = 0
    failed: int = 0
    other_end: int = 0
    messages: int = 0
    duplicates_sent: int = 0
    duplicates_absorbed: int = 0
    conflicts: int = 0
    crashes: int = 0
    redis_restarts: int = 0
    unavailable: int = 0
    timeouts_fired: int = 0
    service_calls: int = 0
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    sent: list[Sent] = field(default_factory=list, repr=False)

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "sent"}
        d["messages_per_second"] = round(self.messages_per_second, 1)
        return d

    def write_log(self, path: str | Path) -> Path:
        """The sent-message log as JSON lines (what ``flowkit check --sent`` reads)."""
        p = Path(path)
        with p.open("w", encoding="utf-8") as f:
            for s in self.sent:
                f.write(json.dumps(asdict(s)) + "\n")
        return p


@dataclass
class _User:
    index: int
    session_id: str
    flow: str
    persona: Persona
    rng: random.Random
    seq: int = 0
    done: bool = False
    pending_ids: set[str] = field(default_factory=set)

    def next_id(self) -> str:
        self.seq += 1
        return f"wamid.sim.{self.index}.{self.seq}"


class Simulator:
    """Runs :class:`SimConfig` traffic against ``runtime`` (its store must be a real Redis)."""

    def __init__(self, runtime: Runtime, config: SimConfig, *, restart_redis: Callable[[], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.rt = runtime
        self.cfg = config
        self.restart_redis = restart_redis
        self.progress = progress
        self._local = threading.local()
        self._heap: list[tuple[int, int, str, Any]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self.result = SimResult(users=config.users)
        self.rt.run_services = False  # the simulator answers calls itself, on virtual time
        if not config.realtime:
            self.rt.clock = self._now
        if not isinstance(self.rt.channel, RecordingChannel):
            self.rt.channel = RecordingChannel()
        self._virtual_now = config.start_ms

    # -- clock and queue

    def _now(self) -> int:
        return getattr(self._local, "now", self._virtual_now)

    def _push(self, at: int, kind: str, data: Any) -> None:
        with self._lock:
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, kind, data))

    # -- users

    def _flows(self) -> list[Flow]:
        names = self.cfg.flows or [f.name for f in self.rt.registry.flows() if f.triggers]
        return [self.rt.registry.latest(n) for n in names]

    def _make_users(self) -> list[_User]:
        master = random.Random(self.cfg.seed)
        flows = self._flows()
        if not flows:
            raise FlowkitError("no flow to simulate: give flows with `triggers`, or name them in SimConfig.flows")
        weights = [p.weight for p in self.cfg.personas]
        users = []
        for i in range(self.cfg.users):
            rng = random.Random(master.randrange(2**63))
            persona = rng.choices(list(self.cfg.personas), weights)[0]
            flow = flows[i % len(flows)]
            users.append(_User(i, f"sim{self.cfg.seed}-{i:06d}", flow.name, persona, rng))
        return users

    def _deliver(self, user: _User, msg: Message, at: int) -> None:
        """Schedule a message, with duplicated and reordered deliveries as configured."""
        mid = user.next_id()
        msg = Message(text=msg.text, type=msg.type, reply_id=msg.reply_id, location=msg.location, media=msg.media,
                      message_id=mid, profile={"name": f"User {user.index}", "wa_id": user.session_id}, actor="simulator")
        user.pending_ids.add(mid)
        self._push(at, "msg", (user, msg))
        if self.cfg.duplicate_rate and user.rng.random() < self.cfg.duplicate_rate:
            self.result.duplicates_sent += 1
            self._push(at, "dup", (user, msg))

    def _answer(self, user: _User, state: State, at: int) -> None:
        """Decide what the user does next at an ask step (answer, misbehave, leave)."""
        p = user.persona
        r = user.rng
        if state.step is None:
            return
        flow = self.rt.registry.get(state.flow, state.flow_version)
        _, st = locate(flow, state.step, self.rt.registry, [f["flow_version"] for f in state.stack])
        if not isinstance(st, AskStep):
            return
        if r.random() < p.abandon_rate:
            user.done = True
            self.result.abandoned += 1
            return
        think = int(r.expovariate(1 / max(p.think_time, 0.001)) * 1000) + 500
        roll = r.random()
        if roll < p.cancel_rate:
            msg = Message(text="cancel")
        elif roll < p.cancel_rate + p.back_rate:
            msg = Message(text="back")
        elif roll < p.cancel_rate + p.back_rate + p.help_rate:
            msg = Message(text="help")
        elif r.random() < p.invalid_rate:
            msg = invalid_answer(st, r)
        else:
            slot_flow, _ = locate(flow, state.step, self.rt.registry, [f["flow_version"] for f in state.stack])
            slot = slot_flow.slots.get(st.save) if st.save else None
            msg = valid_answer(st, slot, r, dt.datetime.fromtimestamp(at / 1000, dt.UTC).date())
        self._deliver(user, msg, at + think)
        if self.cfg.out_of_order_rate and r.random() < self.cfg.out_of_order_rate:
            # A second, quick message that can overtake the first one (WhatsApp does not order deliveries).
            self._deliver(user, Message(text=r.choice(["?", "hello?", "help"])), at + think - r.randint(1, 400))

    def _after(self, user: _User, outcome: Outcome, at: int) -> None:
        """React to the new state of a user's session."""
        if outcome.status in ("duplicate", "noop", "unrouted") or outcome.record is None:
            return
        self.result.conflicts += outcome.conflicts
        for eff in outcome.effects:
            if isinstance(eff, CallService):
                self._call(user, eff, at)
        status = outcome.record["status"]
        if status in ("completed", "failed", "cancelled", "handoff", "expired"):
            if not user.done:
                user.done = True
                if status == "completed":
                    self.result.completed += 1
                elif status == "failed":
                    self.result.failed += 1
                else:
                    self.result.other_end += 1
            return
        if status == "waiting_input" and not user.done:
            raw = self.rt.cached(user.session_id) or self.rt.store.load(user.session_id)
            if raw is not None:
                self._answer(user, State.from_dict(raw), at)

    def _call(self, user: _User, call: CallService, at: int) -> None:
        self.result.service_calls += 1
        b = self.cfg.services.get(call.service, self.cfg.default_service)
        r = user.rng
        roll = r.random()
        if roll < b.timeout_rate:
            return  # never answers: the call's timeout fires on virtual time
        latency = int(b.latency * 1000 * (5 if roll < b.timeout_rate + b.slow_rate else 1))
        if r.random() < b.error_rate:
            result = ServiceResult(call_id=call.call_id, ok=False, error="simulated_error", actor="simulator")
        else:
            state_raw = self.rt.cached(user.session_id)
            slot = None
            if state_raw is not None:
                state = State.from_dict(state_raw)
                flow = self.rt.registry.get(state.flow, state.flow_version)
                if state.step:
                    f, st = locate(flow, state.step, self.rt.registry, [fr["flow_version"] for fr in state.stack])
                    if isinstance(st, CallStep) and st.save:
                        slot = f.slots.get(st.save)
            result = ServiceResult(call_id=call.call_id, ok=True, value=service_value(slot, r, call.call_id), actor="simulator")
        self._push(at + latency, "result", (user, result))

    # -- running

    def _handle(self, item: tuple[int, int, str, Any]) -> tuple[tuple[int, int, str, Any], Outcome | None, bool]:
        at, _, kind, data = item
        self._local.now = at
        user, event = data if kind != "tick" else (None, None)
        acked = True
        outcome: Outcome | None = None
        try:
            if kind == "tick":
                return item, None, True
            sid = user.session_id
            if kind in ("msg", "dup") and self.cfg.crash_rate and user.rng.random() < self.cfg.crash_rate:
                # Crash after the commit, before the effects: nothing is acknowledged to WhatsApp.
                self.rt._drive(self.rt.process(sid, event))
                self.rt.forget(sid)
                with self._lock:
                    self.result.crashes += 1
                return item, None, False
            outcome = self.rt.handle(sid, event)
        except StoreUnavailable:
            with self._lock:
                self.result.unavailable += 1
            acked = False
        return item, outcome, acked

    def run(self) -> SimResult:
        cfg = self.cfg
        started = time.perf_counter()
        users = self._make_users()
        spread = int(cfg.arrival_seconds * 1000)
        for u in users:
            at = cfg.start_ms + (u.rng.randrange(spread) if spread else 0)
            flow = self.rt.registry.latest(u.flow)
            self._deliver(u, Message(text=flow.triggers[0] if flow.triggers else flow.name), at)
            self.result.started += 1
        tick = 15_000
        self._push(cfg.start_ms + tick, "tick", None)
        processed = 0
        total_hint = cfg.users * 8
        with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency), thread_name_prefix="flowkit-sim") as pool:
            while self._heap:
                batch = self._next_batch()
                now = batch[0][0]
                if cfg.realtime:
                    delay = (now - self._virtual_now) / 1000 / max(cfg.speed, 1e-6)
                    if delay > 0:
                        time.sleep(min(delay, 5.0))
                self._virtual_now = now
                results = list(pool.map(self._handle, batch)) if len(batch) > 1 else [self._handle(batch[0])]
                for (at, _, kind, data), outcome, acked in results:
                    processed += 1
                    if kind == "tick":
                        self._tick(at, users)
                        continue
                    user, event = data
                    if isinstance(event, Message):
                        self.result.messages += 1
                        self.result.sent.append(Sent(user.session_id, event.message_id or "", at, event.text, acked,
                                                     outcome.status if outcome else "unacked"))
                        if outcome is not None and outcome.status == "duplicate":
                            self.result.duplicates_absorbed += 1
                    if not acked:
                        # WhatsApp redelivers what was not acknowledged, a little later.
                        self._push(at + 2000 + user.rng.randint(0, 3000), "msg" if kind != "result" else "result", data)
                        continue
                    if outcome is not None:
                        self._after(user, outcome, at)
                    elif kind in ("msg", "dup") and outcome is None:
                        pass
                    if kind == "msg" and outcome is not None and outcome.status == "duplicate":
                        self._resume(user, at)
                if cfg.redis_restart_every and self.restart_redis and processed // cfg.redis_restart_every > self.result.redis_restarts:
                    self.restart_redis()
                    self.result.redis_restarts += 1
                if self.progress:
                    self.progress(processed, total_hint)
        self.result.seconds = time.perf_counter() - started
        self.result.virtual_seconds = (self._virtual_now - cfg.start_ms) / 1000
        return self.result

    def _resume(self, user: _User, at: int) -> None:
        """After a redelivered message turned out to be applied already (the crash case),
        repair the outbox and continue from the stored state."""
        self.rt.redeliver_outbox(older_than_ms=0)
        raw = self.rt.store.load(user.session_id)
        if raw is None or user.done:
            return
        state = State.from_dict(raw)
        if state.status == "waiting_input" and not any(k == "msg" and d[0] is user for _, _, k, d in self._heap if d):
            self._answer(user, state, at)

    def _next_batch(self) -> list[tuple[int, int, str, Any]]:
        """Up to ``concurrency`` events, never two different events of one session at once
        (so the per-session order stays deterministic); duplicates do run concurrently."""
        first = heapq.heappop(self._heap)
        batch = [first]
        sessions = {self._key(first)}
        while self._heap and len(batch) < self.cfg.concurrency:
            nxt = self._heap[0]
            key = self._key(nxt)
            if nxt[2] == "tick" or first[2] == "tick":
                break
            if key[0] in {s[0] for s in sessions} and key not in sessions:
                break
            batch.append(heapq.heappop(self._heap))
            sessions.add(key)
        return batch

    @staticmethod
    def _key(item: tuple[int, int, str, Any]) -> tuple[str, str]:
        _, _, kind, data = item
        if kind == "tick":
            return ("", "tick")
        user, event = data
        return (user.session_id, getattr(event, "message_id", None) or getattr(event, "call_id", ""))

    def _tick(self, at: int, users: list[_User]) -> None:
        """Fire due timeouts at virtual time ``at`` and schedule the next tick while anything can still happen."""
        by_sid = {u.session_id: u for u in users}
        for sid in self.rt.store.due_timeouts(at, 1000):
            self._local.now = at
            try:
                out = self.rt.handle(sid, Timeout(actor="simulator"))
            except StoreUnavailable:
                continue
            if out.status == "applied":
                self.result.timeouts_fired += 1
                user = by_sid.get(sid)
                if user is not None:
                    self._after(user, out, at)
        active = any(k != "tick" for _, _, k, _ in self._heap)
        if active:
            self._push(at + 15_000, "tick", None)
        elif self.rt.store.due_timeouts(2**62, 1):
            # Only sleeping sessions are left: jump to the next deadline.
            nxt = self.rt.store.next_timeout_at()
            if nxt is not None:
                self._push(max(at + 1, nxt), "tick", None)


def simulate(runtime: Runtime, config: SimConfig, **kwargs: Any) -> SimResult:
    """Run a simulation and return its summary (see :class:`Simulator`)."""
    return Simulator(runtime, config, **kwargs).run()
