"""AsyncStore: the same operations on redis.asyncio, with the same results and round trips."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flowkit.store import AsyncStore, CommitResult, Store
from tests.store.conftest import make_record, make_state


def test_async_store_end_to_end(async_store_factory: Callable[..., AsyncStore], store: Store) -> None:
    async def main() -> None:
        a = async_store_factory(snapshot_every=2)
        s1 = make_state("u1", 0, "welcome")
        assert await a.commit("u1", 0, s1, make_record(s1, None, event="start", message_id="m1"),
                              effects=[{"kind": "reply"}], timeout_at_ms=5) == CommitResult("ok", 1)
        prev = s1
        for i in range(2, 6):
            s = make_state("u1", i - 1, f"step{i}", slots={"n": i})
            res = await a.commit("u1", i - 1, s, make_record(s, prev["step"], message_id=f"m{i}"), previous=prev,
                                 timeout_at_ms=10 + i)
            assert res.ok
            prev = s
        trips = a.round_trips
        s = make_state("u1", 5, "step6")
        assert (await a.commit("u1", 5, s, make_record(s, "step5", message_id="m6"), previous=prev)).ok
        assert a.round_trips - trips == 1
        assert await a.commit("u1", 3, dict(s), make_record(s, "x", message_id="m3")) == CommitResult("duplicate", 3)
        assert await a.load("u1") == s
        assert await a.load_raw("u1") == s
        assert [h["version"] for h in await a.history("u1")] == [1, 2, 3, 4, 5, 6]
        assert (await a.state_at("u1", 3))["slots"] == {"n": 3}
        assert [c["path"] for c in (await a.diff("u1", 2, 3))["changes"]][0] == ["pending", "step"]
        assert await a.seen("u1", "m4") == 4
        assert await a.pending_effects("u1") == {1: [{"kind": "reply"}]}
        assert await a.ack_effects("u1", 1) and await a.unacked_effects(0) == []
        assert (await a.rollback("u1", 2)).version == 7
        assert await a.due_timeouts(10**15) == [] and await a.next_timeout_at() is None  # v6 had no timeout
        assert await a.set_timeout("u1", 99) and await a.due_timeouts(99) == ["u1"]
        assert await a.next_timeout_at() == 99
        assert (await a.active_sessions())[0][0] == "u1" and await a.active_count() == 1
        assert (await a.counters())["order_pizza"]["sessions"] == 1
        assert [sid async for sid in a.iter_session_ids()] == ["u1"]
        assert [st["session_id"] async for st in a.iter_sessions()] == ["u1"]
        assert [len(h) async for _, h in a.iter_histories()] == [7]
        assert await a.expire_idle(10**15, default_ms=1) == ["u1"]
        assert await a.quarantine_count() == 0 and await a.quarantined() == []
        assert await a.ping()
        assert await a.delete_session("u1")
        await a.client.aclose()

    asyncio.run(main())
    assert store.reconcile().fixed == 0


def test_async_concurrent_tasks_lose_nothing(async_store_factory: Callable[..., AsyncStore], store: Store) -> None:
    sessions = [f"a{i}" for i in range(20)]

    async def task(a: AsyncStore, i: int, n: int) -> int:
        done = 0
        for j in range(n):
            sid = sessions[(i + j) % len(sessions)]
            while True:
                cur = await a.load(sid)
                nxt = make_state(sid, cur["version"], "step", slots={"n": cur["slots"]["n"] + 1})
                res = await a.commit(sid, cur["version"], nxt, make_record(nxt, "step", message_id=f"{i}-{j}"),
                                     previous=cur)
                if res.ok:
                    done += 1
                    break
        return done

    async def main() -> int:
        a = async_store_factory()
        for sid in sessions:
            s = make_state(sid, 0, "step", slots={"n": 0})
            await a.commit(sid, 0, s, make_record(s, None, event="start"))
        counts = await asyncio.gather(*(task(a, i, 10) for i in range(64)))
        await a.client.aclose()
        return sum(counts)

    assert asyncio.run(main()) == 640
    for sid in sessions:
        final = store.load(sid)
        assert final["slots"]["n"] == final["version"] - 1
        assert [h["version"] for h in store.history(sid)] == list(range(1, final["version"] + 1))
    assert sum(store.load(sid)["slots"]["n"] for sid in sessions) == 640
    assert store.reconcile().fixes["counters"] == {"added": 0, "removed": 0, "changed": 0}


def test_async_and_sync_share_one_implementation() -> None:
    """The async store only drives the shared operations: no logic is written twice."""
    import inspect

    from flowkit.store import aio

    src = inspect.getsource(aio)
    assert "redis.call" not in src and "HSET" not in src and "json" not in src


def test_async_unavailable(tmp_path: Any) -> None:
    import pytest

    from flowkit.errors import StoreUnavailable
    from flowkit.store import connect_async
    from flowkit.store.server import free_port

    async def main() -> None:
        a = AsyncStore(connect_async(f"redis://127.0.0.1:{free_port()}/0"))
        s = make_state("u1", 0, "welcome")
        with pytest.raises(StoreUnavailable):
            await a.commit("u1", 0, s, make_record(s, None, event="start"))
        with pytest.raises(StoreUnavailable):
            await a.ping()
        await a.client.aclose()

    asyncio.run(main())
