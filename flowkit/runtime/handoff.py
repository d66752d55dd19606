"""Hand-off to a person: the runtime's part (the engine's is flowkit/engine/handoff.py).

- :class:`AgentActions` / :class:`AsyncAgentActions` give :class:`~flowkit.runtime.Runtime`
  and :class:`~flowkit.runtime.AsyncRuntime` ``handoff``, ``agent_reply`` and ``release``:
  commands through the normal commit, so an agent's reply leaves through the outbox under
  the 24-hour window rules and is a history record with actor ``agent``.
- The queue ``fk:agent:queue`` (session id -> since, ms) lists the sessions waiting for a
  person. It is an index, not the truth: a listing checks each session's state and drops
  entries whose session is no longer held (cancelled or expired by an operator).
- With ``FLOWKIT_AGENT_WEBHOOK`` set, every new hand-off and every user message during one
  is queued in the agent outbox (flowkit/runtime/agent_outbox.py) for delivery to that URL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from flowkit.engine import Command
from flowkit.errors import NotHeldError, SessionNotFound
from flowkit.flow.model import HELD_STATUSES
from flowkit.log import get_logger
from flowkit.runtime import agent_outbox, starts

if TYPE_CHECKING:
    from flowkit.runtime.handler import Outcome
    from flowkit.types import AsyncStoreProtocol, MetricsSink, RedisClient, StoreProtocol

QUEUE = "fk:agent:queue"  # zset: session id -> since (ms)
LAST = "fk:agent:last"  # hash: session id -> the last user message during its hand-off (JSON)
REPLIED = "fk:agent:replied"  # hash: session id -> 1 once an agent answered this hand-off (time to first reply)
ACTOR = "agent"
LIST_MAX = 1000

log = get_logger(__name__)


# what the actions need of a runtime: the same as a start's
_SyncRuntime = starts._SyncRuntime
_AsyncRuntime = starts._AsyncRuntime


@dataclass(frozen=True)
class Waiting:
    """A session in the "Waiting for a person" queue."""

    session_id: str
    flow: str
    step: str | None
    since_ms: int
    reason: str | None
    last_message: str | None
    last_message_ms: int | None

    def to_dict(self, now_ms: int) -> dict[str, Any]:
        return {"session_id": self.session_id, "flow": self.flow, "step": self.step,
                "since": _iso(self.since_ms), "since_ms": self.since_ms,
                "waiting_s": max(0, now_ms - self.since_ms) // 1000, "reason": self.reason,
                "last_message": self.last_message, "last_message_at": _iso(self.last_message_ms)}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- what one outcome means


@dataclass(frozen=True)
class _Effects:
    """The writes an applied outcome needs here (the queue, the last message, the outbox)."""

    enqueue: tuple[str, int] | None = None  # (sid, since)
    last: tuple[str, str] | None = None  # (sid, JSON)
    drop: str | None = None
    forward: Mapping[str, Any] | None = None  # an agent event, if it turns out to be new (see below)
    entered: bool = False  # the record entered the hand-off (else: a message during one)
    replied_at: int | None = None  # an agent's reply at this time (ms)
    flow: str = ""


def _message_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        payload = json.loads(record.get("input") or "null")
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    keep = {k: payload[k] for k in ("text", "type", "reply_id", "media", "location") if payload.get(k) is not None}
    return keep or None


def effects_of(outcome: Outcome) -> _Effects | None:
    """None for the common case (no hand-off involved): no extra round trip."""
    record = outcome.record
    if outcome.status != "applied" or record is None:
        return None
    sid, ts = outcome.session_id, int(record.get("ts") or 0)
    if record.get("status") in HELD_STATUSES:
        entered = bool(record.get("path"))
        message = _message_of(record) if record.get("event") == "message" else None
        event: dict[str, Any] = {"id": f"{sid}:{outcome.version}", "type": "handoff" if entered else "message",
                                 "session_id": sid, "flow": outcome.flow, "version": outcome.version, "ts": ts,
                                 "step": record.get("to_step")}
        if message is not None:
            event["message"] = message
        if entered and _command_name(record) == "handoff":
            try:
                event["reason"] = json.loads(record.get("input") or "{}").get("args", {}).get("reason")
            except (ValueError, AttributeError):
                pass
        forward = event if entered or message is not None else None
        last = (sid, json.dumps({"text": message.get("text") or f"[{message.get('type')}]", "ts": ts})) if message else None
        replied = ts if _command_name(record) == "agent_reply" else None
        return _Effects(enqueue=(sid, ts), last=last, forward=forward, entered=entered, replied_at=replied,
                        flow=outcome.flow or "")
    if record.get("error") == "handoff_timeout" or _command_name(record) == "release":
        return _Effects(drop=sid)
    return None


def _command_name(record: Mapping[str, Any]) -> str | None:
    if record.get("event") != "command":
        return None
    try:
        got = json.loads(record.get("input") or "{}")
    except ValueError:
        return None
    return got.get("command") if isinstance(got, dict) else None


def _forwarding() -> bool:
    return bool(os.environ.get(agent_outbox.ENV_URL))


def after_sync(client: RedisClient, outcome: Outcome, metrics: MetricsSink | None = None) -> None:
    """Keep the queue and the agent outbox in step with an applied outcome (blocking).

    The commit is done when this runs: Redis going away now must not turn the delivery into
    an error (its redelivery would only be a duplicate). The bookkeeping is logged as not
    written; the session's next message or agent action writes the queue again."""
    fx = effects_of(outcome)
    if fx is None:
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            _queue_writes(pipe, fx)
            _count(fx, pipe.execute(), metrics)
        if fx.forward is not None and _forwarding():
            agent_outbox.put_sync(client, fx.forward)
    except (RedisError, OSError) as exc:
        _not_written(outcome, exc)


