"""Many concurrent and duplicated messages on the same sessions: nothing lost, nothing applied twice.

The flow counts every message it applies (``n = n + 1``) and answers each one, so the
stored history proves the claim: for every session, versions are exactly 1..N, every
acknowledged message id appears exactly once, the final counter equals the number of
distinct messages, and the channel got exactly one reply per applied message.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter

from flowkit.check import check_store
from flowkit.engine import UserMessage
from flowkit.flow import load_flow
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime, FlowRegistry, RecordingChannel, Runtime
from flowkit.store import AsyncStore, Store, connect_async
from tests.runtime.conftest import ROOT

TALLY = load_flow(ROOT / "examples" / "tally.yaml")  # counts every message it applies


def workload(sessions: int, per_session: int, dup_rate: float, seed: int) -> list[tuple[str, UserMessage]]:
    """``sessions`` x ``per_session`` messages (the first one starts the flow), shuffled, with duplicates."""
    rng = random.Random(seed)
    deliveries = []
    for s in range(sessions):
        sid = f"3170{s:07d}"
        deliveries.append((sid, UserMessage(text="tally", message_id=f"wamid.{sid}.0")))
    rest = [(f"3170{s:07d}", UserMessage(text=f"hello {i}", message_id=f"wamid.3170{s:07d}.{i}"))
            for s in range(sessions) for i in range(1, per_session)]
    rng.shuffle(rest)
    for d in rest:
        deliveries.append(d)
        if rng.random() < dup_rate:
            # redelivered later, somewhere in the stream (WhatsApp does not redeliver in order)
            deliveries.insert(rng.randrange(sessions, len(deliveries) + 1), d)
    return deliveries


def prove(store: Store, registry: FlowRegistry, channel: RecordingChannel, deliveries: list[tuple[str, UserMessage]],
          outcomes: Counter[str]) -> None:
    distinct: dict[str, set[str]] = {}
    for sid, m in deliveries:
        distinct.setdefault(sid, set()).add(m.message_id or "")
    applied_total = 0
    for sid, ids in distinct.items():
        history = store.history(sid)
        state = store.load(sid)
        assert [r["version"] for r in history] == list(range(1, len(history) + 1)), sid  # no gap, no double
        applied = [r["message_id"] for r in history]
        assert sorted(applied) == sorted(ids), sid  # every message exactly once: none lost, none doubled
        assert state is not None and state["version"] == len(history)
        assert state["slots"]["n"] == len(ids) - 1  # the counter saw every message but the start
        assert len(channel.to(sid)) == len(ids)  # one reply per applied message (for the start: the first question)
        applied_total += len(history)
    assert outcomes["applied"] == applied_total
    assert outcomes["applied"] + outcomes["duplicate"] == len(deliveries)
    report = check_store(store, registry)
    assert report.ok, report.violations[:5]
    assert report.records == applied_total


def test_async_runtime_under_64_way_concurrency_with_duplicates(redis_url: str, store: Store) -> None:
    deliveries = workload(sessions=200, per_session=50, dup_rate=0.10, seed=7)
    assert len(deliveries) > 10_000
    registry = FlowRegistry([TALLY])
    channel = AsyncRecordingChannel()
    outcomes: Counter[str] = Counter()

    async def main() -> int:
        astore = AsyncStore(connect_async(redis_url))
        # cache_size=0: every event loads from Redis, so concurrent handlers really race on commits
        rt = AsyncRuntime(astore, registry, channel=channel, cache_size=0)
        queue: asyncio.Queue[tuple[str, UserMessage]] = asyncio.Queue()
        for d in deliveries[200:]:
            queue.put_nowait(d)
        # The starts first: a message that overtakes its session's start would be "unrouted"
        # (a helpful reply, nothing stored) and make the count below depend on timing.
        for sid, m in deliveries[:200]:
            outcomes[(await rt.handle(sid, m)).status] += 1

        async def worker() -> None:
            while not queue.empty():
                sid, m = queue.get_nowait()
                outcomes[(await rt.handle(sid, m)).status] += 1

        await asyncio.gather(*(worker() for _ in range(64)))
        await astore.client.aclose()
        return rt.stats["conflicts"]

    conflicts = asyncio.run(main())
    assert conflicts > 0  # the sessions really were contended
    assert outcomes["duplicate"] >= 0.09 * 10_000
    prove(store, registry, channel, deliveries, outcomes)


def test_threaded_runtime_with_duplicates(store: Store) -> None:
    """The blocking runtime from 16 threads: the same guarantee without asyncio."""
    deliveries = workload(sessions=20, per_session=40, dup_rate=0.10, seed=11)
    registry = FlowRegistry([TALLY])
    channel = RecordingChannel()
    rt = Runtime(store, registry, channel=channel, cache_size=0)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    for d in deliveries[:20]:
        outcomes[rt.handle(*d).status] += 1
    it = iter(deliveries[20:])

    def worker() -> None:
        while True:
            with lock:
                d = next(it, None)
            if d is None:
                return
            status = rt.handle(*d).status
            with lock:
                outcomes[status] += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    prove(store, registry, channel, deliveries, outcomes)


