"""Replies leave apart from the webhook: a background sender per process.

The webhook commits the new state with its replies in the outbox (one round trip) and
answers WhatsApp at once; :class:`OutboxSender` then sends the replies and acknowledges
the outbox entry only after Graph accepted them. It keeps four promises:

- **order per user**: one queue per user, one send in flight per user;
- **retries that listen**: a 429 or a throughput error waits the ``Retry-After`` Graph
  gave (else an exponential backoff) and pauses the whole phone number, since the limit
  is the number's, not the user's;
- **pacing**: at most ``rate`` sends per second per process (the number's throughput
  tier, default 80/s), so code 130429 is avoided rather than handled;
- **no endless retries**: a permanent error (:func:`classify`) is recorded on the session
  (a ``delivery_failed`` record, which a flow may route with ``on_undeliverable``), counted
  by code, and the entry acknowledged; an account-level error (190: the token expired) is
  alerted and the entry left in the outbox for recovery once it is fixed.

A reply whose send outcome is unknown (the connection broke after the request left) and a
reply still failing after ``max_wait`` seconds stay in the outbox: ``flowkit worker``
redelivers them. Replies are at-least-once: a crash between Graph's answer and the
acknowledgement resends them. Within an entry, replies Graph accepted are remembered
(``fk:{s:<sid>}:sent``), so a resend skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flowkit.engine import Command, Reply
from flowkit.errors import ChannelError, FlowkitError, GraphAPIError
from flowkit.log import error_fields, get_logger
from flowkit.runtime import transcript
from flowkit.runtime.places import SentPlaces
from flowkit.store import delivery

if TYPE_CHECKING:
    from flowkit.channels.whatsapp.numbers import Numbers
    from flowkit.runtime.outcome import Outcome
    from flowkit.types import AsyncChannel, AsyncStoreProtocol, MetricsSink

log = get_logger("flowkit.sender")

#: Graph errors about this message or recipient: retrying the same request cannot help.
PERMANENT_CODES = frozenset({
    100,     # invalid parameter (a field the API refuses)
    131008,  # required parameter missing
    131009,  # parameter value not valid
    131021,  # recipient cannot be the sender
    131026,  # undeliverable (not on WhatsApp, old app, blocked)
    131047,  # more than 24 hours since the user last wrote (re-engagement)
    131051,  # unsupported message type
    131052, 131053,  # media download / upload error
    132000, 132001, 132005, 132007, 132012, 132015, 132016,  # template problems
    133010,  # phone number not registered
})
#: Graph errors about the account or token: every send fails until an operator acts.
ACCOUNT_CODES = frozenset({190, 10, 200, 368, 131031, 131042, 131045})
#: Throughput limits of the phone number (the pair limit 131056 is per recipient).
THROTTLE_CODES = frozenset({4, 80007, 130429})
#: How long an account-level error pauses the number (the entries wait in the outbox).
ACCOUNT_PAUSE_S = 60.0
#: Free-form messages stop this long before the window closes: the window starts when the
#: user wrote, flowkit only knows when it received the message.
WINDOW_MARGIN_MS = 15 * 60_000

Kind = Literal["permanent", "account", "throttle", "retry", "unknown"]
Result = Literal["sent", "failed", "left"]


@dataclass(frozen=True)
class _Sent:
    """One reply Graph accepted, with the id its statuses will name."""

    wamid: str | None


class SendingRuntime(Protocol):
    """What the sender needs of its runtime (:class:`~flowkit.runtime.AsyncRuntime`)."""

    @property
    def store(self) -> AsyncStoreProtocol: ...

    @property
    def channel(self) -> AsyncChannel: ...

    @property
    def metrics(self) -> MetricsSink | None: ...

    @property
    def numbers(self) -> Numbers | None: ...

    def clock(self) -> int: ...

    def window_ms(self) -> int | None: ...

    def window_closed(self, sid: str, read: Callable[[], int | None]) -> bool: ...

    async def record_undeliverable(self, sid: str, version: int, index: int, error: str, wamid: str | None = None, *,
                                   route: bool = True) -> Outcome | None: ...


def classify(exc: Exception) -> Kind:
    """What a failed send means: ``permanent`` (record it, never retry), ``account`` (alert;
    nothing goes out until fixed), ``throttle`` (pause the number), ``retry`` (this send
    again later) or ``unknown`` (it may have been delivered: leave it to recovery)."""
    if not isinstance(exc, GraphAPIError):
        return "retry" if isinstance(exc, (ChannelError, OSError)) else "unknown"
    if exc.code in ACCOUNT_CODES or exc.status == 401:
        return "account"
    if exc.code in THROTTLE_CODES:
        return "throttle"
    if exc.code in PERMANENT_CODES:
        return "permanent"
    if exc.retryable or exc.status == 429:
        return "retry"
    if exc.status is None:
        return "unknown"
    if 400 <= exc.status < 500:
        return "permanent"  # a 4xx Graph explains with a code we do not list: the request itself is wrong
    return "retry"


def error_name(exc: Exception) -> str:
    """``whatsapp:<code>`` for the history record and the metric label."""
    if isinstance(exc, GraphAPIError):
        return f"whatsapp:{exc.code if exc.code is not None else exc.status}"
    return f"whatsapp:{type(exc).__name__}"


def outside_window(last_inbound: int | None, now_ms: int, window_ms: int) -> bool:
    """True if a free-form message sent at ``now_ms`` would fall outside the customer-service window."""
    return last_inbound is None or now_ms - last_inbound >= window_ms - WINDOW_MARGIN_MS


def undeliverable_event(version: int, index: int, error: str, wamid: str | None = None, *,
                        route: bool = True) -> Command:
    """The engine event recording that reply ``index`` of outbox entry ``version`` was not delivered.

    Its message id makes a repeated report (a redelivered status, a resend after a crash)
    a duplicate. ``route=False`` when the failed reply was itself sent because of an earlier
    failure: following ``on_undeliverable`` again would loop."""
    args: dict[str, Any] = {"error": error, "version": version, "index": index}
    if wamid:
        args["wamid"] = wamid
    if not route:
        args["route"] = False
    mid = f"undeliverable:{wamid}" if wamid else f"undeliverable:{version}:{index}"
    return Command(name="delivery_failed", args=args, message_id=mid)


def metric(metrics: object, name: str, *args: Any) -> None:
    """Count on ``metrics`` if it knows ``name`` (a custom metrics object may not)."""
    if metrics is None:
        return
    try:
        fn = getattr(metrics, name)
    except AttributeError:
        return
    fn(*args)


def _places(rt: object) -> SentPlaces:
    """The runtime's flow-and-step map (an empty one for a runtime without it)."""
    places = getattr(rt, "places", None)
    return places if isinstance(places, SentPlaces) else SentPlaces(0)


