"""Integrity: states corrupted directly in Redis are quarantined, counted, logged, and the
session comes back from its last good version as a new ``recovery`` commit."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from flowkit.errors import CorruptStateError
from flowkit.store import Store, entries
from flowkit.store import keys as K
from tests.store.conftest import advance


def build(store: Store, n: int = 5) -> list[dict[str, Any]]:
    prev, out = None, []
    for i in range(n):
        prev = advance(store, "u1", prev, f"step{i}", message_id=f"m{i}", count=i)
        out.append(prev)
    return out


def assert_recovered(store: Store, good: dict[str, Any], new_version: int, reason: str) -> dict[str, Any]:
    restored = store.load("u1")
    assert restored is not None and restored["version"] == new_version
    assert {k: v for k, v in restored.items() if k not in ("version", "updated_at")} == \
        {k: v for k, v in good.items() if k not in ("version", "updated_at")}
    rec = store.history("u1")[-1]
    assert (rec["version"], rec["event"], rec["actor"]) == (new_version, "recovery", "recovery")
    assert rec["error"].startswith("corrupt_state: " + reason)
    assert json.loads(rec["input"])["restored_from"] == good["version"]
    assert store.load("u1") == restored  # healthy again: a second load changes nothing
    assert store.state_at("u1", new_version) == restored
    assert store.reconcile().fixed == 0  # the counters followed the recovery
    return restored


def test_checksum_mismatch_is_quarantined_and_restored(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    states = build(store)
    k = K.session_keys("u1")
    bad = store.load_raw("u1")  # (the state JSON is packed in chunks: statefield.py)
    assert bad is not None
    bad["slots"]["count"] = 999  # a silent bit flip: the checksum no longer matches
    store.client.hset(k.state, "state", json.dumps(bad))
    with caplog.at_level(logging.ERROR, logger="flowkit.store"):
        assert_recovered(store, states[-1], 6, "checksum_mismatch")
    assert any("quarantined" in r.getMessage() and getattr(r, "session_id", None) == "u1" for r in caplog.records)
    assert store.quarantine_count() == 1
    [q] = store.quarantined()
    assert q["session_id"] == "u1" and q["reason"] == "checksum_mismatch" and q["version"] == "5"
    assert json.loads(store.client.hget(q["key"], "state"))["slots"]["count"] == 999  # the bad copy is kept
    assert q["key"].startswith("fk:quarantine:{s:u1}:")


def test_schema_failure_with_a_matching_checksum(store: Store) -> None:
    """Garbage that was *committed* correctly (checksum fine) still fails the schema."""
    states = build(store)
    from flowkit.store.codec import checksum, dumps

    k = K.session_keys("u1")
    bad = dict(states[-1], status="sleeping")
    text = dumps(bad)
    store.client.hset(k.state, mapping={"state": text, "checksum": checksum(text)})
    assert_recovered(store, states[-1], 6, "schema")


def test_unparsable_state(store: Store) -> None:
    states = build(store)
    store.client.hset(K.session_keys("u1").state, mapping={"state": "{not json", "checksum": "1"})
    assert_recovered(store, states[-1], 6, "checksum_mismatch")


def test_wrong_key_type(store: Store) -> None:
    states = build(store)
    k = K.session_keys("u1")
    store.client.delete(k.state)
    store.client.rpush(k.state, "what", "is", "this")
    assert_recovered(store, states[-1], 6, "wrong_type")
    [q] = store.quarantined()
    assert q["type"] == "list" and store.client.hget(q["key"], "q_dump")  # DUMP of the bad key


def test_deleted_state_with_history_left(store: Store) -> None:
    states = build(store)
    store.client.delete(K.session_keys("u1").state)
    assert_recovered(store, states[-1], 6, "missing_state")


def test_validator_failure_goes_back_to_the_last_valid_version(redis_client: Any) -> None:
    plain = Store(redis_client)
    states = build(plain, n=6)  # count = 0..5

    def count_below_4(state: dict[str, Any]) -> None:
        if state["slots"].get("count", 0) >= 4:
            raise ValueError("count too high")

    strict = Store(redis_client, validator=count_below_4)
    restored = strict.load("u1")
    assert restored["version"] == 7 and restored["slots"]["count"] == 3
    assert strict.history("u1")[-1]["error"].startswith("corrupt_state: validator: count too high")
    assert json.loads(strict.history("u1")[-1]["input"])["restored_from"] == 4
    assert states[3]["slots"] == restored["slots"]


def rewrite_entry(client: Any, sid: str, version: int, **changes: Any) -> None:
    """Change fields of one history element in place (``delta``, ``checksum``, ...: the names of
    the record keys, at their positions in flowkit/store/entries.py)."""
    k = K.session_keys(sid)
    where = entries.POSITIONS
    for i, raw in enumerate(client.lrange(k.hist, 0, -1)):
        e = entries.to_array(sid, raw)
        if e[0] == version:
            for name, value in changes.items():
                e[where[name]] = json.loads(value) if name == "delta" else value
            client.lset(k.hist, i, entries.from_array(sid, e))


def test_corrupt_state_and_history_uses_a_snapshot(redis_client: Any) -> None:
    store = Store(redis_client, snapshot_every=3)
    states = build(store, n=8)
    store.client.hset(K.session_keys("u1").state, "state", "garbage")
    # break the delta chain after the snapshot at version 6: versions 7 and 8 cannot be rebuilt
    rewrite_entry(redis_client, "u1", 7, delta=json.dumps({"p": {"slots": {"s": {"count": "wrong"}}}}))
    restored = store.load("u1")
    assert restored["version"] == 9 and restored["slots"] == states[5]["slots"]  # version 6 (the snapshot)


def test_nothing_to_restore_raises_and_still_quarantines_once(store: Store) -> None:
    build(store, n=2)
    k = K.session_keys("u1")
    store.client.delete(k.hist)
    store.client.hset(k.state, "state", "garbage")
    for _ in range(3):
        with pytest.raises(CorruptStateError, match="no good version"):
            store.load("u1")
    assert store.quarantine_count() == 1  # the same bad content is quarantined once
    assert store.client.hget(k.state, "state") == b"garbage"  # left in place for an operator


def test_state_at_never_repairs(store: Store) -> None:
    build(store, n=3)
    store.client.hset(K.session_keys("u1").state, "state", "garbage")
    with pytest.raises(CorruptStateError):
        store.state_at("u1", 3)
    assert store.state_at("u1", 2)["version"] == 2
    assert store.quarantine_count() == 0


def test_a_corrupt_history_entry_is_detected_by_time_travel(store: Store) -> None:
    build(store, n=4)
    rewrite_entry(store.client, "u1", 3, delta=json.dumps({"p": {"slots": {"s": {"count": 77}}}}))
    with pytest.raises(CorruptStateError, match="checksum"):
        store.state_at("u1", 3)
    assert store.state_at("u1", 2)["slots"]["count"] == 1
