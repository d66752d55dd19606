"""The agent outbox on a real Redis, posting to a real HTTP receiver: signed, retried, leased."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit.errors import AgentWebhookError
from flowkit.runtime.agent_outbox import (
    HEADER,
    OUTBOX,
    TRIES,
    Forwarder,
    Target,
    backoff_ms,
    put_sync,
    sign,
    verify,
)
from flowkit.store import AsyncStore
from tests.runtime.test_handoff_e2e import Receiver

SECRET = "s3cret-for-the-agent-webhook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_failed_post_is_retried_with_backoff_and_delivered_signed(
        redis_client: Any, async_store_factory: Callable[..., AsyncStore], receiver: Receiver) -> None:
    event = {"id": "u1:3", "type": "message", "session_id": "u1", "ts": int(time.time() * 1000),
             "message": {"text": "hi"}}
    put_sync(redis_client, event)
    receiver.fail_next = 1

    async def run() -> tuple[int, int, int]:
        store = async_store_factory()
        fwd = Forwarder(store.client, Target(receiver.url, SECRET))
        try:
            now = int(redis_client.zscore(OUTBOX, json.dumps(event, sort_keys=True, separators=(",", ":"))))
            first = await fwd.round(now)  # the receiver answers 500: kept, due again after the backoff
            early = await fwd.round(now + backoff_ms(1) - 1)
            late = await fwd.round(now + backoff_ms(1))
            return first, early, late
        finally:
            await fwd.close()
            await store.client.aclose()

    assert asyncio.run(run()) == (0, 0, 1)
    assert redis_client.zcard(OUTBOX) == 0 and redis_client.hlen(TRIES) == 0
    [(body, headers)] = receiver.posts
    assert json.loads(body) == event
    assert headers[HEADER.lower()] == sign(body, SECRET) and verify(body, headers[HEADER.lower()], SECRET)
    assert not verify(body, headers[HEADER.lower()].replace("a", "b", 1), SECRET) and not verify(body, None, SECRET)


def test_two_forwarders_post_an_event_once(redis_client: Any, async_store_factory: Callable[..., AsyncStore],
                                           receiver: Receiver) -> None:
    for i in range(20):
        put_sync(redis_client, {"id": f"u{i}:1", "session_id": f"u{i}", "ts": 1_000})

    async def run() -> int:
        stores = [async_store_factory(), async_store_factory()]
        fwds = [Forwarder(s.client, Target(receiver.url, SECRET)) for s in stores]
        try:
            now = 10**13
            got = await asyncio.gather(*(f.round(now) for f in fwds))
            return sum(got)
        finally:
            for f, s in zip(fwds, stores, strict=True):
                await f.close()
                await s.client.aclose()

    assert asyncio.run(run()) == 20
    assert sorted(json.loads(b)["id"] for b, _ in receiver.posts) == sorted(f"u{i}:1" for i in range(20))


def test_the_target_is_configured_from_the_environment_or_refused() -> None:
    assert Target.from_env({}) is None
    t = Target.from_env({"FLOWKIT_AGENT_WEBHOOK": "https://agents.example/hook?token=abc",
                         "FLOWKIT_AGENT_WEBHOOK_SECRET": SECRET})
    assert t is not None and SECRET not in repr(t) and "abc" not in repr(t)
    with pytest.raises(AgentWebhookError, match="FLOWKIT_AGENT_WEBHOOK_SECRET is not"):
        Target.from_env({"FLOWKIT_AGENT_WEBHOOK": "https://agents.example/hook"})
    with pytest.raises(AgentWebhookError, match="http"):
        Target.from_env({"FLOWKIT_AGENT_WEBHOOK": "ftp://agents.example", "FLOWKIT_AGENT_WEBHOOK_SECRET": SECRET})


def test_an_event_failing_for_a_day_is_dropped(redis_client: Any, async_store_factory: Callable[..., AsyncStore],
                                               receiver: Receiver) -> None:
    put_sync(redis_client, {"id": "old:1", "session_id": "old", "ts": 1_000})
    receiver.fail_next = 1

    async def run() -> int:
        store = async_store_factory()
        fwd = Forwarder(store.client, Target(receiver.url, SECRET))
        try:
            return await fwd.round(10**13)
        finally:
            await fwd.close()
            await store.client.aclose()

    assert asyncio.run(run()) == 0
    assert redis_client.zcard(OUTBOX) == 0 and receiver.posts == []
