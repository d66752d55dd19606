"""The same store on a local 3-master Redis Cluster (started with the same binary and
``redis-cli --cluster create``): hash-tagged keys keep each session's script in one slot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowkit.store import AsyncStore, LocalCluster, Store, backup, connect_async, restore
from flowkit.store import keys as K
from tests.store.conftest import advance, make_record, make_state

pytestmark = pytest.mark.cluster


def test_cluster_has_three_masters_from_the_same_binary(redis_cluster: LocalCluster, cluster_client: Any) -> None:
    assert len(cluster_client.get_primaries()) == 3
    assert {n.binary for n in redis_cluster.nodes} == {redis_cluster.binary}
    assert redis_cluster.url.startswith("redis+cluster://")


def test_store_on_cluster(cluster_client: Any, tmp_path: Path) -> None:
    store = Store(cluster_client, snapshot_every=3)
    sessions = [f"user{i}" for i in range(30)]
    for sid in sessions:
        prev = None
        for i in range(5):
            prev = advance(store, sid, prev, f"step{i}", message_id=f"{sid}-{i}", i=i)
    # sessions really are spread over the three masters
    nodes = {cluster_client.get_node_from_key(K.session_keys(sid).state).name for sid in sessions}
    assert len(nodes) == 3
    cur = store.load("user0")
    trips = store.round_trips
    advance(store, "user0", cur, "again", message_id="x")
    assert store.round_trips - trips == 1
    s = make_state("user0", 0, "late")
    assert store.commit("user0", 2, s, make_record(s, "step1")).outcome == "conflict"
    assert store.commit("user0", 2, dict(s), make_record(s, "step1", message_id="user0-3"),
                        message_id="user0-3").outcome == "duplicate"
    assert [h["version"] for h in store.history("user1")] == [1, 2, 3, 4, 5]
    assert store.state_at("user1", 2)["slots"] == {"i": 1}
    assert store.rollback("user1", 2).version == 6
    assert sorted(store.iter_session_ids(batch=7)) == sorted(sessions)  # SCAN on every master
    assert store.counters()["order_pizza"]["sessions"] == 30
    assert store.active_count() == 30 and len(store.due_timeouts(10**15, limit=100)) == 30
    assert store.reconcile().fixed == 0

    # corruption and recovery work per slot too
    cluster_client.hset(K.session_keys("user2").state, "state", "garbage")
    assert store.load("user2")["version"] == 6 and store.quarantine_count() == 1

    # backup and restore through the cluster
    out = tmp_path / "cluster.jsonl"
    assert backup(store, out).sessions == 30
    for node in cluster_client.get_primaries():
        cluster_client.flushall(target_nodes=node)
    report = restore(store, out)
    assert report.restored == 30
    assert [h["version"] for h in store.history("user1")] == [1, 2, 3, 4, 5, 6]
    assert store.reconcile().fixed == 0

    # a restore killed between a batch's sessions and their index entries (other slots):
    # the sessions are there, the indexes and counters are not; running it again repairs them
    cluster_client.delete(K.IDX_ACTIVE, K.IDX_TIMEOUTS, K.counter_key("order_pizza"))
    assert store.reconcile(dry_run=True).fixed > 0
    again = restore(store, out)
    assert (again.restored, again.skipped_newer) == (0, 30)
    assert store.reconcile(dry_run=True).fixed == 0


def test_noscript_on_a_cluster_node(cluster_client: Any) -> None:
    store = Store(cluster_client)
    prev = advance(store, "u1", None, "welcome")
    node = cluster_client.get_node_from_key(K.session_keys("u1").state)
    node.redis_connection.script_flush()
    advance(store, "u1", prev, "ask")  # reloaded transparently on that node
    assert len(store.history("u1")) == 2


def test_async_store_on_cluster(redis_cluster: LocalCluster, cluster_client: Any) -> None:
    async def main() -> None:
        a = AsyncStore(connect_async(redis_cluster.url))
        for i in range(10):
            s = make_state(f"a{i}", 0, "welcome")
            assert (await a.commit(f"a{i}", 0, s, make_record(s, None, event="start"))).ok
            s2 = make_state(f"a{i}", 1, "ask")
            assert (await a.commit(f"a{i}", 1, s2, make_record(s2, "welcome"), previous=s)).ok
        assert (await a.load("a3"))["version"] == 2
        assert sorted([sid async for sid in a.iter_session_ids()]) == sorted(f"a{i}" for i in range(10))
        assert (await a.state_at("a3", 1))["step"] == "welcome"
        await a.client.aclose()

    asyncio.run(main())