class Pacer:
    """At most ``rate`` sends per second, evenly spaced, and a shared pause when Graph says so."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"the send rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self.clock = clock
        self._next = 0.0
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def slot(self) -> float:
        """Reserve the next send slot; returns how long to wait for it."""
        now = self.clock()
        at = max(self._next, now, self._paused_until)
        self._next = at + self.interval
        return at - now

    async def wait(self) -> None:
        while (delay := self.slot()) > 0:
            await asyncio.sleep(delay)
            if self.clock() >= self._paused_until:
                return

    def wait_sync(self) -> None:
        while (delay := self.slot()) > 0:
            time.sleep(delay)
            if self.clock() >= self._paused_until:
                return


class Pacers:
    """One :class:`Pacer` per sending number: each number has its own throughput tier, and a
    429 Graph gives one number pauses that number only (flowkit/channels/whatsapp/numbers.py).

    ``default`` paces the primary number (and every send when no numbers are configured) at
    ``rate``; another number at its own ``rate:`` from the numbers file, else ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.default = Pacer(rate)
        self._by_number: dict[str, Pacer] = {}

    def for_session(self, sid: str, numbers: Numbers | None) -> Pacer:
        if numbers is None:
            return self.default
        number, _ = numbers.address(sid)
        primary = numbers.primary
        if number is None or (primary is not None and number == primary.id and primary.rate is None):
            return self.default
        pacer = self._by_number.get(number)
        if pacer is None:
            pacer = self._by_number[number] = Pacer(numbers.rate_for(sid) or self.rate)
        return pacer