async def after_async(client: RedisClient, outcome: Outcome, metrics: MetricsSink | None = None) -> None:
    """:func:`after_sync` for the asyncio runtime."""
    fx = effects_of(outcome)
    if fx is None:
        return
    try:
        async with client.pipeline(transaction=False) as pipe:
            _queue_writes(pipe, fx)
            _count(fx, await pipe.execute(), metrics)
        if fx.forward is not None and _forwarding():
            await agent_outbox.put_async(client, fx.forward)
    except (RedisError, OSError) as exc:
        _not_written(outcome, exc)


def _not_written(outcome: Outcome, exc: BaseException) -> None:
    log.warning("hand-off bookkeeping not written (Redis unavailable after the commit); the session's next "
                "message or agent action writes it", extra={"session_id": outcome.session_id,
                                                              "version": outcome.version, "error": type(exc).__name__})


def _count(fx: _Effects, replies: list[Any], metrics: MetricsSink | None) -> None:
    """Hand-offs, and the time from a hand-off to its first agent reply (the last two answers
    of the pipeline are HSETNX and ZSCORE when ``replied_at`` is set)."""
    if metrics is None:
        return
    handoff = getattr(metrics, "handoff", None)  # (not every sink counts hand-offs)
    if fx.entered and handoff is not None:
        handoff(fx.flow)
    if fx.replied_at is not None and replies[-2] and replies[-1] is not None:
        first = getattr(metrics, "agent_first_reply", None)
        if first is not None:
            first(fx.flow, max(0.0, (fx.replied_at - float(replies[-1])) / 1000))


def _queue_writes(pipe: RedisClient, fx: _Effects) -> None:  # (a pipeline of either client)
    if fx.enqueue is not None:
        sid, since = fx.enqueue
        if fx.entered:
            pipe.zadd(QUEUE, {sid: since})
        else:  # a message of a session whose entry was lost (a crash after the commit) re-adds it
            pipe.zadd(QUEUE, {sid: since}, nx=True)
    if fx.last is not None:
        pipe.hset(LAST, fx.last[0], fx.last[1])
    elif fx.entered and fx.enqueue is not None:
        pipe.hdel(LAST, fx.enqueue[0])
    if fx.entered and fx.enqueue is not None:
        pipe.hdel(REPLIED, fx.enqueue[0])
    if fx.drop is not None:
        pipe.zrem(QUEUE, fx.drop)
        pipe.hdel(LAST, fx.drop)
        pipe.hdel(REPLIED, fx.drop)
    if fx.replied_at is not None and fx.enqueue is not None:  # keep these two last (see _count)
        pipe.hsetnx(REPLIED, fx.enqueue[0], 1)
        pipe.zscore(QUEUE, fx.enqueue[0])


# ---------------------------------------------------------------- the queue


def _waiting(sid: str, raw: Mapping[str, Any] | None, last: str | bytes | None) -> Waiting | None:
    if raw is None or raw.get("status") not in HELD_STATUSES:
        return None
    pending = raw.get("pending") or {}
    text: str | None = None
    at: int | None = None
    if last:
        try:
            got = json.loads(last)
            text, at = got.get("text"), got.get("ts")
        except (ValueError, AttributeError):
            text = None
    return Waiting(sid, str(raw.get("flow")), raw.get("step"), int(pending.get("since") or raw.get("updated_at") or 0),
                   pending.get("reason"), text, at)


def _sid(member: str | bytes) -> str:
    return member.decode() if isinstance(member, bytes) else member


def waiting_sync(store: StoreProtocol, limit: int = LIST_MAX) -> list[Waiting]:
    """The sessions waiting for a person, longest wait first."""
    client = store.client
    out = []
    for member in client.zrange(QUEUE, 0, limit - 1):
        sid = _sid(member)
        w = _waiting(sid, store.load(sid), client.hget(LAST, sid))
        if w is None:
            client.zrem(QUEUE, sid)  # no longer held: ended or released some other way
            client.hdel(LAST, sid)
            continue
        out.append(w)
    return sorted(out, key=lambda w: w.since_ms)


