"""The commit: versions, conflicts, duplicates, all-or-nothing, one round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowkit.errors import CorruptStateError, InvalidCommitError, StoreError
from flowkit.store import CommitResult, Store
from flowkit.store import keys as K
from flowkit.store import statefield as SF
from tests.store.conftest import T0, CountingConnection, advance, make_record, make_state


def snapshot_db(client: Any, pattern: str = "*") -> dict[str, Any]:
    """Every key with its type and content, to prove that nothing changed."""
    out = {}
    for key in sorted(client.keys(pattern)):
        t = client.type(key).decode()
        if t == "hash":
            out[key] = client.hgetall(key)
        elif t == "stream":
            out[key] = client.xrange(key)
        elif t == "list":
            out[key] = client.lrange(key, 0, -1)
        elif t == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif t == "set":
            out[key] = sorted(client.smembers(key))
        else:
            out[key] = client.get(key)
    return out


def test_first_commit_creates_version_1_and_sets_versions(store: Store) -> None:
    state = make_state(version=0, step="welcome")
    rec = make_record(state, None, event="start", message_id="wamid.1")
    res = store.commit("u1", 0, state, rec, message_id="wamid.1")
    assert res == CommitResult("ok", 1) and res.ok
    assert state["version"] == 1 and rec["version"] == 1
    assert store.load("u1") == state
    [h] = store.history("u1")
    assert h == {"session_id": "u1", "flow": "order_pizza", "flow_version": "3", "why": None, **rec}  # why: none given


def test_conflict_when_expected_version_is_stale(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    s2 = advance(store, "u1", s1, "ask_size")
    stale = make_state("u1", 0, "ask_qty")
    res = store.commit("u1", 1, stale, make_record(stale, "welcome"), previous=s1)
    assert res == CommitResult("conflict", 2)
    assert store.load("u1") == s2
    assert [r["version"] for r in store.history("u1")] == [1, 2]


def test_a_conflict_brings_back_the_current_state_without_a_reload(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    s2 = advance(store, "u1", s1, "ask_size")
    stale = make_state("u1", 0, "ask_qty")
    trips = store.round_trips
    res = store.commit("u1", 1, stale, make_record(stale, "welcome"), previous=s1)
    assert store.round_trips - trips == 1  # the script only: on a single server it writes the indexes itself
    assert res.outcome == "conflict" and res.current == s2 == store.load("u1")
    assert res.to_dict() == {"outcome": "conflict", "version": 2}


def test_a_conflict_on_a_corrupt_state_brings_nothing_back(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    advance(store, "u1", s1, "ask_size")
    store.client.hset(K.session_keys("u1").state, "state", '{"tampered": true}')
    stale = make_state("u1", 0, "ask_qty")
    res = store.commit("u1", 1, stale, make_record(stale, "welcome"), previous=s1)
    assert res.outcome == "conflict" and res.current is None  # the caller's load() quarantines it


def test_expected_zero_means_the_session_must_not_exist(store: Store) -> None:
    advance(store, "u1", None, "welcome")
    again = make_state("u1", 0, "welcome")
    assert store.commit("u1", 0, again, make_record(again, None, event="start")) == CommitResult("conflict", 1)


def test_duplicate_message_answers_the_version_that_applied_it(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome", message_id="wamid.A")
    advance(store, "u1", s1, "ask_size", message_id="wamid.B")
    before = snapshot_db(store.client)
    # redelivered with the current expected version, and with a stale one: both "duplicate"
    for expected in (2, 1):
        s = make_state("u1", 0, "ask_qty")
        res = store.commit("u1", expected, s, make_record(s, "ask_size", message_id="wamid.B"), message_id="wamid.B")
        assert res == CommitResult("duplicate", 2)
    assert snapshot_db(store.client) == before
    assert store.seen("u1", "wamid.B") == 2 and store.seen("u1", "wamid.A") == 1 and store.seen("u1", "x") is None


def test_message_id_defaults_to_the_records(store: Store) -> None:
    s = make_state("u1", 0, "welcome")
    store.commit("u1", 0, s, make_record(s, None, event="start", message_id="wamid.R"))
    assert store.seen("u1", "wamid.R") == 1


def test_dedupe_set_is_bounded(redis_client: Any) -> None:
    store = Store(redis_client, dedupe_max=3)
    prev = None
    for i in range(6):
        prev = advance(store, "u1", prev, f"s{i}", message_id=f"m{i}")
    assert [store.seen("u1", f"m{i}") for i in range(6)] == [None, None, None, 4, 5, 6]
    # the dedupe set keeps digests, not the (long) WhatsApp ids themselves
    assert all(m.lstrip(b"-").isdigit() for m in redis_client.zrange(K.session_keys("u1").seen, 0, -1))


@pytest.mark.parametrize("breakage", [
    lambda s, r: s.update(status="sleeping"),
    lambda s, r: s.update(extra=1),
    lambda s, r: s.pop("slots"),
    lambda s, r: s.update(version=True, started_at="yesterday"),
    lambda s, r: s.update(slots={"x": float("nan")}),
    lambda s, r: s.update(slots={"x": object()}),
    lambda s, r: r.update(event="teleport"),
    lambda s, r: r.update(actor="ghost"),
    lambda s, r: r.update(to_step="elsewhere"),
    lambda s, r: r.update(status="completed"),
    lambda s, r: r.update(path="ask_size"),
    lambda s, r: r.pop("ts"),
    lambda s, r: s.update(session_id="someone-else"),
])
def test_invalid_commits_are_refused_before_any_io(store: Store, breakage: Any) -> None:
    s = make_state("u1", 0, "welcome")
    r = make_record(s, None, event="start")
    breakage(s, r)
    with pytest.raises(InvalidCommitError):
        store.commit("u1", 0, s, r)
    assert store.client.keys("*") == [] and store.round_trips == 0


def test_validator_is_applied_on_commit(redis_client: Any) -> None:
    def no_negative_qty(state: dict[str, Any]) -> None:
        if state["slots"].get("qty", 0) < 0:
            raise ValueError("qty must be >= 0")

    store = Store(redis_client, validator=no_negative_qty)
    s = make_state("u1", 0, "welcome", slots={"qty": -1})
    with pytest.raises(InvalidCommitError, match="qty must be >= 0"):
        store.commit("u1", 0, s, make_record(s, None, event="start"))


def test_empty_strings_in_nullable_fields_are_stored_as_null(store: Store) -> None:
    s = make_state("u1", 0, "welcome")
    r = make_record(s, None, event="start", error="", message_id="")
    store.commit("u1", 0, s, r)
    assert store.history("u1")[0]["error"] is None and r["error"] is None


def test_a_commit_on_a_corrupt_version_field_writes_nothing(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    store.client.hset(K.session_keys("u1").state, "version", "banana")
    before = snapshot_db(store.client)
    s = make_state("u1", 0, "ask_size")
    with pytest.raises(CorruptStateError):
        store.commit("u1", 1, s, make_record(s, "welcome"), previous=s1)
    after = snapshot_db(store.client)
    counters = K.counter_key("order_pizza").encode()
    after[counters] = {f: n for f, n in after[counters].items() if n != b"0"}  # a 0 counter is no drift
    assert after == before  # the optimistic index writes were undone too


def test_a_wrong_key_type_fails_the_commit_without_writing(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    k = K.session_keys("u1")
    store.client.delete(k.state)
    store.client.set(k.state, "not a hash")
    before = snapshot_db(store.client, "fk:{s:*")
    s = make_state("u1", 0, "ask_size")
    with pytest.raises(CorruptStateError):
        store.commit("u1", 1, s, make_record(s, "welcome"), previous=s1)
    assert snapshot_db(store.client, "fk:{s:*") == before  # the session's keys; indexes are reconcile's job


def test_history_ahead_of_state_fails_without_writing(store: Store) -> None:
    """If the state key vanished but its history did not, a new 'version 1' must not be written."""
    advance(store, "u1", None, "welcome")
    store.client.delete(K.session_keys("u1").state)
    before = snapshot_db(store.client, "fk:{s:*")
    s = make_state("u1", 0, "welcome")
    with pytest.raises(StoreError, match="equal or smaller"):
        store.commit("u1", 0, s, make_record(s, None, event="start"))
    assert snapshot_db(store.client, "fk:{s:*") == before


def test_exactly_one_round_trip_per_commit(counting_client: Any, redis_client: Any) -> None:
    store = Store(counting_client)
    prev = advance(store, "u1", None, "welcome", message_id="m0")  # loads the script (NOSCRIPT -> EVAL)
    redis_client.config_resetstat()
    CountingConnection.sends = 0
    CountingConnection.commands = []
    trips = store.round_trips
    n = 25
    for i in range(n):
        prev = advance(store, "u1", prev, f"step{i}", message_id=f"m{i + 1}", n=i)
    assert CountingConnection.sends == n  # counted on the socket
    assert store.round_trips - trips == n  # counted by the driver
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == n  # the server ran one commit script per commit
    # and the client sent nothing but the script: on a single server it writes the derived
    # indexes itself, so no write beside it can be left behind by a crash (issue #17)
    assert CountingConnection.commands == ["EVALSHA"] * n


def test_noscript_is_reloaded_transparently(store: Store) -> None:
    prev = advance(store, "u1", None, "welcome")
    store.client.script_flush()
    trips = store.round_trips
    prev = advance(store, "u1", prev, "ask_size")
    assert store.round_trips - trips == 2  # EVALSHA -> NOSCRIPT -> EVAL, once
    advance(store, "u1", prev, "ask_qty")
    assert store.round_trips - trips == 3
    assert len(store.history("u1")) == 3


def test_wrong_previous_still_gives_a_correct_history(store: Store) -> None:
    """A caller whose `previous` is not the stored state costs a full-state entry, never a bad delta."""
    s1 = advance(store, "u1", None, "welcome", size="small")
    lie = dict(s1, slots={"size": "large", "qty": 9})
    s2 = make_state("u1", 1, "ask_qty", slots={"size": "medium"})
    assert store.commit("u1", 1, s2, make_record(s2, "welcome"), previous=lie).ok
    assert store.state_at("u1", 2) == s2 and store.state_at("u1", 1) == s1
    assert "r" in store.history("u1", 2, with_delta=True)[0]["delta"]
    assert store.counters()["order_pizza"]["step"] == {"ask_qty": 1}


def test_missing_previous_still_counts_right(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    advance(store, "u1", s1, "ask_size", previous=False)
    assert store.counters()["order_pizza"] == {"sessions": 1, "status": {"waiting_input": 1},
                                               "step": {"ask_size": 1}}
    assert store.state_at("u1", 1) == s1


def test_delta_is_compact_when_previous_is_given(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome", size="small", profile={"name": "Ana"})
    advance(store, "u1", s1, "ask_qty", size="large")
    [h] = store.history("u1", 2, with_delta=True)
    assert h["delta"] == {"p": {"slots": {"s": {"size": "large"}}}, "s": {"pending": {"step": "ask_qty",
                                                                                       "wait": "input"}}} \
        or h["delta"] == {"p": {"pending": {"s": {"step": "ask_qty"}}, "slots": {"s": {"size": "large"}}}}


def test_effects_are_an_outbox(store: Store) -> None:
    s = make_state("u1", 0, "welcome")
    fx = [{"kind": "reply", "text": "Hi!"}, {"kind": "call", "service": "orders.create", "call_id": "u1/1/x"}]
    assert store.commit("u1", 0, s, make_record(s, None, event="start"), effects=fx).ok
    s2 = make_state("u1", 1, "ask_size")
    assert store.commit("u1", 1, s2, make_record(s2, "welcome"), previous=s,
                        effects=[{"kind": "reply", "text": "Size?"}]).ok
    assert store.pending_effects("u1") == {1: fx, 2: [{"kind": "reply", "text": "Size?"}]}
    assert store.unacked_effects(older_than_ms=60_000) == []  # not old yet
    old = Store(store.client, now_ms=lambda: store.now_ms() + 120_000)
    assert sorted(old.unacked_effects(older_than_ms=60_000)) == [("u1", 1, fx),
                                                                ("u1", 2, [{"kind": "reply", "text": "Size?"}])]
    assert store.ack_effects("u1", 1) is True and store.ack_effects("u1", 1) is False
    assert store.pending_effects("u1") == {2: [{"kind": "reply", "text": "Size?"}]}
    store.ack_effects("u1", 2)
    assert old.unacked_effects(older_than_ms=60_000) == [] and store.pending_effects("u1") == {}
    assert not store.client.exists(K.session_keys("u1").fx)


def test_conflicting_commit_leaves_no_trace_in_the_outbox(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    s2 = advance(store, "u1", s1, "ask_size")
    loser = make_state("u1", 1, "ask_qty")
    res = store.commit("u1", 1, loser, make_record(loser, "welcome"), previous=s1, effects=[{"kind": "reply"}])
    assert res.outcome == "conflict"
    assert store.client.zrange(K.IDX_OUTBOX, 0, -1) == [] and store.pending_effects("u1") == {}
    assert store.counters()["order_pizza"]["step"] == {"ask_size": 1}
    assert store.reconcile().fixed == 0 and s2["version"] == 2


def test_state_is_json_and_checksummed_in_redis(store: Store) -> None:
    s = advance(store, "u1", None, "welcome")
    h = store.client.hgetall(K.session_keys("u1").state)
    fields = SF.as_fields(h.items())
    assert json.loads(SF.state_text(fields) or b"") == s  # packed in chunks s0, s1, ... (statefield.py)
    assert {k for k in fields if not SF.is_chunk(k)} == {"version", "checksum", "flow", "step", "status",
                                                         "updated_at", "timeout_at"}


def test_timeout_at_follows_each_commit(store: Store) -> None:
    """commit.lua writes timeout_at in the state's HSET and deletes it only when one is stored."""
    key = K.session_keys("u1").state
    s = make_state("u1", 1, "welcome")
    store.commit("u1", 0, s, make_record(s, None, event="start"))  # no timeout, none stored: nothing to delete
    assert store.client.hget(key, "timeout_at") is None
    s2 = make_state("u1", 2, "ask_size")
    store.commit("u1", 1, s2, make_record(s2, "welcome"), previous=s, timeout_at_ms=T0 + 5)
    assert store.client.hget(key, "timeout_at") == str(T0 + 5).encode()
    s3 = make_state("u1", 3, "ask_qty")
    store.commit("u1", 2, s3, make_record(s3, "ask_size"), previous=s2)  # no timeout now: the stored one goes
    assert store.client.hget(key, "timeout_at") is None
    s4 = make_state("u1", 4, "ask_qty", "completed")
    store.commit("u1", 3, s4, make_record(s4, "ask_qty"), previous=s3, timeout_at_ms=T0 + 9)  # terminal: none
    assert store.client.hget(key, "timeout_at") is None and store.due_timeouts(10**15) == []
    assert [r["version"] for r in store.history("u1")] == [1, 2, 3, 4] and store.load("u1") == s4