@dataclass
class _Job:
    sid: str
    version: int
    replies: list[Reply]
    ack: bool
    record: bool  # False for replies outside any commit (unrouted): nothing to acknowledge or record
    route: bool  # a failure may follow on_undeliverable (False: these replies come from one)
    done: asyncio.Future[Result]
    since: float = field(default_factory=time.monotonic)
    first: int = 0  # replies before this index were accepted already
    attempts: int = 0  # failed tries of the current reply


class OutboxSender:
    """Sends an :class:`~flowkit.runtime.AsyncRuntime`'s replies in the background (see the module doc).

    ``runtime`` gives the channel, store, clock, metrics and :meth:`record_undeliverable`.
    """

    def __init__(self, runtime: SendingRuntime, *, rate: float = 80.0, max_wait: float = 120.0, backoff: float = 0.5,
                 max_backoff: float = 30.0, lease_after: float = 10.0, rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.pacers = Pacers(rate)
        self.pacer = self.pacers.default  # the primary number's
        self.max_wait = max_wait
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lease_after = lease_after
        self.rng = rng or random.Random()
        self._queues: dict[str, deque[_Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self.stats = {"sent": 0, "failed": 0, "left": 0, "retries": 0}

    def pacer_for(self, sid: str) -> Pacer:
        """The pacer of the number session ``sid``'s replies leave from."""
        return self.pacers.for_session(sid, self.runtime.numbers)

    @property
    def backlog(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def submit(self, sid: str, version: int, replies: list[Reply], *, ack: bool = True,
               record: bool = True, route: bool = True) -> asyncio.Future[Result]:
        """Queue the replies of outbox entry ``version`` behind this user's earlier ones.

        The future answers ``sent`` (all accepted; entry acknowledged if ``ack``), ``failed``
        (a permanent error, recorded; acknowledged if ``ack``) or ``left`` (still in the outbox)."""
        loop = asyncio.get_running_loop()
        job = _Job(sid, version, list(replies), ack, record, route, loop.create_future())
        self._queues.setdefault(sid, deque()).append(job)
        if sid not in self._workers:
            task = loop.create_task(self._run_user(sid))
            self._workers[sid] = task
        return job.done

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued reply is sent or given up; False if ``timeout`` came first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._workers:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(list(self._workers.values()), timeout=left)
        return True

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what can be finished within ``timeout``; the rest stays in the outbox."""
        if not await self.drain(timeout):
            for task in list(self._workers.values()):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _run_user(self, sid: str) -> None:
        queue = self._queues[sid]
        try:
            while queue:
                job = queue[0]
                try:
                    result = await self._deliver(job)
                except (FlowkitError, OSError) as exc:  # Redis down while recording: recovery finishes it
                    log.warning("reply delivery interrupted; left in the outbox",
                                extra={"session_id": sid, "version": job.version, "error": str(exc)})
                    result = "left"
                queue.popleft()
                self.stats[result] += 1
                _resolve(job.done, result)
                if result == "left":
                    # Sending this user's later replies first would reorder the conversation;
                    # recovery sends the newest entry and drops superseded ones.
                    while queue:
                        later = queue.popleft()
                        self.stats["left"] += 1
                        _resolve(later.done, "left")
        finally:
            for job in queue:
                _resolve(job.done, "left")
            queue.clear()
            self._queues.pop(sid, None)
            self._workers.pop(sid, None)

    async def _deliver(self, job: _Job) -> Result:
        closed = await self._window_closed(job)
        for i in range(job.first, len(job.replies)):
            reply = job.replies[i]
            if closed and reply.template is None:
                await self._failed(job, i, "outside_window")
                return "failed"
            sent = await self._send_one(job, i, reply)
            if not isinstance(sent, _Sent):
                return sent
            job.attempts = 0
            await self._record_sent(job, i, reply, sent.wamid)
            job.first = i + 1
        if job.ack and job.record:
            await self.runtime.store.ack_effects(job.sid, job.version, defer=True)
        return "sent"

    async def _window_closed(self, job: _Job) -> bool:
        """Is the user's 24-hour window closed for ``job``'s free-form replies?"""
        rt = self.runtime
        if not (job.record and rt.window_ms() and any(r.template is None for r in job.replies)):
            return False
        if not rt.window_closed(job.sid, lambda: None):
            return False
        # not open by what this process saw: ask the store (another process may know better)
        last = await rt.store.last_inbound(job.sid)
        return rt.window_closed(job.sid, lambda: last)

    async def _send_one(self, job: _Job, index: int, reply: Reply) -> _Sent | Result:
        """Send one reply, retrying what may pass later; the wamid, or how the job ends."""
        rt = self.runtime
        while True:
            if time.monotonic() - job.since > self.lease_after and job.record:
                await rt.store.defer(delivery.lease_commands(job.sid, job.version, rt.store.now_ms()))
            await self.pacer_for(job.sid).wait()
            try:
                return _Sent(await rt.channel.send(job.sid, reply))
            except (ChannelError, OSError) as exc:
                delay = self._handle_error(job, index, exc)
                if delay is None:
                    if classify(exc) == "permanent":
                        await self._failed(job, index, error_name(exc))
                        return "failed"
                    return "left"
            self.stats["retries"] += 1
            if job.record:
                await rt.store.defer(delivery.lease_commands(job.sid, job.version, rt.store.now_ms()))
            await asyncio.sleep(delay)

    async def _record_sent(self, job: _Job, index: int, reply: Reply, wamid: str | None) -> None:
        rt = self.runtime
        metric(rt.metrics, "sent")
        # the transcript also keeps replies outside any commit (unrouted: no version)
        out = transcript.outbound_commands(rt.store, job.sid, reply, wamid=wamid, ts=rt.clock(),
                                           version=job.version if job.record else None,
                                           index=index if job.record else None)
        await rt.store.defer((delivery.sent_commands(job.sid, job.version, index, wamid,
                                                     where=_places(rt).get(job.sid, job.version))
                              if wamid and job.record else []) + out)

    def _handle_error(self, job: _Job, index: int, exc: Exception) -> float | None:
        """Seconds to wait before trying ``job``'s reply again, or None to stop trying."""
        kind = classify(exc)
        rt = self.runtime
        metric(rt.metrics, "send_failed")
        fields = {"session_id": job.sid, "version": job.version, "index": index, "kind": kind,
                  "error_code": error_name(exc), **error_fields(exc)}
        if kind == "permanent":
            log.warning("reply send failed; not retried: WhatsApp refuses it for good", extra=fields)
            return None
        if kind == "unknown":
            log.warning("reply may or may not have been delivered; left in the outbox for recovery", extra=fields)
            return None
        retry_after = getattr(exc, "retry_after", None)
        job.attempts += 1
        delay: float = retry_after if retry_after is not None else \
            min(self.max_backoff, self.backoff * 2 ** min(job.attempts - 1, 10)) * self.rng.uniform(0.5, 1.0)
        if kind == "account":
            log.error("WhatsApp refuses every send from this account; fix it, the replies wait in the outbox",
                      extra=fields | {"alert": "whatsapp_account"})
            metric(rt.metrics, "whatsapp_alert", error_name(exc))
            delay = max(delay, ACCOUNT_PAUSE_S)
            self.pacer_for(job.sid).pause(delay)
        elif kind == "throttle":
            self.pacer_for(job.sid).pause(delay)
        if time.monotonic() + delay - job.since > self.max_wait:
            log.warning("reply still failing; left in the outbox for recovery", extra=fields)
            return None
        log.info("reply send failed; retrying", extra=fields | {"delay_s": round(delay, 3)})
        return delay

    async def _failed(self, job: _Job, index: int, error: str) -> None:
        rt = self.runtime
        metric(rt.metrics, "delivery_failed", error)
        log.error("reply not delivered", extra={"session_id": job.sid, "version": job.version, "index": index,
                                                "error_code": error})
        if job.record:
            await rt.record_undeliverable(job.sid, job.version, index, error, route=job.route)
            if job.ack:
                await rt.store.ack_effects(job.sid, job.version, defer=True)


def _resolve(fut: asyncio.Future[Result], result: Result) -> None:
    if not fut.done():
        fut.set_result(result)


__all__ = ["ACCOUNT_CODES", "OutboxSender", "PERMANENT_CODES", "Pacer", "Pacers", "classify", "error_name", "outside_window",
           "undeliverable_event"]
