"""Answer a message that matched no flow once, however often WhatsApp redelivers it.

A message that starts no session leaves no commit, so the commit script's dedupe never
sees it: without this, every redelivery sent another "Hi! I can help with...". The id is
claimed (ZADD NX) before the reply goes out and released if sending fails, so a crash in
between loses one courtesy reply rather than repeating it. The set is per sender, keeps
the last :data:`KEEP` ids and expires :data:`TTL_MS` after the last one (WhatsApp
redelivers for up to 7 days), so strangers cost no lasting memory and no session exists.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flowkit.store.codec import message_key

if TYPE_CHECKING:
    from flowkit.types import RedisClient

KEEP = 100
TTL_MS = 7 * 24 * 3600 * 1000


def key(session_id: str) -> str:
    return f"fk:{{s:{session_id}}}:unrouted"  # the session's hash tag: one slot on a Cluster


def _queue(pipe: RedisClient, session_id: str, message_id: str) -> None:
    k = key(session_id)
    pipe.zadd(k, {message_key(message_id): int(time.time() * 1000)}, nx=True)
    pipe.zremrangebyrank(k, 0, -KEEP - 1)
    pipe.pexpire(k, TTL_MS)


def claim(client: RedisClient, session_id: str, message_id: str) -> bool:
    """True if this is the first time ``message_id`` is answered as unrouted."""
    with client.pipeline(transaction=True) as pipe:
        _queue(pipe, session_id, message_id)
        return bool(pipe.execute()[0])


def release(client: RedisClient, session_id: str, message_id: str) -> None:
    client.zrem(key(session_id), message_key(message_id))


async def aclaim(client: RedisClient, session_id: str, message_id: str) -> bool:
    async with client.pipeline(transaction=True) as pipe:
        _queue(pipe, session_id, message_id)
        return bool((await pipe.execute())[0])


async def arelease(client: RedisClient, session_id: str, message_id: str) -> None:
    await client.zrem(key(session_id), message_key(message_id))
