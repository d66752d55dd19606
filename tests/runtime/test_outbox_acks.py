"""Outbox acknowledgements ride on the next round trip: the happy path costs one round trip
per message, an idle runtime still acknowledges within the flush delay, and an
acknowledgement that met a dead Redis is sent once Redis is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from flowkit.engine import UserMessage
from flowkit.errors import StoreUnavailable
from flowkit.runtime import AsyncRuntime, RecordingChannel, Runtime
from flowkit.store import AsyncStore, RedisServer, Store, connect, connect_async
from flowkit.store import keys as K
from flowkit.store.server import free_port
from tests.waiting import until, wait_for

from .conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from .test_concurrency import TALLY


def _outbox(client: object, sid: str) -> int:
    return client.hlen(K.session_keys(sid).fx)  # type: ignore[attr-defined,no-any-return]


def test_happy_path_costs_one_round_trip_per_message(store: Store, clock: object) -> None:
    store.driver.deferred.max_delay = 60  # no timer flush during the test: count only what messages cost
    rt = Runtime(store, [TALLY], clock=clock)  # type: ignore[arg-type]
    rt.handle("u1", UserMessage(text="tally", message_id="m0"))  # a new session: one load, one commit
    before = store.round_trips
    for i in range(1, 21):
        assert rt.handle("u1", UserMessage(text=f"x{i}", message_id=f"m{i}")).status == "applied"
    assert store.round_trips - before == 20  # each commit carries the previous message's ack
    assert store.load("u1")["slots"]["n"] == 20
    rt.drain()
    assert _outbox(store.client, "u1") == 0


def test_an_idle_runtime_acknowledges_within_the_flush_delay(store: Store, redis_url: str, clock: object) -> None:
    other = connect(redis_url)  # another process's view: it does not see this store's queue
    rt = Runtime(store, EXAMPLE_FLOWS, services=EXAMPLE_SERVICES, clock=clock)  # type: ignore[arg-type]
    rt.handle("u1", UserMessage(text="refund", message_id="m1"))
    assert len(store.driver.deferred) > 0
    wait_for(lambda: _outbox(other, "u1") == 0 and other.zcard(K.IDX_OUTBOX) == 0, "the idle flush")
    assert len(store.driver.deferred) == 0


def test_reads_of_the_outbox_see_this_process_acks_first(store: Store, clock: object) -> None:
    store.driver.deferred.max_delay = 60
    rt = Runtime(store, EXAMPLE_FLOWS, services=EXAMPLE_SERVICES, clock=clock)  # type: ignore[arg-type]
    rt.handle("u1", UserMessage(text="refund", message_id="m1"))
    assert _outbox(store.client, "u1") == 1  # not yet sent...
    assert store.pending_effects("u1") == {}  # ...but a read through the store sends it first
    assert store.unacked_effects(older_than_ms=0) == []


def test_an_ack_that_met_a_dead_redis_is_sent_when_it_returns(tmp_path: Path, clock: object) -> None:
    with RedisServer(tmp_path, port=free_port()) as server:
        store = Store(connect(server.url))
        store.driver.deferred.max_delay = 60
        rt = Runtime(store, EXAMPLE_FLOWS, services=EXAMPLE_SERVICES, channel=RecordingChannel(),
                     clock=clock)  # type: ignore[arg-type]
        rt.handle("u1", UserMessage(text="refund", message_id="m1"))
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.flush()
        queued = store.driver.deferred.take()
        store.driver.deferred.done(queued, failed=True)  # put back, as a failed round trip does
        kept = [c[0] for c in queued]  # the sent-reply record (runtime/sender.py), then HDEL + ZREM
        assert kept[-2:] == ["HDEL", "ZREM"] and len(store.driver.deferred) == len(kept)
        server.start()
        assert _outbox(store.client, "u1") == 1  # AOF kept the commit and its outbox entry
        store.flush()
        assert _outbox(store.client, "u1") == 0 and store.client.zcard(K.IDX_OUTBOX) == 0


def test_async_runtime_drain_sends_deferred_acks(redis_url: str, redis_client: object) -> None:
    async def main() -> None:
        astore = AsyncStore(connect_async(redis_url))
        astore.driver.deferred.max_delay = 60
        rt = AsyncRuntime(astore, EXAMPLE_FLOWS, services=EXAMPLE_SERVICES)
        await rt.handle("u1", UserMessage(text="refund", message_id="m1"))
        assert _outbox(redis_client, "u1") == 1
        await rt.drain()
        assert _outbox(redis_client, "u1") == 0
        await astore.client.aclose()

    asyncio.run(main())


def test_async_idle_flush(redis_url: str, redis_client: object) -> None:
    async def main() -> None:
        astore = AsyncStore(connect_async(redis_url))
        rt = AsyncRuntime(astore, EXAMPLE_FLOWS, services=EXAMPLE_SERVICES)
        await rt.handle("u1", UserMessage(text="refund", message_id="m1"))
        await until(lambda: _outbox(redis_client, "u1") == 0, "the idle flush")
        await astore.client.aclose()

    asyncio.run(main())


def test_flush_waits_for_acks_another_thread_is_sending(store: Store, clock: object) -> None:
    import threading

    store.driver.deferred.max_delay = 60
    rt = Runtime(store, EXAMPLE_FLOWS, services=EXAMPLE_SERVICES, clock=clock)  # type: ignore[arg-type]
    rt.handle("u1", UserMessage(text="refund", message_id="m1"))
    taken = store.driver.deferred.take()  # as another thread's round trip would, before it sends

    def slow_sender() -> None:
        # a window in which drain() most likely starts before the batch lands; if the machine
        # is too slow for that, the batch lands first and the test still holds (it cannot flake)
        time.sleep(0.3)
        store.driver._send(list(taken))
        store.driver.deferred.done(taken)

    threading.Thread(target=slow_sender).start()
    rt.drain()  # nothing queued, but one batch on its way: drain waits for it
    assert _outbox(store.client, "u1") == 0
