"""The Flow Handler on asyncio (:class:`AsyncRuntime`): the driver that answers the sans-io
core's requests (runtime/core.py) with awaits on an async store, then runs the effects after
the commit (directly or through the background :class:`~flowkit.runtime.sender.OutboxSender`).

Nothing here reads Redis through a sync client: flows missing from the registry's memory are
read through the async store (runtime/resolve.py), and the registry is refreshed the same way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from flowkit.engine import CallService, Effect, Event, Reply, State, Timeout, UserMessage
from flowkit.errors import ChannelError, FlowkitError
from flowkit.flow.model import Flow
from flowkit.log import error_fields, get_logger
from flowkit.runtime import handoff as _handoff
from flowkit.runtime import resolve as _resolve
from flowkit.runtime import transcript, unrouted
from flowkit.runtime.channel import AsyncChannel
from flowkit.runtime.core import _Core, next_due_of
from flowkit.runtime.outcome import Outcome, as_duplicate, inbound_id, resume_grace_ms, routes
from flowkit.runtime.registry import FlowRegistry
from flowkit.runtime.sender import OutboxSender, metric, undeliverable_event
from flowkit.runtime.sender import Result as SendResult
from flowkit.runtime.services import ServiceRegistry
from flowkit.store import delivery
from flowkit.types import (
    AsyncStoreProtocol,
    Commit,
    Load,
    MetricsSink,
    Request,
    RequestAnswer,
    Resolve,
    Sleep,
)

if TYPE_CHECKING:
    from flowkit.channels.whatsapp.webhook import StatusUpdate

log = get_logger("flowkit.runtime")


class AsyncRuntime(_handoff.AsyncAgentActions, _Core[AsyncStoreProtocol]):
    """The Flow Handler on asyncio (``store`` is an :class:`flowkit.store.AsyncStore`)."""

    refresh_in_lookups = False  # never the registry's blocking client on the loop: see refresh_flows

    def __init__(self, store: AsyncStoreProtocol, flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], *,
                 channel: AsyncChannel | None = None, services: ServiceRegistry | None = None,
                 default_flow: str | None = None, clock: Callable[[], int] | None = None,
                 max_conflicts: int = 32, cache_size: int = 10_000, rng: random.Random | None = None,
                 run_services: bool = True, metrics: MetricsSink | None = None, background: bool = False,
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

    async def _drive(self, gen: Generator[Request, RequestAnswer, Outcome]) -> Outcome:
        reply: RequestAnswer = None
        try:
            while True:
                reply = await self._answer(gen.send(reply))
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

    async def _answer(self, op: Request) -> RequestAnswer:
        """Do the I/O one request of the core asks for, awaiting the async store."""
        if isinstance(op, Load):
            return (None if op.fresh else self.cached_state(op.session_id)) or await self.store.load(op.session_id)
        if isinstance(op, Commit):
            c = self.commit_call(op)
            self.forget(op.session_id)  # until the outcome is known, the cached state may be stale
            return await self.store.commit(c.session_id, c.expected, c.state, c.record, previous=c.previous,
                                           message_id=c.message_id, effects=c.effects, timeout_at_ms=c.timeout_at_ms)
        if isinstance(op, Resolve):  # the async store on a miss: never a sync client here
            return await _resolve.answer_async(self.registry, self.store, op.wants)
        if isinstance(op, Sleep):
            await asyncio.sleep(op.seconds)
            return None
        raise TypeError(f"unknown runtime request {op!r}")

    async def refresh_flows(self) -> None:
        """Pick up flow versions deployed by other processes, through the async store, when
        the registry says one is due (every ``refresh_every`` s). A Redis error keeps the
        versions known so far serving; the handling that follows reports Redis itself."""
        if not self.registry.refresh_due():
            return
        try:
            await self.registry.refresh_async(self.store)
        except (FlowkitError, RedisError, OSError) as exc:
            log.warning("flow versions not refreshed", extra=error_fields(exc))

    async def handle(self, session_id: str, event: Event, *, wait_services: bool = True) -> Outcome:
        started = time.perf_counter()
        await self.refresh_flows()
        writes = self.inbound_writes(session_id, event)
        if writes:
            await self.store.defer(writes)
        outcome = await self._drive(self.process(session_id, event))
        if outcome.status == "unrouted" and isinstance(event, UserMessage) and event.message_id:
            outcome = as_duplicate(outcome, await self.store.seen(session_id, event.message_id))
            if outcome.status == "unrouted" and not await unrouted.aclaim(self.store.client, session_id,
                                                                            event.message_id):
                outcome = Outcome(session_id, "duplicate", outcome.version)  # already answered once
        self.count(outcome, started, event)
        if tx_in := self.transcript_in(session_id, event, outcome):
            await self.store.defer(tx_in)
        if outcome.status == "unrouted":
            if self.outbox is not None:
                self.outbox.submit(session_id, 0, list(outcome.replies), ack=False, record=False)
            elif not await self._send(session_id, outcome.replies) and isinstance(event, UserMessage) and event.message_id:
                await unrouted.arelease(self.store.client, session_id, event.message_id)
        elif outcome.status == "applied":
            self.places.note(session_id, outcome.version, outcome.flow, outcome.record)
            await self.run_effects(session_id, outcome.version or 0, outcome.effects, wait_services=wait_services,
                                   route=routes(outcome), inbound=inbound_id(event))
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
                self.unsent(sid, exc)
                return False
        return True

    async def run_effects(self, sid: str, version: int, effects: Iterable[Effect], *, wait_services: bool = True,
                          route: bool = True, inbound: str | None = None) -> None:
        """Send replies, run calls and feed back results, then acknowledge the outbox (see Runtime.run_effects)."""
        effects = list(effects)
        replies = [e for e in effects if isinstance(e, Reply)]
        calls = [e for e in effects if isinstance(e, CallService)]
        sent: bool | asyncio.Future[SendResult]
        if self.outbox is not None:
            # the sender acknowledges the entry itself unless calls must finish first
            sent = self.outbox.submit(sid, version, replies, ack=not calls, route=route) if replies else True
        else:
            sent = await self._send(sid, replies, version)
        await self._mark_read(inbound, sid, working=self.run_services and bool(calls))
        if calls and not self.run_services:
            return  # someone else runs the calls; recovery finds the entry if nobody does
        if not calls:
            if sent is True:  # (a Future: the background sender acknowledges the entry itself)
                await self.store.ack_effects(sid, version, defer=True)  # rides on the next round trip
            return
        job = self._calls_then_ack(sid, version, calls, sent)
        if wait_services:
            await job
        else:  # a webhook answers WhatsApp at once; the calls finish in the background
            self._in_background(job)

    async def _mark_read(self, inbound: str | None, sid: str, *, working: bool) -> None:
        """The read receipt of the user's message ("typing…" too while calls run), if the channel
        sends them, from the number of session ``sid``."""
        seen = getattr(self.channel, "seen", None)
        if inbound and seen is not None:
            await seen(inbound, working=working, to=sid)

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
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

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for background service calls and queued replies, then send the deferred
        acknowledgements (tests, and graceful shutdown).

        With ``timeout`` (a shutdown) it gives up after that many seconds: service calls still
        running are cancelled and unsent replies stay in the outbox, for recovery to finish
        (``flowkit recover`` or the next process); acknowledgements Redis cannot take are left
        too (those replies may go out twice: replies are at-least-once)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        while self._tasks or (self.outbox is not None and self.outbox.backlog):
            if self._tasks:
                _, late = await asyncio.wait(list(self._tasks), timeout=left())
                if late:
                    log.warning("shutdown: service calls still running were cut short; recovery resumes them",
                                extra={"calls": len(late), "timeout_s": timeout})
                    for task in late:
                        task.cancel()
                    await asyncio.gather(*late, return_exceptions=True)
            if self.outbox is not None:
                # bounded: on shutdown with Graph down, what is unsent stays in the outbox
                await self.outbox.close(self.drain_timeout if deadline is None else left() or 0.0)
        try:
            await self.store.flush()
        except (FlowkitError, RedisError, OSError) as exc:
            if timeout is None:
                raise
            log.warning("shutdown: deferred acknowledgements not sent (Redis unavailable); recovery resends "
                        "those replies", extra=error_fields(exc))

    async def fire_due_timeouts(self, now: int | None = None, limit: int = 500) -> int:
        now = self.clock() if now is None else now
        fired = 0
        for sid in await self.store.due_timeouts(now, limit):
            try:
                if await self._resume_cut_short_call(sid):
                    fired += 1
                    continue
                out = await self.handle(sid, Timeout())
            except FlowkitError as exc:
                log.error("timeout failed", extra={"session_id": sid, **error_fields(exc)})
                continue
            if out.status == "noop":
                await self._reschedule(sid)
            else:
                fired += 1
        return fired

    async def _resume_cut_short_call(self, sid: str) -> bool:
        """See :meth:`Runtime._resume_cut_short_call`; the call runs in the background here."""
        raw = await self.store.load(sid)
        call = self.cut_short_call(raw, await self.store.pending_effects(sid) if raw and raw.get("pending") else {})
        if call is None:
            return False
        log.warning("resuming a service call cut short before its deadline",
                    extra={"session_id": sid, "service": call.service, "call_id": call.call_id})
        await self.store.set_timeout(sid, self.clock() + resume_grace_ms(call))
        self.calls_in_flight.add(call.call_id)
        self._in_background(self._calls_then_ack(sid, -1, [call], False))
        return True

    async def _reschedule(self, sid: str) -> None:
        """Set the session's next wake-up from its state; its flow is read through the async store."""
        raw = await self.store.load(sid)
        state = State.from_dict(raw) if raw else None
        flow = None
        if state is not None and not state.terminal:
            got = (await _resolve.answer_async(self.registry, self.store, ((state.flow, state.flow_version),)))[0]
            flow = got if isinstance(got, Flow) else None
        await self.store.set_timeout(sid, next_due_of(state, flow))


__all__ = ["AsyncRuntime"]