async def waiting_async(store: AsyncStoreProtocol, limit: int = LIST_MAX) -> list[Waiting]:
    """:func:`waiting_sync` for the asyncio store."""
    client = store.client
    out = []
    for member in await client.zrange(QUEUE, 0, limit - 1):
        sid = _sid(member)
        w = _waiting(sid, await store.load(sid), await client.hget(LAST, sid))
        if w is None:
            await client.zrem(QUEUE, sid)
            await client.hdel(LAST, sid)
            continue
        out.append(w)
    return sorted(out, key=lambda w: w.since_ms)


# ---------------------------------------------------------------- the Python API


def _reply_command(text: str, agent: str | None) -> Command:
    args: dict[str, Any] = {"text": text}
    if agent:
        args["agent"] = agent
    return Command(name="agent_reply", args=args, actor=ACTOR)


def _release_command(to_step: str | None) -> Command:
    return Command(name="release", args={"to_step": to_step} if to_step else {}, actor=ACTOR)


def check_held(sid: str, raw: Mapping[str, Any] | None, what: str) -> None:
    """Refuse ``what`` (an agent's reply or a release) for a session nobody holds."""
    if raw is None:
        raise SessionNotFound(f"no session {sid!r}; check the WhatsApp id (flowkit agent list shows who waits)")
    if raw.get("status") not in HELD_STATUSES:
        raise NotHeldError(f"session {sid!r} is not in hand-off (it is {raw.get('status')}); {what} needs a session "
                           "held by people: hand it off first (runtime.handoff) or pick one from `flowkit agent list`")


class AgentActions:
    """Hand-off for the blocking :class:`~flowkit.runtime.Runtime`."""

    def handoff(self: _SyncRuntime, sid: str, reason: str | None = None) -> Outcome:
        """Put a live session in people's hands: the bot stops answering it."""
        if self.store.load(sid) is None:
            check_held(sid, None, "a hand-off")
        return self.handle(sid, Command(name="handoff", args={"reason": reason} if reason else {}, actor=ACTOR))

    def agent_reply(self: _SyncRuntime, sid: str, text: str, *, agent: str | None = None) -> Outcome:
        """Send ``text`` to the user of a held session as ``agent`` (through the outbox)."""
        check_held(sid, self.store.load(sid), "an agent's reply")
        return self.handle(sid, _reply_command(text, agent))

    def release(self: _SyncRuntime, sid: str, to_step: str | None = None) -> Outcome:
        """Give a held session back to the bot at ``to_step``, or end it (``completed``)."""
        check_held(sid, self.store.load(sid), "a release")
        return self.handle(sid, _release_command(to_step))

    def waiting(self: _SyncRuntime) -> list[Waiting]:
        """The sessions waiting for a person, longest wait first."""
        return waiting_sync(self.store)

    def start(self: _SyncRuntime, sid: str, flow: str, *, template: starts.TemplateSpec | None = None,
              slots: Mapping[str, Any] | None = None, key: str | None = None) -> starts.StartResult:
        """Start ``flow`` for the user ``sid`` (a business-initiated conversation; runtime/starts.py)."""
        return starts.start_sync(self, starts.StartRequest(sid, flow, template, dict(slots or {}), key))


class AsyncAgentActions:
    """Hand-off for :class:`~flowkit.runtime.AsyncRuntime`."""

    async def handoff(self: _AsyncRuntime, sid: str, reason: str | None = None) -> Outcome:
        if await self.store.load(sid) is None:
            check_held(sid, None, "a hand-off")
        return await self.handle(sid, Command(name="handoff", args={"reason": reason} if reason else {}, actor=ACTOR))

    async def agent_reply(self: _AsyncRuntime, sid: str, text: str, *, agent: str | None = None) -> Outcome:
        check_held(sid, await self.store.load(sid), "an agent's reply")
        return await self.handle(sid, _reply_command(text, agent), wait_services=False)

    async def release(self: _AsyncRuntime, sid: str, to_step: str | None = None) -> Outcome:
        check_held(sid, await self.store.load(sid), "a release")
        return await self.handle(sid, _release_command(to_step), wait_services=False)

    async def waiting(self: _AsyncRuntime) -> list[Waiting]:
        return await waiting_async(self.store)

    async def start(self: _AsyncRuntime, sid: str, flow: str, *, template: starts.TemplateSpec | None = None,
                    slots: Mapping[str, Any] | None = None, key: str | None = None) -> starts.StartResult:
        return await starts.start_async(self, starts.StartRequest(sid, flow, template, dict(slots or {}), key))


__all__ = ["AgentActions", "AsyncAgentActions", "QUEUE", "Waiting", "after_async", "after_sync", "check_held",
           "effects_of", "waiting_async", "waiting_sync"]
