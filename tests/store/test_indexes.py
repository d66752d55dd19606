"""Derived indexes (active sessions, timeouts, counters, outbox), reconcile, expiry and cleanup."""

from __future__ import annotations

from typing import Any

from flowkit.store import Store
from flowkit.store import keys as K
from tests.store.conftest import T0, advance, make_record, make_state
from tests.waiting import wait_for


def populate(store: Store) -> None:
    """Sessions in several flows, steps and statuses, some with unacknowledged effects."""
    for i in range(12):
        sid = f"s{i}"
        s = make_state(sid, 0, "welcome", flow="pizza" if i % 3 else "support")
        store.commit(sid, 0, s, make_record(s, None, event="start"), timeout_at_ms=T0 + 100_000 + i,
                     effects=[{"kind": "reply", "text": "hi"}] if i % 4 == 0 else ())
        if i % 2:
            s2 = make_state(sid, 1, "ask_size", flow=s["flow"])
            store.commit(sid, 1, s2, make_record(s2, "welcome"), previous=s, timeout_at_ms=T0 + 200_000 + i)
        if i % 5 == 0:
            done = make_state(sid, 0, "done", "completed", flow=s["flow"])
            cur = store.load(sid)
            store.commit(sid, cur["version"], done, make_record(done, cur["step"]), previous=cur)


def test_indexes_follow_commits(store: Store) -> None:
    populate(store)
    c = store.counters()
    assert c["pizza"]["sessions"] == 8 and c["support"]["sessions"] == 4
    assert c["pizza"]["status"] == {"waiting_input": 6, "completed": 2}
    assert c["support"]["step"] == {"welcome": 1, "ask_size": 2, "done": 1}
    assert store.counters("support") == {"support": c["support"]}
    live = {sid for sid, _ in store.active_sessions(limit=100)}
    assert live == {f"s{i}" for i in range(12) if i % 5} and store.active_count() == 9
    newest = store.active_sessions(limit=3)
    assert [t for _, t in newest] == sorted((t for _, t in store.active_sessions(limit=100)), reverse=True)[:3]
    assert store.due_timeouts(T0 + 150_000) == [f"s{i}" for i in (2, 4, 6, 8)]  # still at their first step
    assert store.next_timeout_at() == T0 + 100_002
    assert {sid for sid, _, _ in Store(store.client, now_ms=lambda: 10**15).unacked_effects()} == {"s0", "s4", "s8"}
    assert store.reconcile().fixed == 0


def test_set_timeout(store: Store) -> None:
    s = advance(store, "u1", None, "welcome")
    assert store.set_timeout("u1", T0 + 5) is True and store.due_timeouts(T0 + 5) == ["u1"]
    assert store.set_timeout("u1", None) is False and store.due_timeouts(10**15) == []
    advance(store, "u1", s, "done", status="completed")
    assert store.set_timeout("u1", T0 + 5) is False and store.due_timeouts(10**15) == []
    assert store.set_timeout("nobody", T0) is False and store.due_timeouts(10**15) == []
    assert store.reconcile().fixed == 0


def test_reconcile_rebuilds_deleted_and_corrupted_indexes(store: Store) -> None:
    populate(store)
    c = store.client
    truth = {key: c.zrange(key, 0, -1, withscores=True) for key in (K.IDX_ACTIVE, K.IDX_TIMEOUTS, K.IDX_OUTBOX)}
    counters = store.counters()
    # damage: drop one index, corrupt another, add ghosts, skew counters
    c.delete(K.IDX_ACTIVE)
    c.zadd(K.IDX_TIMEOUTS, {"s1": 1, "ghost": 5})
    c.zrem(K.IDX_OUTBOX, "s0#1")
    c.hincrby(K.counter_key("pizza"), "step:welcome", 7)
    c.hset(K.counter_key("pizza"), "step:nowhere", 3)
    c.delete(K.counter_key("support"))
    c.sadd(K.IDX_FLOWS, "deleted_flow")
    c.hset(K.counter_key("deleted_flow"), "sessions", 2)

    check = store.reconcile(dry_run=True)
    assert check.dry_run and check.fixed > 0
    assert c.zcard(K.IDX_ACTIVE) == 0  # a dry run changes nothing
    report = store.reconcile()
    assert report.sessions == 12
    assert report.fixes["active"] == {"added": 9, "removed": 0, "changed": 0}
    assert report.fixes["timeouts"] == {"added": 0, "removed": 1, "changed": 1}
    assert report.fixes["outbox"] == {"added": 1, "removed": 0, "changed": 0}
    assert report.fixes["counters"]["changed"] == 1 and report.fixes["counters"]["removed"] == 2
    assert report.fixes["counters"]["added"] == 6  # the deleted 'support' hash
    assert {key: c.zrange(key, 0, -1, withscores=True) for key in truth} == truth
    assert store.counters() == counters
    assert store.reconcile().fixed == 0


def test_expire_idle_per_flow(store: Store) -> None:
    populate(store)
    now = T0 + 10 * 60_000
    expired = store.expire_idle(now, flow_timeouts={"pizza": 5 * 60_000})  # support never expires here
    assert sorted(expired) == sorted(f"s{i}" for i in range(12) if i % 5 and i % 3)
    for sid in expired:
        s = store.load(sid)
        assert s["status"] == "expired" and s["pending"] is None and s["updated_at"] == now
        h = store.history(sid)[-1]
        assert (h["event"], h["error"], h["status"]) == ("expire", "inactive", "expired")
    assert store.expire_idle(now, flow_timeouts={"pizza": 1}) == []  # already expired
    assert set(store.due_timeouts(10**15)).isdisjoint(expired)
    later = store.expire_idle(now, default_ms=60_000)
    assert sorted(later) == sorted(f"s{i}" for i in range(12) if i % 5 and not i % 3)
    assert store.active_count() == 0 and store.reconcile().fixed == 0


def test_terminal_sessions_expire_from_redis(redis_client: Any) -> None:
    store = Store(redis_client, terminal_ttl_ms=150)
    s = advance(store, "u1", None, "welcome", message_id="m1")
    k = K.session_keys("u1")
    assert all(redis_client.pttl(key) == -1 for key in (k.state, k.hist, k.seen))
    advance(store, "u1", s, "done", status="completed", message_id="m2")
    assert all(0 < redis_client.pttl(key) <= 150 for key in (k.state, k.hist, k.seen))
    wait_for(lambda: store.load("u1") is None, "the finished session to expire from Redis")
    assert store.history("u1") == []
    assert store.reconcile().fixes["counters"]["removed"] == 3  # counters forget the expired session


def test_trimming_is_configurable(redis_client: Any) -> None:
    store = Store(redis_client, history_max_len=3)
    prev = None
    for i in range(7):
        prev = advance(store, "u1", prev, f"s{i}")
    assert [h["version"] for h in store.history("u1")] == [5, 6, 7]
    assert store.load("u1") == prev
