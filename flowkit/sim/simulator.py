"""Drive simulated users through the real runtime on a real Redis.

Virtual-clock mode (the default) runs days of traffic in seconds: events sit in a heap
ordered by virtual time, the runtime's clock reads the time of the event being handled,
and timeouts fire from the store's timeout index exactly at their (virtual) deadlines.
Each user has its own seeded random generator that only the main thread draws from, so
the same seed gives the same histories whatever the concurrency (Redis restarts excepted:
which deliveries meet a restarting server depends on the wall clock).

Real-time mode (``realtime=True``) waits on the wall clock between events (think times,
arrivals and service latencies divided by ``speed``) and leaves the runtime on the wall
clock: that is the mode for watching a live dashboard. Over HTTP (``http=HttpTarget``)
the users post signed webhook deliveries to a running ``flowkit serve`` and read the
sessions from the same Redis to decide their next answer; that mode is always real-time
(the server has its own clock) and the server runs the registered services itself.

In process, the simulator answers service calls itself (:class:`ServiceBehaviour`:
errors, slow answers, no answer at all), so flows run without their real integrations.

Hostile traffic is opt-in: duplicated deliveries (some at once, processed concurrently as
WhatsApp's retries can be, some later), out-of-order pairs, runtime crashes between the
commit and its effects (the message is then redelivered and the outbox repaired by
:meth:`Runtime.redeliver_outbox`, as a restarted process would), and Redis restarts while
events are in flight (failed deliveries are redelivered, as WhatsApp does on a 5xx).
Everything the simulator sent, and how many replies each user got, is kept in
:class:`SimResult` and written by :meth:`SimResult.write_log` for ``flowkit check --sent``.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from flowkit.engine import CallService, ServiceResult, State, UserMessage
from flowkit.engine.locate import locate
from flowkit.errors import ConfigError, ConflictError, EngineError, StoreUnavailable
from flowkit.flow.model import HELD_STATUSES, AskStep, CallStep, Flow
from flowkit.runtime import Runtime
from flowkit.runtime.handler import unrouted_text
from flowkit.sim.answers import service_value
from flowkit.sim.behaviour import choose_message
from flowkit.sim.config import SIM_EPOCH_MS, HttpTarget, Persona, ServiceBehaviour, SimConfig
from flowkit.sim.counting import CountingChannel
from flowkit.sim.events import Done, Item, Kind, User, race_key
from flowkit.sim.metrics import LentMetrics
from flowkit.sim.result import Sent, SimResult
from flowkit.sim.variants import in_variant
from flowkit.sim.webhook import post_delivery

if TYPE_CHECKING:
    import httpx

_REDELIVER_MS = (2_000, 5_000)  # WhatsApp retries an unacknowledged delivery a few seconds later
_T = TypeVar("_T")


class Simulator:
    """Runs :class:`SimConfig` traffic against ``runtime`` (its store must be a real Redis).

    In process the runtime's clock (virtual mode), ``run_services`` and channel are
    borrowed for the run and given back afterwards. Over HTTP (``config.http``) the runtime
    only lends its store and flow registry, to read the sessions the server writes.
    ``restart_redis`` is called (in a thread, while events are in flight) for
    ``redis_restart_every``; ``progress(users_done, users)`` after every batch.
    """

    def __init__(self, runtime: Runtime, config: SimConfig, *, restart_redis: Callable[[], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        if config.redis_restart_every and restart_redis is None:
            raise ConfigError("redis_restart_every needs a restart_redis callable (e.g. stop and start a RedisServer)")
        self.rt = runtime
        self._cfg = config
        self.restart_redis = restart_redis
        self.progress = progress
        self.result = SimResult(users=config.users)
        self._local = threading.local()
        self._heap: list[tuple[int, int, Kind, Item]] = []
        self._seq = 0
        self._scale = 1.0 / config.speed if config.live else 1.0
        if config.start_ms is not None:
            self._start = config.start_ms
        else:
            self._start = int(time.time() * 1000) if config.live else SIM_EPOCH_MS
        self._virtual_now = self._start
        self._users: list[User] = []
        self._by_sid: dict[str, User] = {}
        self._restart: threading.Thread | None = None
        self._handled = 0
        self._stuck_rounds = 0
        self._http: httpx.Client | None = None
        self._counting: CountingChannel | None = None
        self._held: set[User] = set()  # users with a failed delivery that recovery has not repaired yet
        self._lent: LentMetrics | None = None  # the deployment-wide counters we lent the runtime

    @property
    def cfg(self) -> SimConfig:
        """The configuration (read-only: the clock and scale are derived from it once)."""
        return self._cfg

    # -- clock and queue

    def _now(self) -> int:
        """The runtime's clock in virtual mode: the time of the event this thread handles."""
        return getattr(self._local, "now", self._virtual_now)

    def _wall(self) -> int:
        return int(time.time() * 1000)

    def _ms(self, seconds: float) -> int:
        """A delay the simulator chooses, in ms (scaled down by ``speed`` when live)."""
        return max(1, int(seconds * 1000 * self._scale))

    def _push(self, at: int, kind: Kind, item: Item) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, item))

    def _retry(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Main-thread store reads and repairs wait for Redis to come back (a restart in progress)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return fn(*args)
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # -- users

    def _flows(self) -> list[Flow]:
        names = list(self.cfg.flows or [f.name for f in self.rt.registry.flows() if f.triggers])
        flows = [self.rt.registry.latest(n) for n in names]
        for f in flows:
            if not f.triggers:
                raise ConfigError(f"flow {f.name!r} has no `triggers`, so a user cannot start it with a message")
        if not flows:
            raise ConfigError("no flow to simulate: give flows with `triggers`, or name them in SimConfig.flows")
        return flows

    def _make_users(self) -> list[User]:
        master = random.Random(self.cfg.seed)
        flows = self._flows()
        personas = list(self.cfg.personas)
        weights = [p.weight for p in personas]
        prefix = self.cfg.id_prefix if self.cfg.id_prefix is not None else f"999{self.cfg.seed % 10_000:04d}"
        users = []
        for i in range(self.cfg.users):
            rng = random.Random(master.randrange(2**63))
            persona = rng.choices(personas, weights)[0]
            users.append(User(i, f"{prefix}{i:07d}", flows[i % len(flows)].name, persona, rng))
        return users

    def _deliver(self, user: User, msg: UserMessage, at: int) -> None:
        """Schedule a message from ``user``, duplicated and crashing as configured (decided
        here, in the main thread, so the random draws do not depend on thread timing)."""
        cfg = self.cfg
        mid = user.next_id()
        msg = dataclasses.replace(msg, message_id=mid, actor="simulator",
                                  profile={"name": f"Sim user {user.index}", "wa_id": user.session_id})
        crash = bool(cfg.crash_rate) and user.rng.random() < cfg.crash_rate
        user.inflight += 1
        self._push(at, "msg", Item(user, msg, crash))
        if cfg.duplicate_rate and user.rng.random() < cfg.duplicate_rate:
            self.result.duplicates_sent += 1
            # Half at once (two webhook calls racing each other), half as a late retry.
            later = 0 if user.rng.random() < 0.5 else self._ms(user.rng.uniform(1, 60))
            self._push(at + later, "dup", Item(user, msg, delivery="duplicate"))

    def _answer(self, user: User, state: State, at: int) -> None:
        """What the user does at a question: answer (validly or not), use a command, or leave."""
        p = in_variant(user.persona, state)
        r = user.rng
        flow = self.rt.registry.get(state.flow, state.flow_version)
        owner, st = locate(flow, state.step or "", self.rt.registry, [f["flow_version"] for f in state.stack])
        if not isinstance(st, AskStep):
            return
        user.asked[state.step or ""] += 1
        if r.random() < p.abandon_rate or user.asked[state.step or ""] > p.patience:
            # (a loop such as "more than you paid; how much?" can ask forever: people give up)
            user.state = "abandoned"
            self.result.abandoned += 1
            return
        think = self._ms(r.expovariate(1 / max(p.think_time, 0.001)) + 0.5)
        msg = choose_message(user, p, owner, st, state.step or "", at, self.result)
        self._deliver(user, msg, at + think)
        if self.cfg.out_of_order_rate and r.random() < self.cfg.out_of_order_rate:
            # A quick second message sent after the answer that overtakes it (WhatsApp does
            # not order deliveries): its message id is newer, its arrival earlier.
            self.result.out_of_order += 1
            self._deliver(user, UserMessage(text=r.choice(["?", "hello?", "help"])), at + think - r.randint(1, think))

    def _call(self, user: User, state: State, at: int) -> None:
        """Answer the call the session waits for, as the configured service behaviour says."""
        pending = state.pending or {}
        call_id, service = str(pending.get("call_id")), str(pending.get("service"))
        self.result.service_calls += 1
        b = self.cfg.services.get(service, self.cfg.default_service)
        r = user.rng
        roll = r.random()
        if roll < b.timeout_rate:
            self.result.service_timeouts += 1
            return  # never answers: the call step's timeout fires on virtual time
        slow = roll < b.timeout_rate + b.slow_rate
        self.result.service_slow += slow
        latency = self._ms(b.slow_latency if slow else b.latency)
        if r.random() < b.error_rate:
            self.result.service_errors += 1
            result = ServiceResult(call_id=call_id, ok=False, error="simulated_error", actor="simulator")
        else:
            flow = self.rt.registry.get(state.flow, state.flow_version)
            owner, st = locate(flow, state.step or "", self.rt.registry, [f["flow_version"] for f in state.stack])
            slot = owner.slots.get(st.save) if isinstance(st, CallStep) and isinstance(st.save, str) else None
            result = ServiceResult(call_id=call_id, ok=True, value=service_value(slot, r, call_id), actor="simulator")
        if self._lent is not None:
            # We stand in for the runtime's service call: count it as Runtime._call_and_feed would.
            self._lent.metrics.service_called(service, result.ok, b.slow_latency if slow else b.latency)
        self._push(at + latency, "result", Item(user, result))

    def _load(self, user: User) -> dict[str, Any] | None:
        if self.cfg.http is None and user.fresh:
            cached = self.rt.cached(user.session_id)
            if cached is not None:
                return cached
        loaded: dict[str, Any] | None = self._retry(self.rt.store.load, user.session_id)
        return loaded

    def _react(self, user: User, at: int) -> None:
        """Look at the user's session after its events were handled and decide what comes next."""
        if user.inflight > 0 or user in self._held:
            return  # the user waits until every message it sent was acknowledged (and repaired)
        raw = self._load(user)
        if raw is None:
            return
        state = State.from_dict(raw)
        if state.terminal or state.status in HELD_STATUSES:  # no agents here: a hand-off ends the user's part
            self._finish(user, state)
            return
        if state.status == "waiting_service":
            self._await_service(user, state, at)
            return
        user.polls = 0
        if user.state == "active" and state.status == "waiting_input" and state.version != user.answered:
            user.answered = state.version
            self._answer(user, state, at)

    def _finish(self, user: User, state: State) -> None:
        """Count the end of an active user's session once (a user who left was counted then)."""
        if user.state != "active":
            return
        user.state = "finished"
        self.result.ended[state.status] = self.result.ended.get(state.status, 0) + 1
        if state.status == "completed":
            self.result.completed += 1
        elif state.status == "failed":
            self.result.failed += 1
        else:
            self.result.other_end += 1

    def _await_service(self, user: User, state: State, at: int) -> None:
        """The session waits for a service: over HTTP the server runs it (look again shortly);
        in process the simulator answers each call once."""
        if self.cfg.http is not None:
            user.polls += 1
            if user.polls < int(60 / self.cfg.http.poll):
                self._push(at + max(1, int(self.cfg.http.poll * 1000)), "poll", Item(user, None))
            return
        call_id = str((state.pending or {}).get("call_id"))
        if call_id not in user.calls:
            user.calls.add(call_id)
            self._call(user, state, at)

    # -- handling (worker threads)

    def _handle(self, entry: tuple[int, int, Kind, Item]) -> Done:
        at, _, kind, item = entry
        if kind == "poll":
            return Done(at, kind, item, "poll", True)
        if self.cfg.http is not None:
            assert self._http is not None
            return post_delivery(self._http, self.cfg.http, at, kind, item)
        self._local.now = at
        sid = item.user.session_id
        assert item.event is not None
        try:
            if item.crash:
                # The process dies right after the commit: no replies, no calls, no ack to WhatsApp.
                out = self.rt._drive(self.rt.process(sid, item.event))
                self.rt.forget(sid)
                # (its duplicate, racing it, may have been applied first: count that once either way)
                return Done(at, kind, item, "crashed", False, absorbed=out.status == "duplicate")
            out = self.rt.handle(sid, item.event)
        except StoreUnavailable:
            return Done(at, kind, item, "unavailable", False)
        except ConflictError:
            return Done(at, kind, item, "conflict", False)
        except EngineError:
            # The runtime refused the event. Seen: a result that arrives after its session
            # ended (a slow answer after the call's timeout failed the session), and a
            # trigger of another flow after the session ended. Nothing was stored; the
            # simulator counts it and moves on (a webhook would answer 500 and get it again).
            return Done(at, kind, item, "engine_error", True)
        calls = any(isinstance(e, CallService) for e in out.effects)
        return Done(at, kind, item, out.status, True, out.conflicts, out.version, calls)

    # -- running

    def run(self) -> SimResult:
        cfg = self.cfg
        started = time.perf_counter()
        if cfg.live and cfg.start_ms is None:
            # live time starts when the users do, not when the simulator was built
            self._start = self._virtual_now = self._wall()
        saved = (self.rt.clock, self.rt.run_services, self.rt.channel, self.rt.store)
        saved_metrics = self.rt.metrics
        if cfg.http is None:
            self.rt.run_services = False  # the simulator answers calls itself, on its own clock
            if not cfg.live:
                self.rt.clock = self._now
            if self.rt.metrics is None:
                self._lent = LentMetrics(self.rt)
            self._counting = CountingChannel(self.rt.channel, unrouted_text(self.rt.registry))
            self.rt.channel = self._counting
        else:
            import httpx

            self._http = httpx.Client(base_url=cfg.http.url.rstrip("/"), timeout=cfg.http.timeout)
        try:
            self._users = self._make_users()
            self._by_sid = {u.session_id: u for u in self._users}
            spread = self._ms(cfg.arrival_seconds) if cfg.arrival_seconds else 0
            for u in self._users:
                flow = self.rt.registry.latest(u.flow)
                self._deliver(u, UserMessage(text=flow.triggers[0]), self._start + (u.rng.randrange(spread) if spread else 0))
                self.result.started += 1
            with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="flowkit-sim") as pool:
                self._loop(pool)
                while self._restart is not None:
                    # Out of events while Redis restarts: wait for it, repair, and let the
                    # users held for that repair go on.
                    self._restart.join()
                    self._after_restart()
                    self._loop(pool)
        finally:
            if self._http is not None:
                self._http.close()
            if self._lent is not None:
                self._lent.flush(final=True)
            self.rt.clock, self.rt.run_services, self.rt.channel, self.rt.store = saved
            self.rt.metrics = saved_metrics
        res = self.result
        res.seconds = time.perf_counter() - started
        res.virtual_seconds = (self._virtual_now - self._start) / 1000
        res.still_active = sum(u.state == "active" for u in self._users)
        if self._counting is not None:
            res.replies = {u.session_id: self._counting.counts.get(u.session_id, 0) for u in self._users}
        return res

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        live = self.cfg.live
        while True:
            if self._restart is not None and not self._restart.is_alive():
                self._after_restart()
            head, deadline = self._due()
            if head is None and (deadline is None or not self._await_timeouts()):
                return
            target = min(t for t in (head, deadline) if t is not None)
            if live:
                wait = target - self._wall()
                if wait > 0:
                    time.sleep(min(wait / 1000, 0.25))
                    continue
            if deadline is not None and (head is None or deadline <= head):
                self._fire(max(deadline, self._virtual_now) if not live else self._wall())
                continue
            self._run_batch(pool, head, deadline)

    def _due(self) -> tuple[int | None, int | None]:
        """When the next queued event and the next session timeout are due."""
        head = self._heap[0][0] if self._heap else None
        deadline = self._next_timeout()
        if deadline is not None and self._stuck_rounds > 3 and deadline <= self._virtual_now and head is not None:
            deadline = None  # a due timeout that will not fire must not keep the users' events waiting
        return head, deadline

    def _run_batch(self, pool: ThreadPoolExecutor, head: int | None, deadline: int | None) -> None:
        """Handle the next batch of events (concurrently), account for it and report progress."""
        live = self.cfg.live
        if not live:
            self._virtual_now = max(self._virtual_now, head or self._virtual_now)
        batch = self._next_batch(self._wall() if live else None, deadline)
        if self._restart is None and self._due_restart():
            self._restart = threading.Thread(target=self._do_restart, name="flowkit-sim-redis-restart")
            self._restart.start()
        done = list(pool.map(self._handle, batch)) if len(batch) > 1 else [self._handle(batch[0])]
        self._handled += len(batch)
        self._settle(done)
        if self._lent is not None:
            self._lent.flush()
        if live:
            self._virtual_now = max(self._virtual_now, self._wall())
        if self.progress:
            self.progress(sum(u.state != "active" for u in self._users), len(self._users))

    def _next_timeout(self) -> int | None:
        """When the next session timeout is due (in-process only: over HTTP the server fires its own)."""
        if self.cfg.http is not None:
            return None
        if self._restart is not None:
            return None  # Redis may be down; timeouts fire once it is back
        try:
            return self.rt.store.next_timeout_at()
        except StoreUnavailable:
            return None

    def _await_timeouts(self) -> bool:
        """With no user event left: run on to the remaining deadlines? Virtual time is free,
        so yes (abandoned sessions expire); live, only while some user still waits."""
        if self._stuck_rounds > 3:
            return False
        return not self.cfg.live or any(u.state == "active" for u in self._users)

    def _fire(self, now: int) -> None:
        """Fire due timeouts at ``now`` through the runtime, then let their users react."""
        self._virtual_now = max(self._virtual_now, now)
        self._local.now = now
        try:
            due = self.rt.store.due_timeouts(now, 500)
            fired = self.rt.fire_due_timeouts(now, 500)
        except StoreUnavailable:
            return
        self.result.timeouts_fired += fired
        for sid in due:
            # A timeout that led to another call (a retry loop) left its outbox entry open
            # for the simulator, like _settle's; no crash entry can be open here, because
            # recovery runs before any timeout fires.
            for version, effects in self._retry(self.rt.store.pending_effects, sid).items():
                if any(e.get("kind") == "call" for e in effects):
                    self._retry(self.rt.store.ack_effects, sid, version)
            user = self._by_sid.get(sid)
            if user is not None:
                user.fresh = False
                self._react(user, now)
        if fired < len(due) and not self._store_up():
            # Redis stopped answering while they fired (still loading after a restart): the
            # runtime logged and skipped them; they are due again, not stuck.
            for sid in due:
                self.result.inexact.add(sid)  # a reply may have gone out before the failure
            time.sleep(0.02)
            return
        after = self._next_timeout()
        # A deadline that stays due without firing (a noop the runtime could not reschedule)
        # must not spin the loop forever.
        self._stuck_rounds = self._stuck_rounds + 1 if fired == 0 and after is not None and after <= now else 0

    def _store_up(self) -> bool:
        try:
            return bool(self.rt.store.ping())
        except (StoreUnavailable, OSError):
            return False

    def _next_batch(self, wall: int | None, deadline: int | None) -> list[tuple[int, int, Kind, Item]]:
        """Up to ``concurrency`` events handled at once: never two different events of one
        session (so each session's order, and with it its history, does not depend on thread
        timing); a message and its duplicate do race. Nothing at or after the next deadline
        (the timeout comes first), nothing in the future when live."""
        first = heapq.heappop(self._heap)
        batch = [first]
        keys = {race_key(first): first[0]}
        sessions = {first[3].user.session_id}
        while self._heap and len(batch) < self.cfg.concurrency:
            at, _, kind, item = nxt = self._heap[0]
            if (deadline is not None and at >= deadline) or (wall is not None and at > wall):
                break
            # Only deliveries of one message at the same instant race; a later duplicate
            # must not overtake the first delivery (its commit would carry the later time).
            if item.user.session_id in sessions and keys.get(race_key(nxt)) != at:
                break
            batch.append(heapq.heappop(self._heap))
            keys[race_key(nxt)] = at
            sessions.add(item.user.session_id)
        return batch

    def _settle(self, done: list[Done]) -> None:
        """Account for a handled batch (main thread), redeliver what was not acknowledged,
        repair crashes like a restarted process would, then let the users react."""
        touched: dict[User, int] = {}
        repair = False
        restarting = self._restart is not None and self._restart.is_alive()
        for d in done:
            user = d.item.user
            if d.kind != "poll":
                self._count(d)
                if not d.acked:
                    self._redeliver(d, restarting)
                    repair = True
                    continue
                self._acknowledged(d)
            touched[user] = max(d.at, touched.get(user, d.at))
        if repair and self.cfg.http is None and (self._restart is None or not self._restart.is_alive()):
            self._recover()
        for user, at in touched.items():
            self._react(user, at)

    def _count(self, d: Done) -> None:
        """Log a handled delivery (the sent log) and its conflicts."""
        ev = d.item.event
        if isinstance(ev, UserMessage):
            self.result.messages += 1
            self.result.sent.append(Sent(d.item.user.session_id, ev.message_id or "", d.at, ev.text, d.acked,
                                         d.status, d.item.delivery))
        self.result.conflicts += d.conflicts

    def _redeliver(self, d: Done, restarting: bool) -> None:
        """An unacknowledged delivery (a crash, Redis away): WhatsApp sends it again a few
        seconds later, and the user waits for the repair."""
        res, user = self.result, d.item.user
        if d.status == "crashed":
            res.crashes += 1
            res.duplicates_absorbed += d.absorbed
            if restarting:
                # Its repair waits for Redis; meanwhile the user's other messages in
                # flight (an out-of-order pair, a duplicate) may commit, and recovery
                # then drops the crashed commit's replies as superseded, by design.
                res.inexact.add(user.session_id)
        else:
            res.unavailable += 1
            res.inexact.add(user.session_id)  # a reply may have gone out before the failure
        user.fresh = False
        # The user never got the replies of a commit whose effects were cut short, so
        # it cannot answer them: it waits until recovery has repaired the outbox (if it
        # answered first, recovery would rightly drop those replies as superseded).
        if self.cfg.http is None:  # (over HTTP the server repairs its own outbox)
            self._held.add(user)
        res.redeliveries += 1
        delay = user.rng.randint(*_REDELIVER_MS)
        self._push(d.at + self._ms(delay / 1000), d.kind, Item(user, d.item.event, delivery="redelivery"))

    def _acknowledged(self, d: Done) -> None:
        """An acknowledged delivery: close the outbox entry of a call the simulator runs, count it."""
        res, user = self.result, d.item.user
        if d.calls and d.version is not None:
            # The runtime sent the replies and left the entry open for whoever runs the
            # call (run_services is off): the simulator does, so the entry is done. Closing
            # it here, before any recovery round, keeps recovery from sending them again.
            self._retry(self.rt.store.ack_effects, user.session_id, d.version)
        if d.kind == "msg":
            user.inflight -= 1
        if d.status == "engine_error":
            res.engine_errors += 1
        if d.status == "duplicate" or (d.status == "not_applied" and d.item.delivery != "first"):
            res.duplicates_absorbed += 1  # (over HTTP the webhook only says nothing new was applied)
        user.fresh = d.status == "applied" and self.cfg.http is None

    def _recover(self) -> None:
        """What a restarted runtime does: finish the effects of commits nobody acknowledged.

        Only the crashed event's process died, so the live runtime's acknowledgements must
        all be in Redis by now (redeliver_outbox flushes the deferred ones first)."""
        self._retry(self.rt.redeliver_outbox, 0)
        held, self._held = self._held, set()
        now = self._wall() if self.cfg.live else self._virtual_now
        for user in sorted(held, key=lambda u: u.index):
            user.fresh = False
            self._react(user, now)

    # -- Redis restarts

    def _due_restart(self) -> bool:
        n = self.cfg.redis_restart_every
        return bool(n) and self._handled // n > self.result.redis_restarts

    def _do_restart(self) -> None:
        assert self.restart_redis is not None
        self.restart_redis()

    def _after_restart(self) -> None:
        self._restart = None
        self.result.redis_restarts += 1
        # What an operator runs after Redis went down mid-write: the derived indexes written
        # beside a commit (timeouts due, outbox) may have missed it, and a session whose
        # deadline is not in the index would wait forever.
        self._retry(self.rt.store.reconcile)
        self._recover()



def simulate(runtime: Runtime, config: SimConfig, **kwargs: Any) -> SimResult:
    """Run a simulation and return its result (see :class:`Simulator`)."""
    return Simulator(runtime, config, **kwargs).run()


__all__ = ["HttpTarget", "Persona", "SIM_EPOCH_MS", "Sent", "ServiceBehaviour", "SimConfig", "SimResult", "Simulator",
           "simulate"]
