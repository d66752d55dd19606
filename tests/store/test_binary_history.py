"""Binary history elements (layout 3, flowkit/store/entries.py): every record reads back
exactly; lists of JSON elements (layout 2, as flowkit wrote them before, captured in
flowkit/testing/old_layout.py) keep working, mixed with new elements, and ``flowkit redis
migrate-layout`` repacks them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.errors import CorruptStateError
from flowkit.store import Store, backup, entries, restore
from flowkit.store import keys as K
from flowkit.store.atomic_read import read_sessions_atomic
from flowkit.store.codec import ACTORS, EVENTS, STATUSES, dumps
from flowkit.store.migrate import migrate_store
from flowkit.testing.old_layout import layout2_elements
from tests.store.conftest import advance

runner = CliRunner()
OWN = "wamid.HBgLMzE2MDAwMDAwMDEVAgASGBQzQUI2RjZCMzg2RkI3QUEwNUEwNgA="  # from 31600000001, as the Cloud API sends


def raw(store: Store, sid: str) -> list[bytes]:
    return store.client.lrange(K.session_keys(sid).hist, 0, -1)  # type: ignore[no-any-return]


def full(store: Store, sid: str) -> list[dict[str, Any]]:
    """Every record with its delta and checksum, as the elements hold them."""
    return entries.decode_all(sid, raw(store, sid))


def build(store: Store, sid: str, n: int) -> list[dict[str, Any]]:
    states, prev = [], None
    for i in range(n):
        extra: dict[str, Any] = {"note": "ünï cödé ✓"} if i == 2 else {}
        prev = advance(store, sid, prev, f"step{i % 3}", message_id=OWN if i == 0 else f"{sid}-m{i}", count=i,
                       **extra)
        states.append(prev)
    return states


def to_layout2(store: Store, sid: str) -> list[dict[str, Any]]:
    """Rewrite the session's list as the JSON elements the previous flowkit wrote; its records."""
    recs = full(store, sid)
    k = K.session_keys(sid).hist
    store.client.delete(k)
    store.client.rpush(k, *layout2_elements(recs))
    assert all(e[:1] == b"[" for e in raw(store, sid))
    return recs


def test_binary_elements_are_what_is_written_now(store: Store) -> None:
    build(store, "31600000001", 5)
    els = raw(store, "31600000001")
    assert all(e[:1] == entries.TAG_3 for e in els)
    # an answer's element: header, 10 bytes of message id, a deflated tail
    assert max(len(e) for e in els[1:]) < 120


def test_json_elements_read_exactly_as_before(store: Store) -> None:
    sid = "31600000001"
    states = build(store, sid, 12)
    hist, recs = store.history(sid), to_layout2(store, sid)
    assert store.history(sid) == hist and full(store, sid) == recs
    for s in states:
        assert store.state_at(sid, s["version"]) == s
    [(_, state, why, rows)] = read_sessions_atomic(store, [sid])
    assert state == states[-1] and why is None and rows == hist
    # a commit appends a binary element to the JSON list; both read on
    nxt = advance(store, sid, states[-1], "done", message_id="m-next")
    assert raw(store, sid)[-1][:1] == entries.TAG_3 and raw(store, sid)[0][:1] == b"["
    assert store.history(sid)[:12] == hist and store.state_at(sid, 13) == nxt
    assert store.rollback(sid, 4).ok and (store.load(sid) or {})["slots"] == states[3]["slots"]


def test_migrate_layout_repacks_json_histories(store: Store, redis_url: str) -> None:
    sids = ["31600000001", "a}b", "31600000003"]
    for sid in sids:
        build(store, sid, 9)
    before = {sid: to_layout2(store, sid) for sid in sids[:2]}  # the third stays binary
    store.client.pexpire(K.session_keys(sids[0]).hist, 600_000)
    mem = sum(store.client.memory_usage(K.session_keys(s).hist, samples=0) for s in sids[:2])
    r = runner.invoke(app, ["redis", "migrate-layout", "--redis", redis_url, "--dry-run", "--format", "json"])
    assert json.loads(r.stdout)["histories_packed"] == 2
    assert all(e[:1] == b"[" for s in sids[:2] for e in raw(store, s))  # a dry run writes nothing
    r = runner.invoke(app, ["redis", "migrate-layout", "--redis", redis_url])
    assert r.exit_code == 0 and "and 2 histories" in r.stdout, r.output
    for sid in sids[:2]:
        assert all(e[:1] == entries.TAG_3 for e in raw(store, sid))
        assert full(store, sid) == before[sid]
    assert sum(store.client.memory_usage(K.session_keys(s).hist, samples=0) for s in sids[:2]) < 0.6 * mem
    assert store.client.pttl(K.session_keys(sids[0]).hist) > 0  # TTL kept
    assert migrate_store(store).histories_packed == 0  # idempotent


