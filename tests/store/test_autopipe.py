"""Auto-pipelining in the async driver (flowkit/store/autopipe.py), on a real redis-server:
concurrent callers' batches share one connection and one write per event-loop tick, and
each caller still gets exactly its own replies, its own errors, and a clean failure when
the connection breaks, stalls or its task is cancelled."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import exceptions as rx

from flowkit.errors import StoreUnavailable
from flowkit.store import AsyncStore, RedisServer, connect_async
from flowkit.store.driver import AsyncDriver, Call
from flowkit.store.scripts import NOOP
from tests.waiting import DEADLINE

#: a Lua script that keeps Redis busy for ARGV[1] ms: a batch that is written but not yet answered
BUSY = ("EVAL", "local t0 = redis.call('TIME'); local ms = tonumber(ARGV[1]); "
        "while true do local t = redis.call('TIME'); "
        "if (t[1] - t0[1]) * 1000 + (t[2] - t0[2]) / 1000 >= ms then return 'done' end end", 0)


async def until(cond: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll ``cond`` on the event loop until true (a deadline, not a fixed wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def writes(driver: AsyncDriver) -> int:
    assert driver.pipeline is not None
    return driver.pipeline.total_writes


def test_concurrent_batches_get_their_own_replies_in_order(async_store_factory: Callable[..., AsyncStore]) -> None:
    async def main() -> None:
        store = async_store_factory()
        driver = store.driver
        assert driver.pipeline is not None  # standalone, pooled client: on by default

        async def caller(i: int) -> None:
            for j in range(20):
                replies = await driver.execute([("SET", f"k{i}", f"{i}.{j}"), ("INCR", f"n{i}"),
                                                ("GET", f"k{i}"), ("ECHO", f"caller {i}")])
                assert replies == [b"OK", j + 1, f"{i}.{j}".encode(), f"caller {i}".encode()]

        before = writes(driver)
        await asyncio.gather(*(caller(i) for i in range(64)))
        # 64 x 20 batches; concurrent callers' batches left together, far fewer writes than batches
        assert writes(driver) - before < 64 * 20 / 4
        await store.client.aclose()

    asyncio.run(main())


def test_error_replies_reach_the_caller_that_sent_them(async_store_factory: Callable[..., AsyncStore]) -> None:
    async def main() -> None:
        store = async_store_factory()
        await store.driver.execute([("SET", "text", "not a number")])

        async def good(i: int) -> list[Any]:
            return await store.driver.execute([("INCR", f"ok{i}"), ("ECHO", f"g{i}")])

        async def bad(i: int) -> list[Any]:
            # a command failing in the middle of a batch: the commands around it still run
            return await store.driver.execute([("SET", f"before{i}", "1"), ("INCR", "text"), ("SET", f"after{i}", "2")])

        results = await asyncio.gather(*(good(i) if i % 2 else bad(i) for i in range(40)))
        for i, replies in enumerate(results):
            if i % 2:
                assert replies == [1, f"g{i}".encode()]
            else:
                assert replies[0] == replies[2] == b"OK"  # raw replies: no response callbacks
                assert isinstance(replies[1], rx.ResponseError) and "not an integer" in str(replies[1])
                assert await store.driver.execute([("MGET", f"before{i}", f"after{i}")]) == [[b"1", b"2"]]
        await store.client.aclose()

    asyncio.run(main())


def test_noscript_falls_back_to_eval_for_the_callers_that_need_it(
        async_store_factory: Callable[..., AsyncStore], redis_client: Any) -> None:
    async def main() -> None:
        store = async_store_factory()  # the fixture flushed the script cache: EVALSHA answers NOSCRIPT
        results = await asyncio.gather(*(store.driver.execute([("ECHO", f"e{i}"), Call(NOOP, (f"k{i}",), ())])
                                         for i in range(16)))
        assert [r[0] for r in results] == [f"e{i}".encode() for i in range(16)]
        assert all(not isinstance(r[1], Exception) for r in results)
        await store.client.aclose()

    asyncio.run(main())
    assert redis_client.script_exists(NOOP.sha) == [True]


def test_a_cancelled_caller_before_the_write_sends_nothing(async_store_factory: Callable[..., AsyncStore],
                                                           redis_client: Any) -> None:
    async def main() -> None:
        store = async_store_factory()
        assert await store.ping()  # connected: the next call queues without awaiting a connect
        task = asyncio.get_running_loop().create_task(store.driver.execute([("SET", "cancelled", "1")]))
        await asyncio.sleep(0)  # the task queued its batch; the write is scheduled after this step
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.driver.execute([("GET", "cancelled"), ("ECHO", "next")]) == [None, b"next"]
        await store.client.aclose()

    asyncio.run(main())
    assert redis_client.get("cancelled") is None


def test_a_cancelled_caller_after_the_write_keeps_the_stream_in_sync(
        async_store_factory: Callable[..., AsyncStore]) -> None:
    async def main() -> None:
        store = async_store_factory()
        pipe = store.driver.pipeline
        assert pipe is not None and await store.ping()
        task = asyncio.get_running_loop().create_task(
            store.driver.execute([(*BUSY, "200"), ("SET", "after_cancel", "ran"), ("ECHO", "mine")]))
        await until(lambda: pipe._link is not None and len(pipe._link.waiting) == 1)  # written, unanswered
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # its three replies arrive and are dropped; the next caller gets its own
        assert await store.driver.execute([("GET", "after_cancel"), ("ECHO", "yours")]) == [b"ran", b"yours"]
        await store.client.aclose()

    asyncio.run(main())


def test_redis_restart_mid_batch_fails_every_waiting_caller_then_reconnects(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "restart").start()
    port = server.port

    async def main() -> None:
        store = AsyncStore(connect_async(server.url))
        pipe = store.driver.pipeline
        assert pipe is not None and await store.ping()
        busy = asyncio.ensure_future(store.driver.execute([(*BUSY, "5000")]))
        others = [asyncio.ensure_future(store.driver.execute([("INCR", f"c{i}")])) for i in range(10)]
        await until(lambda: pipe._link is not None and len(pipe._link.waiting) == 11)
        server.kill()
        for fut in (busy, *others):
            with pytest.raises(StoreUnavailable) as err:
                await fut
            assert isinstance(err.value.__cause__, rx.ConnectionError)
        with pytest.raises(StoreUnavailable):
            await store.ping()  # nobody listening: a clear error, not a hang
        restarted = RedisServer(tmp_path / "restart", port=port).start()
        try:
            assert await store.driver.execute([("ECHO", "back")]) == [b"back"]  # a fresh connection
            await store.client.aclose()
        finally:
            restarted.stop()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_a_stopped_redis_times_out_every_waiting_caller(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "stopped").start()

    async def main() -> None:
        store = AsyncStore(connect_async(f"{server.url}?socket_timeout=0.5"))
        pipe = store.driver.pipeline
        assert pipe is not None and await store.ping()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            # a deadline, so a missing timeout fails the test instead of hanging it
            results = await asyncio.wait_for(asyncio.gather(*(store.driver.execute([("INCR", "t")]) for _ in range(8)),
                                                            return_exceptions=True), 30)
            assert all(isinstance(r, StoreUnavailable) and isinstance(r.__cause__, rx.TimeoutError) for r in results)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        # the timed-out connection was dropped (its replies would arrive out of place): a new one answers
        assert await store.driver.execute([("GET", "t"), ("ECHO", "ok")]) in ([None, b"ok"], [b"8", b"ok"])
        await store.client.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_closing_the_client_closes_the_pipelined_connection(async_store_factory: Callable[..., AsyncStore]) -> None:
    async def main() -> None:
        store = async_store_factory()
        pipe = store.driver.pipeline
        assert pipe is not None and await store.ping()
        link = pipe._link
        assert link is not None
        await store.client.aclose()
        await until(lambda: link.task.done())  # the reader saw the close and ended
        assert link.writer.transport.is_closing()

    asyncio.run(main())


def test_autopipeline_off_uses_the_pool(async_store_factory: Callable[..., AsyncStore]) -> None:
    async def main() -> None:
        store = async_store_factory()
        driver = AsyncDriver(store.client, autopipeline=False)
        assert driver.pipeline is None
        assert await asyncio.gather(*(driver.execute([("ECHO", f"{i}")]) for i in range(8))) == \
            [[f"{i}".encode()] for i in range(8)]
        await store.client.aclose()

    asyncio.run(main())


def test_cancelling_the_caller_that_opens_the_connection_spares_the_others(
        async_store_factory: Callable[..., AsyncStore]) -> None:
    async def main() -> None:
        store = async_store_factory()  # not connected yet: the first caller opens the connection
        loop = asyncio.get_running_loop()
        first = loop.create_task(store.driver.execute([("ECHO", "first")]))
        others = [loop.create_task(store.driver.execute([("ECHO", f"o{i}")])) for i in range(5)]
        await asyncio.sleep(0)  # every task is now waiting on the one connect
        first.cancel()
        assert await asyncio.gather(*others) == [[f"o{i}".encode()] for i in range(5)]
        with pytest.raises(asyncio.CancelledError):
            await first
        await store.client.aclose()

    asyncio.run(main())
