"""History layout 1 (a stream per session, written by the old commit script, captured verbatim
in flowkit/testing/old_layout.py) keeps working: read lazily, converted by the first commit,
by ``flowkit redis migrate-layout``, and through backup/restore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.history.export import export_store, read_sessions_atomic
from flowkit.store import Store, backup, legacy, restore
from flowkit.store import keys as K
from flowkit.store.driver import Call
from flowkit.store.scripts import MIGRATE
from flowkit.testing.old_layout import old_commit
from tests.store.conftest import make_record, make_state

runner = CliRunner()
WAMID = "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzRUIwQzc2RUZGMEE4{:04d}QTc2RUZGMEE4"


def write_old(store: Store, sid: str, n: int) -> list[dict[str, Any]]:
    """``n`` versions of ``sid`` in layout 1 (snapshots, dedupe and outbox included); the states."""
    states: list[dict[str, Any]] = []
    prev: dict[str, Any] | None = None
    for i in range(n):
        v = i + 1
        st = make_state(sid, v, f"step{i % 4}", slots={**(prev["slots"] if prev else {}), f"q{i}": f"answer {i}"})
        rec = make_record(st, prev["step"] if prev else None, event="message" if prev else "start",
                          message_id=WAMID.format(i), input=json.dumps({"text": f"answer {i}"}))
        tag = old_commit(store.client, store.config, sid, i, st, rec, previous=prev, message_id=rec["message_id"],
                         effects=[{"kind": "reply", "text": "ok"}] if i == n - 1 else (),
                         timeout_at_ms=st["updated_at"] + 60_000)
        assert tag == "ok"
        states.append(st)
        prev = st
    assert store.client.type(K.session_keys(sid).hist) == b"stream"
    return states


def old_records(store: Store, sid: str) -> list[dict[str, Any]]:
    """The stream's entries, decoded as layout 1 (export columns only)."""
    drop = ("delta", "checksum")
    return [{k: v for k, v in legacy.decode_entry(sid, eid, f).items() if k not in drop}
            for eid, f in store.client.xrange(K.session_keys(sid).hist)]


