"""The Flow Handler with blocking I/O (:class:`Runtime`): the driver that answers the sans-io
core's requests (runtime/core.py) with blocking calls, then runs the effects after the commit
(send replies, call services, acknowledge the outbox) and the recovery rounds of ``flowkit worker``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Generator, Iterable, Mapping

from flowkit.engine import CallService, Effect, Event, Reply, State, Timeout, UserMessage, effect_from_dict
from flowkit.errors import ChannelError, FlowkitError
from flowkit.flow.model import Flow
from flowkit.log import error_fields, get_logger
from flowkit.runtime import handoff as _handoff
from flowkit.runtime import resolve as _resolve
from flowkit.runtime import transcript, unrouted
from flowkit.runtime.channel import Channel, HeldChannel, RecordingChannel
from flowkit.runtime.core import _Core, next_due
from flowkit.runtime.outcome import Outcome, RecoveryReport, as_duplicate, inbound_id, resume_grace_ms, routes
from flowkit.runtime.registry import FlowRegistry
from flowkit.runtime.sender import Pacers, classify, error_name, metric, undeliverable_event
from flowkit.runtime.services import ServiceRegistry
from flowkit.store import delivery
from flowkit.types import Commit, Load, MetricsSink, Request, RequestAnswer, Resolve, Sleep, StoreProtocol

log = get_logger("flowkit.runtime")


class Runtime(_handoff.AgentActions, _Core[StoreProtocol]):
    """The Flow Handler with blocking I/O (threads are fine: it holds no lock).

        rt = Runtime(Store(connect()), load_flows("flows/"), channel=WhatsAppChannel(sender))
        rt.handle_message("31612345678", UserMessage(text="pizza", message_id="wamid.1"))
    """

    def __init__(self, store: StoreProtocol, flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], *,
                 channel: Channel | None = None, services: ServiceRegistry | None = None,
                 default_flow: str | None = None, clock: Callable[[], int] | None = None,
                 max_conflicts: int = 32, cache_size: int = 10_000, rng: random.Random | None = None,
                 run_services: bool = True, metrics: MetricsSink | None = None, rate: float = 80.0) -> None:
        super().__init__(store, flows, services=services, default_flow=default_flow, clock=clock,
                         max_conflicts=max_conflicts, cache_size=cache_size, rng=rng, metrics=metrics)
        self.channel: Channel = channel or RecordingChannel()
        self.run_services = run_services
        self.pacers = Pacers(rate)  # one per sending number
        self.pacer = self.pacers.default

    def drain(self) -> None:
        """Send the deferred outbox acknowledgements now (before exit; they otherwise ride
        on the next round trip or go within 0.1 s)."""
        self.store.flush()

    def _drive(self, gen: Generator[Request, RequestAnswer, Outcome]) -> Outcome:
        reply: RequestAnswer = None
        try:
            while True:
                reply = self._answer(gen.send(reply))
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

    def _answer(self, op: Request) -> RequestAnswer:
        """Do the I/O one request of the core asks for, blocking."""
        if isinstance(op, Load):
            return (None if op.fresh else self.cached_state(op.session_id)) or self.store.load(op.session_id)
        if isinstance(op, Commit):
            c = self.commit_call(op)
            self.forget(op.session_id)  # until the outcome is known, the cached state may be stale
            return self.store.commit(c.session_id, c.expected, c.state, c.record, previous=c.previous,
                                     message_id=c.message_id, effects=c.effects, timeout_at_ms=c.timeout_at_ms)
        if isinstance(op, Resolve):
            return _resolve.answer_sync(self.registry, op.wants)
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            return None
        raise TypeError(f"unknown runtime request {op!r}")

    def handle(self, session_id: str, event: Event) -> Outcome:
        """Apply one event (message, service result, timeout, command) and run its effects."""
        started = time.perf_counter()
        writes = self.inbound_writes(session_id, event)
        if writes:
            self.store.defer(writes)
        outcome = self._drive(self.process(session_id, event))
        if outcome.status == "unrouted" and isinstance(event, UserMessage) and event.message_id:
            # a redelivery of a message that ended the session: a duplicate, not a stranger
            outcome = as_duplicate(outcome, self.store.seen(session_id, event.message_id))
            if outcome.status == "unrouted" and not unrouted.claim(self.store.client, session_id, event.message_id):
                outcome = Outcome(session_id, "duplicate", outcome.version)  # already answered once
        self.count(outcome, started, event)
        if tx_in := self.transcript_in(session_id, event, outcome):
            self.store.defer(tx_in)
        if outcome.status == "unrouted":
            if not self._send(session_id, outcome.replies) and isinstance(event, UserMessage) and event.message_id:
                unrouted.release(self.store.client, session_id, event.message_id)
        elif outcome.status == "applied":
            self.places.note(session_id, outcome.version, outcome.flow, outcome.record)
            self.run_effects(session_id, outcome.version or 0, outcome.effects, route=routes(outcome),
                             inbound=inbound_id(event))
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
                self.unsent(sid, exc)
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
            self.pacers.for_session(sid, self.numbers).wait_sync()
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

    def run_effects(self, sid: str, version: int, effects: Iterable[Effect], *, actor: str = "runtime",
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
            seen(inbound, working=self.run_services and any(isinstance(e, CallService) for e in effects), to=sid)
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
        self.store.set_timeout(sid, next_due(state, self.registry))

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


__all__ = ["Runtime"]
