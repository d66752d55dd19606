"""Redis out of memory (``maxmemory`` reached, ``noeviction``): writes raise StoreOutOfMemory, a
StoreUnavailable (callers answer 503, not 500), nothing is half written, and everything works
again once memory is available. Against a real redis-server with a tiny ``maxmemory``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit.errors import StoreOutOfMemory, StoreUnavailable
from flowkit.store import AsyncStore, RedisServer, Store, backup, connect, connect_async, restore
from tests.store.conftest import advance, make_record, make_state


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("oom"), appendonly=False,
                         extra_args=["--maxmemory-policy", "noeviction"]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(small: RedisServer) -> Iterator[Any]:
    c = connect(small.url)
    c.config_set("maxmemory", 0)
    c.flushall()
    try:
        yield c
    finally:
        c.config_set("maxmemory", 0)
        c.close()


def full(client: Any) -> None:
    """Every byte Redis holds is now over the limit: each write that may grow memory is refused."""
    client.config_set("maxmemory", 1)


def roomy(client: Any) -> None:
    client.config_set("maxmemory", 0)


def next_commit(prev: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    new = make_state("u1", 2, "ask_qty", slots={"size": "large"})
    return new, make_record(new, prev["step"], message_id="m2")


def test_a_commit_refused_for_memory_raises_store_out_of_memory(client: Any) -> None:
    store = Store(client)
    prev = advance(store, "u1", None, "ask_size", message_id="m1")
    full(client)
    new, rec = next_commit(prev)
    with pytest.raises(StoreOutOfMemory, match="out of memory.*the session is unchanged") as err:
        store.commit("u1", 1, new, rec, previous=prev, message_id="m2", effects=[{"type": "text"}])
    assert isinstance(err.value, StoreUnavailable)
    assert store.load("u1") == prev and len(store.history("u1")) == 1  # reads still work; nothing changed
    roomy(client)
    new, rec = next_commit(prev)
    assert store.commit("u1", 1, new, rec, previous=prev, message_id="m2").outcome == "ok"  # the retry applies
    # (the refused commit's optimistic index removals ran: Redis never refuses a ZREM; the
    # retry wrote the indexes again)
    assert store.reconcile(dry_run=True).fixed == 0


def test_async_commit_too(small: RedisServer, client: Any) -> None:
    async def main() -> None:
        store = AsyncStore(connect_async(small.url))
        try:
            s1 = make_state("u1", 1)
            assert (await store.commit("u1", 0, s1, make_record(s1, None, event="start"))).outcome == "ok"
            full(client)
            new, rec = next_commit(s1)
            with pytest.raises(StoreOutOfMemory):
                await store.commit("u1", 1, new, rec, previous=s1, message_id="m2")
            roomy(client)
            assert (await store.load("u1")) == s1
        finally:
            await store.client.aclose()

    asyncio.run(main())


def test_restore_refused_for_memory_leaves_the_session_whole(client: Any, tmp_path: Path) -> None:
    store = Store(client)
    prev = advance(store, "u1", None, "ask_size")
    advance(store, "u1", prev, "ask_qty")
    out = tmp_path / "b.jsonl"
    backup(store, out)
    client.flushall()
    older = advance(store, "u1", None, "ask_size")
    full(client)
    with pytest.raises(StoreOutOfMemory):
        restore(store, out)
    roomy(client)
    assert store.load("u1") == older and len(store.history("u1")) == 1
    assert store.reconcile(dry_run=True).fixed == 0
    assert restore(store, out).restored == 1