@pytest.fixture
def old(redis_client: Any) -> tuple[Store, dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    store = Store(redis_client, snapshot_every=4)
    states = {sid: write_old(store, sid, 9) for sid in ("31600000001", "31600000002", "a}b")}
    records = {sid: old_records(store, sid) for sid in states}
    store.reconcile()  # the derived indexes, as the old code wrote them beside its commits
    return store, states, records


def test_reads_convert_a_layout_1_session_on_first_touch(old: Any) -> None:
    store, states, records = old
    sid = "31600000001"
    assert store.history(sid) == records[sid]
    assert store.client.type(K.session_keys(sid).hist) == b"list"
    assert [store.state_at(sid, v) for v in range(1, 10)] == states[sid]  # time travel to every version
    assert store.seen(sid, WAMID.format(3)) == 4  # dedupe: the digests stayed as they were
    other = "31600000002"
    assert [store.state_at(other, v) for v in (1, 5, 9)] == [states[other][0], states[other][4], states[other][8]]


def test_the_first_commit_converts_and_applies(old: Any) -> None:
    store, states, records = old
    sid = "a}b"
    prev = states[sid][-1]
    st = make_state(sid, 10, "done", slots=prev["slots"])
    res = store.commit(sid, 9, st, make_record(st, prev["step"], message_id="wamid.new"), previous=prev,
                       message_id="wamid.new")
    assert res.outcome == "ok" and res.version == 10
    assert store.history(sid)[:9] == records[sid] and store.history(sid)[-1]["message_id"] == "wamid.new"
    assert store.load(sid) == st and store.state_at(sid, 3) == states[sid][2]
    dup = make_state(sid, 0, "done")
    again = store.commit(sid, 10, dup, make_record(dup, "done", message_id=WAMID.format(2)),
                         message_id=WAMID.format(2))
    assert (again.outcome, again.version) == ("duplicate", 3)
    assert store.rollback(sid, 2).ok and store.load(sid)["slots"] == states[sid][1]["slots"]
    assert store.reconcile(dry_run=True).fixed == 0


def test_migrate_layout_command_dry_run_then_all(old: Any, redis_url: str) -> None:
    store, states, records = old
    r = runner.invoke(app, ["redis", "migrate-layout", "--redis", redis_url, "--dry-run", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"sessions": 3, "migrated": 3, "dry_run": True, "states_packed": 3,
                                     "histories_packed": 0}
    assert {store.client.type(K.session_keys(s).hist) for s in states} == {b"stream"}  # nothing written
    assert {store.client.object("encoding", K.session_keys(s).state) for s in states} == {b"hashtable"}
    ttl_sid = sorted(states)[0]
    store.client.pexpire(K.session_keys(ttl_sid).state, 600_000)
    r = runner.invoke(app, ["redis", "migrate-layout", "--redis", redis_url, "--format", "json"])
    assert json.loads(r.stdout) == {"sessions": 3, "migrated": 3, "dry_run": False, "states_packed": 3,
                                     "histories_packed": 0}
    assert {store.client.type(K.session_keys(s).hist) for s in states} == {b"list"}
    # the state hashes too: packed into 64-byte fields, a listpack again (statefield.py), TTL kept
    assert {store.client.object("encoding", K.session_keys(s).state) for s in states} == {b"listpack"}
    assert not any(store.client.hexists(K.session_keys(s).state, "state") for s in states)
    assert store.client.pttl(K.session_keys(ttl_sid).state) > 0
    r = runner.invoke(app, ["redis", "migrate-layout", "--redis", redis_url])
    assert r.exit_code == 0 and "converted 0" in r.stdout and "packed 0" in r.stdout  # idempotent
    for sid in states:
        assert store.load(sid) == states[sid][-1]
    for sid in states:
        assert store.history(sid) == records[sid]
        assert [store.state_at(sid, v) for v in range(1, 10)] == states[sid]


def test_export_reads_both_layouts_alike(old: Any, tmp_path: Path) -> None:
    store, states, records = old
    store.history("31600000002")  # one converted, the others still streams
    got = {sid: recs for sid, _state, _why, recs in read_sessions_atomic(store, sorted(states))}
    assert got == records
    meta = export_store(store, tmp_path / "ex", fmt="jsonl")
    assert meta["history"]["rows"] == 27 and meta["corrupt_states"] == 0


def test_backup_of_layout_1_restores_into_the_compact_layout(old: Any, tmp_path: Path) -> None:
    store, states, records = old
    store.history("31600000001")  # backups of both layouts in one file
    backup(store, tmp_path / "b.jsonl")
    store.client.flushall()
    assert restore(store, tmp_path / "b.jsonl").restored == 3
    for sid in states:
        assert store.client.type(K.session_keys(sid).hist) == b"list"
        assert store.history(sid) == records[sid] and store.load(sid) == states[sid][-1]
        assert store.state_at(sid, 2) == states[sid][1]
    backup(store, tmp_path / "b2.jsonl")  # and the compact layout backs up to the same lines
    a, b = (sorted((_comparable(x) for x in (tmp_path / name).read_text().splitlines()[1:-1]),
                   key=lambda line: line["session_id"]) for name in ("b.jsonl", "b2.jsonl"))
    assert a == b


def _comparable(text: str) -> dict[str, Any]:
    line = json.loads(text)
    # a hash's field order is Redis's (and a hashtable's may change when it is rebuilt)
    for name in ("state", "snap", "fx"):
        flat = line["data"][name]
        line["data"][name] = dict(zip(flat[::2], flat[1::2], strict=True))
    del line["sum"]
    return line  # type: ignore[no-any-return]


def test_the_migration_script_leaves_a_changed_stream_alone(old: Any) -> None:
    store, states, _ = old
    hist = K.session_keys("31600000001").hist
    before = store.client.xrange(hist)
    [r] = store.driver.execute([Call(MIGRATE, (hist,), (8, before[-1][0].decode(), "[1]"))])  # it has 9
    assert r == -1 and store.client.xrange(hist) == before
    [r] = store.driver.execute([Call(MIGRATE, (hist,), (9, "1-1", "[1]"))])  # another last entry
    assert r == -1 and store.client.xrange(hist) == before



def test_the_async_store_converts_on_first_touch_too(old: Any, async_store_factory: Any) -> None:
    import asyncio

    store, states, records = old
    sid = "31600000002"

    async def main() -> None:
        a = async_store_factory()
        assert await a.history(sid) == records[sid]
        prev = states[sid][-1]
        st = make_state(sid, 10, "done", slots=prev["slots"])
        assert (await a.commit(sid, 9, st, make_record(st, prev["step"]), previous=prev)).ok
        assert await a.state_at(sid, 4) == states[sid][3]
        await a.client.aclose()

    asyncio.run(main())
    assert store.client.type(K.session_keys(sid).hist) == b"list"
