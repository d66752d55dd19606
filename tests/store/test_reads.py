"""History, time travel (state at any version, diff), rollback and history trimming."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from flowkit.errors import CorruptStateError, SessionNotFound, VersionUnavailable
from flowkit.store import Store, entries
from flowkit.store import keys as K
from tests.store.conftest import advance


def build(store: Store, sid: str = "u1", n: int = 12) -> list[dict[str, Any]]:
    states = []
    prev = None
    for i in range(n):
        prev = advance(store, sid, prev, f"step{i % 4}", message_id=f"{sid}-m{i}", count=i,
                       **({"size": "large"} if i == 3 else {}))
        states.append(prev)
    return states


def test_history_ranges(store: Store) -> None:
    states = build(store)
    hist = store.history("u1")
    assert [h["version"] for h in hist] == list(range(1, 13))
    assert [h["to_step"] for h in hist] == [s["step"] for s in states]
    assert [h["version"] for h in store.history("u1", 4, 6)] == [4, 5, 6]
    assert [h["version"] for h in store.history("u1", 10)] == [10, 11, 12]
    assert [h["version"] for h in store.history("u1", 2, limit=2)] == [2, 3]
    assert store.history("nobody") == []
    assert hist[0]["event"] == "start" and hist[0]["from_step"] is None
    assert all(h["from_step"] == p["to_step"] for p, h in zip(hist, hist[1:], strict=False))


@pytest.mark.parametrize("snapshot_every", [0, 1, 5, 20])
def test_state_at_every_version(redis_client: Any, snapshot_every: int) -> None:
    store = Store(redis_client, snapshot_every=snapshot_every)
    states = build(store, n=23)
    for s in states:
        assert store.state_at("u1", s["version"]) == s
    # snapshots are history elements holding the whole state (the first one always does)
    whole = [v for v, e in enumerate((entries.to_array("u1", x) for x in redis_client.lrange(K.session_keys("u1").hist, 0, -1)), 1)
             if "r" in e[entries.POSITIONS["delta"]]]
    assert whole == [1] + ([] if not snapshot_every else [v for v in range(2, 24) if v % snapshot_every == 0])
    assert not redis_client.exists(K.session_keys("u1").snap)


def test_state_at_errors(store: Store) -> None:
    build(store, n=3)
    for bad in (0, 4, -1):
        with pytest.raises(VersionUnavailable):
            store.state_at("u1", bad)
    with pytest.raises(SessionNotFound):
        store.state_at("nobody", 1)


def test_diff_between_versions(store: Store) -> None:
    build(store, n=6)
    d = store.diff("u1", 2, 5)
    assert d["session_id"] == "u1" and (d["from_version"], d["to_version"]) == (2, 5)
    changes = {tuple(c["path"]): c for c in d["changes"]}
    assert changes[("slots", "count")] == {"path": ["slots", "count"], "op": "changed", "from": 1, "to": 4}
    assert changes[("slots", "size")] == {"path": ["slots", "size"], "op": "added", "to": "large"}
    assert changes[("step",)]["to"] == "step0"
    assert [e["version"] for e in d["events"]] == [3, 4, 5]
    back = store.diff("u1", 5, 2)
    assert {tuple(c["path"]): c["op"] for c in back["changes"]}[("slots", "size")] == "removed"
    assert store.diff("u1", 3, 3)["changes"] == []


def test_rollback_is_a_new_version_and_keeps_history(store: Store) -> None:
    states = build(store, n=8)
    before = store.history("u1")
    res = store.rollback("u1", 3)
    assert res.ok and res.version == 9
    now = store.load("u1")
    assert {k: v for k, v in now.items() if k not in ("version", "updated_at")} == \
        {k: v for k, v in states[2].items() if k not in ("version", "updated_at")}
    hist = store.history("u1")
    assert hist[:8] == before  # never rewritten
    last = hist[-1]
    assert (last["event"], last["actor"], last["from_step"], last["to_step"]) == ("rollback", "admin", "step3", "step2")
    assert '"to_version":3' in last["input"]
    for s in states:  # time travel still works across the rollback
        assert store.state_at("u1", s["version"]) == s
    assert store.state_at("u1", 9) == now
    assert "r" in store.history("u1", 9, 9, with_delta=True)[0]["delta"]  # a rollback stores its state whole
    assert store.counters()["order_pizza"]["step"] == {"step2": 1}
    assert store.reconcile().fixed == 0


def test_rollback_errors(store: Store) -> None:
    build(store, n=3)
    with pytest.raises(VersionUnavailable):
        store.rollback("u1", 3)  # already there
    with pytest.raises(VersionUnavailable):
        store.rollback("u1", 7)
    with pytest.raises(SessionNotFound):
        store.rollback("nobody", 1)


def test_rollback_keeps_a_timeout_for_a_live_session(store: Store) -> None:
    states = build(store, n=3)
    store.rollback("u1", 1)
    assert store.due_timeouts(10**15) == ["u1"]
    assert int(store.client.hget(K.session_keys("u1").state, "timeout_at")) == states[2]["updated_at"] + 60_000


def test_history_trimming_keeps_the_last_n(redis_client: Any) -> None:
    store = Store(redis_client, history_max_len=5, snapshot_every=4)
    states = build(store, n=20)
    assert [h["version"] for h in store.history("u1")] == [16, 17, 18, 19, 20]
    for v in range(16, 21):  # rebuildable: snapshot 16 + deltas
        assert store.state_at("u1", v) == states[v - 1]
    with pytest.raises(VersionUnavailable, match="trimmed"):
        store.state_at("u1", 3)
    # old snapshots (whole-state elements) go with the entries they served
    assert [h["version"] for h in store.history("u1", with_delta=True) if "r" in h["delta"]] == [16, 20]
    assert redis_client.llen(K.session_keys("u1").hist) == 5
    assert all(entries.to_array("u1", e)[10] != 0 for e in redis_client.lrange(K.session_keys("u1").hist, 0, -1))  # flows kept


def test_history_entries_are_compact(store: Store) -> None:
    build(store, n=3)
    raw = store.client.lrange(K.session_keys("u1").hist, 0, -1)
    # one listpack (a quicklist node before Redis 7.2): a few bytes per element, no stream node
    assert store.client.memory_usage(K.session_keys("u1").hist, samples=0) < 1.5 * sum(len(x) for x in raw) + 100
    assert [x[:3] for x in raw] == [b"\x011:", b"\x012:", b"\x013:"]  # binary, the version readable by Lua
    [e1, e2, _] = [entries.to_array("u1", x) for x in raw]
    assert e2[0] == 2 and e2[1] == store.history("u1", 2, 2)[0]["ts"]
    assert e2[2] == 1 and e2[6] == 1 and e2[7] == 0  # event, status and actor as small codes
    assert e2[4] == 0  # to_step is the path's last step, so it is not repeated
    assert e1[10:12] == ["order_pizza", "3"] and e2[10:12] == [0, 0]  # the flow once, then "the same"
    assert isinstance(e2[12], int)  # the checksum as a number
    # smaller than the JSON array the same record took in layout 2
    assert all(len(x) < 0.6 * len(json.dumps(entries.to_array("u1", x), separators=(",", ":"))) for x in raw[1:])


def test_iterating_sessions(store: Store) -> None:
    for i in range(30):
        advance(store, f"s{i}", None, "welcome")
    assert sorted(store.iter_session_ids(batch=7)) == sorted(f"s{i}" for i in range(30))
    assert sorted(s["session_id"] for s in store.iter_sessions(batch=7)) == sorted(f"s{i}" for i in range(30))
    pairs = list(store.iter_histories(batch=7))
    assert len(pairs) == 30 and all(len(h) == 1 and h[0]["session_id"] == s["session_id"] for s, h in pairs)


def test_odd_session_ids(store: Store) -> None:
    for sid in ("a}b", "x:{y}", "ünï cödé", "*"):
        s1 = advance(store, sid, None, "welcome")
        advance(store, sid, s1, "ask")
        assert store.load(sid)["session_id"] == sid and len(store.history(sid)) == 2
    assert sorted(store.iter_session_ids()) == sorted(["a}b", "x:{y}", "ünï cödé", "*"])
    with pytest.raises(ValueError):
        store.load("")


def test_load_raw_and_delete(store: Store) -> None:
    s = build(store, n=2)[-1]
    assert store.load_raw("u1") == s and store.load_raw("nobody") is None
    assert store.delete_session("u1") is True and store.delete_session("u1") is False
    assert store.load("u1") is None and store.history("u1") == [] and store.counters()["order_pizza"]["sessions"] == 0
    assert store.active_count() == 0 and store.reconcile().fixed == 0


def test_whatsapp_ids_of_the_sessions_own_number_are_stored_short(store: Store) -> None:
    sid = "15551234567"
    own = "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUI2RjZCMzg2RkI3QUEwNUEwNgA="  # the Cloud API's shape, this number
    other = "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzQUI2RjZCMzg2RkI3QUEwNUEwNgA="  # another number's
    prev = advance(store, sid, None, "welcome", message_id=own)
    advance(store, sid, prev, "ask", message_id=other)
    first, second = store.client.lrange(K.session_keys(sid).hist, 0, -1)
    # the own number's id is its random part as 10 bytes: 11 bytes where the id takes 62
    assert bytes.fromhex(base64.b64decode(own[6:])[-21:-1].decode()) in first
    assert len(second) - len(first) > 30
    assert [r["message_id"] for r in store.history(sid)] == [own, other]
    assert store.seen(sid, own) == 1
    # the same on a session of a second WhatsApp number (<wa_id>@<phone_number_id>)
    advance(store, sid + "@1098765", None, "welcome", message_id=own)
    [third] = store.client.lrange(K.session_keys(sid + "@1098765").hist, 0, -1)
    assert len(third) <= len(first) + 8 and store.history(sid + "@1098765")[0]["message_id"] == own


@pytest.mark.parametrize("mid", [
    "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUI2RjZCMzg2RkI3QUEwNUEwNgA=",  # packed
    "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQWI2RjZCMzg2RkI3QUEwNUEwNgA=",  # lower-case hex: kept whole
    "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUI2RjZCMzg2RkI3QUEwNUEwNgA",  # no padding: kept whole
    "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBYzRUIwQzAzOEJGQzJBOEQxNTVEM0NBAA==",  # 22 random characters
    "wamid.x", "not a wamid", "ünï", "",
])
def test_message_ids_come_back_exactly(store: Store, mid: str) -> None:
    advance(store, "15551234567", None, "welcome", message_id=mid or None)
    assert store.history("15551234567")[0]["message_id"] == (mid or None)


def test_a_damaged_history_element_is_a_clear_error_not_a_crash(store: Store) -> None:
    states = build(store, n=4)
    hist = K.session_keys("u1").hist
    store.client.lset(hist, 2, "not json")
    with pytest.raises(CorruptStateError, match="history in Redis is damaged"):
        store.history("u1")
    with pytest.raises(CorruptStateError, match="history in Redis is damaged"):
        store.state_at("u1", 2)
    assert store.load("u1") == states[-1]  # the state itself is fine and still loads
    advance(store, "u2", None, "welcome")
    assert [s["session_id"] for s, _ in store.iter_histories()] == ["u2"]  # the damaged one is skipped, logged
