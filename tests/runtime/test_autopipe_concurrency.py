"""The concurrency proof of tests/runtime/test_concurrency.py with auto-pipelining doing the
batching: 64 tasks, duplicated messages, commits of concurrent tasks written together on one
connection; the history checker then finds no lost and no doubled update."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime, FlowRegistry
from flowkit.store import AsyncStore, Store, connect_async
from tests.runtime.test_concurrency import TALLY, prove, workload


@pytest.mark.parametrize("cache_size", [10_000, 0])
def test_autopipelined_async_runtime_loses_and_doubles_nothing(redis_url: str, store: Store, cache_size: int) -> None:
    deliveries = workload(sessions=100, per_session=40, dup_rate=0.10, seed=21)
    registry = FlowRegistry([TALLY])
    channel = AsyncRecordingChannel()
    outcomes: Counter[str] = Counter()

    async def main() -> tuple[int, int, int]:
        astore = AsyncStore(connect_async(redis_url))
        pipe = astore.driver.pipeline
        assert pipe is not None
        rt = AsyncRuntime(astore, registry, channel=channel, cache_size=cache_size)
        for sid, m in deliveries[:100]:
            outcomes[(await rt.handle(sid, m)).status] += 1
        it = iter(deliveries[100:])
        trips, writes = astore.round_trips, pipe.total_writes

        async def worker() -> None:
            for sid, m in it:  # one shared iterator: each delivery taken by exactly one task
                outcomes[(await rt.handle(sid, m)).status] += 1

        await asyncio.gather(*(worker() for _ in range(64)))
        await astore.flush()
        result = astore.round_trips - trips, pipe.total_writes - writes, rt.stats["conflicts"]
        await astore.client.aclose()
        return result

    trips, writes, conflicts = asyncio.run(main())
    assert conflicts > 0  # concurrent tasks really raced on the same sessions
    assert writes * 4 < trips  # and their round trips really shared writes
    prove(store, registry, channel, deliveries, outcomes)