def test_a_damaged_json_element_is_left_alone(store: Store) -> None:
    sid = "31600000001"
    build(store, sid, 4)
    to_layout2(store, sid)
    store.client.lset(K.session_keys(sid).hist, 1, b"[2,not json")
    assert migrate_store(store).histories_packed == 0
    assert raw(store, sid)[1] == b"[2,not json"
    with pytest.raises(CorruptStateError, match="damaged"):
        store.history(sid)


@pytest.mark.parametrize("cut", [b"\x01", b"\x012:", b"\x012:abc", None])
def test_a_damaged_binary_element_is_a_clear_error(store: Store, cut: bytes | None) -> None:
    sid = "31600000001"
    states = build(store, sid, 4)
    k = K.session_keys(sid).hist
    bad = cut if cut is not None else raw(store, sid)[1][:-3]  # the tail cut short
    store.client.lset(k, 1, bad)
    with pytest.raises(CorruptStateError, match="history in Redis is damaged"):
        store.history(sid)
    assert store.load(sid) == states[-1]  # the state itself is fine


def test_backup_and_restore_carry_binary_elements(store: Store, tmp_path: Any) -> None:
    sid = "31600000001"
    states = build(store, sid, 6)
    hist = full(store, sid)
    path = tmp_path / "b.jsonl"
    backup(store, path)
    store.client.flushall()
    assert restore(store, path).restored == 1
    assert full(store, sid) == hist and store.load(sid) == states[-1]
    assert all(e[:1] == entries.TAG_3 for e in raw(store, sid))


# ---------------------------------------------------------------- every record comes back exactly

text = st.text(max_size=40)
opt_text = st.none() | text
step = st.text(min_size=1, max_size=12)


@st.composite
def records(draw: Any) -> tuple[str, dict[str, Any], str, str, str, bytes]:
    sid = draw(st.sampled_from(["15551234567", "15551234567@10987", "u1", "ünï"]))
    path = draw(st.lists(step, max_size=3))
    from_step = draw(st.none() | step)
    to = draw(st.sampled_from([path[-1] if path else from_step, "elsewhere"]))
    mid = draw(st.none() | text | st.sampled_from([
        "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUI2RjZCMzg2RkI3QUEwNUEwNgA=",
        "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQWI2RjZCMzg2RkI3QUEwNUEwNgA="]))
    inp = draw(st.none() | text | text.map(lambda t: dumps({"text": t, "type": "text"}))
               | text.map(lambda t: json.dumps({"text": t, "type": "text"})))
    rec = {"version": draw(st.integers(1, 10**12)), "ts": draw(st.integers(-(2**52), 2**52)),
           "event": draw(st.sampled_from(EVENTS)), "from_step": from_step, "to_step": to, "path": path,
           "status": draw(st.sampled_from(STATUSES)), "actor": draw(st.sampled_from(ACTORS)), "input": inp,
           "error": draw(opt_text), "message_id": mid, "why": draw(st.none() | st.just('{"splits":[]}'))}
    digest = draw(st.integers(-(2**63), 2**63 - 1).map(str) | st.sampled_from(["damaged", "007", "-0"]))
    flow, fv = draw(step), draw(st.sampled_from(["1", "3", "v2"]))
    delta = draw(st.sampled_from([b'{"p":{"slots":{"s":{"a":1}}}}', b"{}", "whole"]))
    if delta == "whole":
        state = {"session_id": sid, "version": rec["version"], "flow": flow, "flow_version": fv,
                 "step": to, "status": rec["status"], "slots": {"x": [1, 2]}, "updated_at": rec["ts"]}
        delta = b'{"r":' + dumps(state).encode() + b"}"
    return sid, rec, flow, fv, digest, delta


@settings(max_examples=300, deadline=None)
@given(records(), st.booleans())
def test_pack_then_read_gives_the_record_back(case: Any, same_flow: bool) -> None:
    sid, rec, flow, fv, digest, delta = case
    el = entries.pack(sid, rec, flow, fv, digest, delta, same_flow=same_flow)
    prev = (flow, fv) if same_flow else None
    back = entries.decode(sid, el, prev)
    assert back == {**rec, "session_id": sid, "flow": flow, "flow_version": fv, "why": rec["why"],
                    "delta": json.loads(delta), "checksum": digest}
    assert entries.from_array(sid, entries.to_array(sid, el)) == el or entries.decode(
        sid, entries.from_array(sid, entries.to_array(sid, el)), prev) == back
