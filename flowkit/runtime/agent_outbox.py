"""The agent outbox: hand-off events delivered to ``FLOWKIT_AGENT_WEBHOOK``, signed, with retries.

An event (a new hand-off, a user's message during one) is a JSON object kept in the sorted
set ``fk:agent:outbox`` scored by when it is next due. :class:`Forwarder` (run by
``flowkit serve``) takes due events with a lease (a Lua script moves the score forward, so
two processes never post the same event at once), POSTs each one and removes it on a 2xx.
A failure is retried with exponential backoff (1 s doubling to 5 min); after
:data:`GIVE_UP_MS` the event is dropped with an error log. Delivery is at least once: the
receiver deduplicates on the event's ``id``.

Each POST carries ``X-Flowkit-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` keyed by
``FLOWKIT_AGENT_WEBHOOK_SECRET``, as Meta signs its webhooks; :func:`verify` checks one in
constant time (for receivers written in Python, and the tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from flowkit.errors import AgentWebhookError
from flowkit.log import get_logger

if TYPE_CHECKING:
    from flowkit.types import RedisClient

log = get_logger("flowkit.agent")

ENV_URL = "FLOWKIT_AGENT_WEBHOOK"
ENV_SECRET = "FLOWKIT_AGENT_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret
HEADER = "X-Flowkit-Signature-256"
OUTBOX = "fk:agent:outbox"  # zset: event JSON -> next due (ms)
TRIES = "fk:agent:outbox:tries"  # hash: event JSON -> failed attempts
LEASE_MS = 30_000
GIVE_UP_MS = 24 * 3_600_000
BATCH = 20

# Take an event only if it is due: its score moves to now + lease, so another process skips it.
_LEASE = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


def _now() -> int:
    return int(time.time() * 1000)


def encode(event: Mapping[str, Any]) -> str:
    return json.dumps(dict(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def put_sync(client: RedisClient, event: Mapping[str, Any]) -> None:
    client.zadd(OUTBOX, {encode(event): _now()}, nx=True)


async def put_async(client: RedisClient, event: Mapping[str, Any]) -> None:
    await client.zadd(OUTBOX, {encode(event): _now()}, nx=True)


def sign(body: bytes, secret: str) -> str:
    """The header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """Is ``header`` the signature of ``body`` under ``secret``? (constant time)"""
    return header is not None and hmac.compare_digest(sign(body, secret).encode(), header.encode())


def backoff_ms(tries: int) -> int:
    return int(min(300_000, 1000 * 2 ** min(20, max(0, tries - 1))))


@dataclass(frozen=True)
class Target:
    """Where agent events go, from ``FLOWKIT_AGENT_WEBHOOK`` and ``FLOWKIT_AGENT_WEBHOOK_SECRET``."""

    url: str
    secret: str = ""

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"Target(url={_shown(self.url)!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Target | None:
        env = os.environ if environ is None else environ
        url = env.get(ENV_URL, "").strip()
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AgentWebhookError(f"{ENV_URL} must be an http(s) URL, got {_shown(url)!r}; fix it or unset it")
        secret = env.get(ENV_SECRET, "")
        if not secret:
            raise AgentWebhookError(f"{ENV_URL} is set but {ENV_SECRET} is not: every agent event is signed with it. "
                                    f"Set {ENV_SECRET} (the receiver checks the {HEADER} header with the same secret)")
        return cls(url, secret)


def _shown(url: str) -> str:
    """The URL without credentials or query (a token in it must not reach a log)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname or ''}{':' + str(p.port) if p.port else ''}{p.path}"


class Forwarder:
    """Delivers the agent outbox to one :class:`Target` (an asyncio task of ``flowkit serve``)."""

    def __init__(self, client: RedisClient, target: Target, *, interval: float = 0.2, timeout: float = 10.0,
                 metrics: object = None) -> None:  # (counts agent_event if the sink has it)
        self.client = client
        self.target = target
        self.interval = interval
        self.metrics = metrics
        self.http = httpx.AsyncClient(timeout=timeout)
        self.delivered = 0
        self.failed = 0

    async def close(self) -> None:
        await self.http.aclose()

    async def run(self) -> None:
        """Deliver forever; Redis or receiver outages only delay events."""
        while True:
            try:
                await self.round()
            except Exception as exc:  # noqa: BLE001 - the loop must survive an outage; logged
                log.warning("agent events not delivered this round", extra={"error": str(exc)})
            await asyncio.sleep(self.interval)

    async def round(self, now: int | None = None) -> int:
        """Post every due event once; returns how many were delivered."""
        now = _now() if now is None else now
        due = await self.client.zrangebyscore(OUTBOX, "-inf", now, start=0, num=BATCH)
        done = 0
        for raw in due:
            member = raw.decode() if isinstance(raw, bytes) else raw
            if not await self.client.eval(_LEASE, 1, OUTBOX, member, now, now + LEASE_MS):
                continue
            if await self._post(member):
                await self.client.zrem(OUTBOX, member)
                await self.client.hdel(TRIES, member)
                done += 1
            else:
                await self._later(member, now)
        return done

    async def _post(self, member: str) -> bool:
        body = member.encode()
        headers = {"Content-Type": "application/json", HEADER: sign(body, self.target.secret)}
        try:
            res = await self.http.post(self.target.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._count("failed")
            log.warning("agent webhook unreachable; will retry", extra={"url": _shown(self.target.url),
                                                                        "error": type(exc).__name__})
            return False
        if 200 <= res.status_code < 300:
            self._count("delivered")
            return True
        self._count("failed")
        log.warning("agent webhook refused an event; will retry", extra={"url": _shown(self.target.url),
                                                                         "status": res.status_code})
        return False

    async def _later(self, member: str, now: int) -> None:
        tries = int(await self.client.hincrby(TRIES, member, 1))
        try:
            created = int(json.loads(member).get("ts") or now)
        except (ValueError, AttributeError):
            created = now
        if now - created > GIVE_UP_MS:
            log.error("agent event dropped after a day of failed deliveries",
                      extra={"event_id": _event_id(member), "tries": tries})
            await self.client.zrem(OUTBOX, member)
            await self.client.hdel(TRIES, member)
            return
        await self.client.zadd(OUTBOX, {member: now + backoff_ms(tries)}, xx=True)

    def _count(self, what: str) -> None:
        if what == "delivered":
            self.delivered += 1
        else:
            self.failed += 1
        inc = getattr(self.metrics, "agent_event", None)
        if inc is not None:
            inc(what)


def _event_id(member: str) -> str | None:
    try:
        got = json.loads(member).get("id")
    except (ValueError, AttributeError):
        return None
    return str(got) if got is not None else None


__all__ = ["ENV_SECRET", "ENV_URL", "Forwarder", "HEADER", "OUTBOX", "Target", "backoff_ms", "put_async", "put_sync",
           "sign", "verify"]
