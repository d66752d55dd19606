"""Backup and restore: a 10k-session round trip, restartable backups, verification, and
restoring into a non-empty Redis without going back in time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowkit.errors import BackupError
from flowkit.store import Store, backup, restore
from flowkit.store import keys as K
from flowkit.store.scripts import DUMP
from tests.store.conftest import T0, advance, make_record, make_state


def populate(store: Store, n: int) -> None:
    """n sessions, two commits each, pipelined: with dedupe ids, timeouts, some effects, some finished."""
    first, second = [], []
    for i in range(n):
        sid = f"s{i:05d}"
        s1 = make_state(sid, 0, "welcome", slots={"i": i, "name": f"user {i} ü"})
        first.append({"session_id": sid, "expected_version": 0, "state": s1,
                      "record": make_record(s1, None, event="start", message_id=f"{sid}-a"),
                      "timeout_at_ms": T0 + i, "effects": [{"kind": "reply", "text": "hi"}] if i % 7 == 0 else ()})
        done = i % 10 == 0
        s2 = make_state(sid, 1, "done" if done else "ask_size", "completed" if done else "waiting_input",
                        slots={"i": i, "name": f"user {i} ü", "size": "large"})
        second.append({"session_id": sid, "expected_version": 1, "state": s2, "previous": s1,
                       "record": make_record(s2, "welcome", message_id=f"{sid}-b"),
                       "timeout_at_ms": None if done else T0 + 10_000 + i})
    assert all(r.ok for r in store.commit_many(first)) and all(r.ok for r in store.commit_many(second))


def dump_all(store: Store) -> dict[str, Any]:
    """Every session's keys exactly as stored, plus the derived indexes."""
    sids = sorted(store.iter_session_ids())
    out: dict[str, Any] = {}
    for i in range(0, len(sids), 500):
        chunk = sids[i:i + 500]
        from flowkit.store.driver import Call

        for sid, reply in zip(chunk, store.driver.execute([Call(DUMP, K.session_keys(sid).all, ()) for sid in chunk]),
                              strict=True):
            state, hist, seen, snap, fx, ttl = reply
            out[sid] = (sorted(zip(state[::2], state[1::2], strict=True)), hist, seen, sorted(snap), sorted(fx))
    c = store.client
    out["_indexes"] = {key: c.zrange(key, 0, -1, withscores=True) for key in (K.IDX_ACTIVE, K.IDX_TIMEOUTS, K.IDX_OUTBOX)}
    out["_counters"] = store.counters()
    return out


@pytest.mark.slow
def test_round_trip_of_10k_sessions(store: Store, tmp_path: Path) -> None:
    populate(store, 10_000)
    before = dump_all(store)
    out = tmp_path / "b.jsonl"
    seen: list[tuple[int, int | None]] = []
    report = backup(store, out, progress=lambda done, total: seen.append((done, total)))
    assert report.sessions == 10_000 and report.resumed_from == 0 and not report.skipped
    assert seen[-1] == (10_000, 10_000)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10_002 and json.loads(lines[0])["format"] == "flowkit-backup"
    assert json.loads(lines[-1]) == {"end": True, "sessions": 10_000}
    assert not out.with_name("b.jsonl.partial").exists()

    store.client.flushall()
    r = restore(store, out)
    assert (r.sessions, r.restored, r.skipped_newer) == (10_000, 10_000, 0)
    assert dump_all(store) == before  # bit for bit, indexes included
    assert store.reconcile().fixed == 0
    assert store.state_at("s00042", 1)["slots"]["i"] == 42 and store.seen("s00042", "s00042-b") == 2


def test_backup_is_restartable(store: Store, tmp_path: Path) -> None:
    populate(store, 1000)
    out = tmp_path / "b.jsonl"

    class Interrupted(Exception):
        pass

    def crash_after_two(done: int, total: int | None) -> None:
        if done >= 200:
            raise Interrupted

    with pytest.raises(Interrupted):
        backup(store, out, batch=100, progress=crash_after_two)
    partial = out.with_name("b.jsonl.partial")
    assert partial.exists() and not out.exists()
    with open(partial, "ab") as fh:  # a torn last line, as a crash mid-write leaves it
        fh.write(b'{"session_id": "s0')
    report = backup(store, out, batch=100)
    assert report.resumed_from == 200 and report.sessions == 1000
    ids = [json.loads(x)["session_id"] for x in out.read_text().splitlines()[1:-1]]
    assert sorted(ids) == sorted(store.iter_session_ids())  # each session exactly once
    before = dump_all(store)
    store.client.flushall()
    restore(store, out)
    assert dump_all(store) == before


def test_restore_never_overwrites_newer_versions(store: Store, tmp_path: Path) -> None:
    prev = {f"u{i}": advance(store, f"u{i}", None, "welcome") for i in range(4)}
    out = tmp_path / "b.jsonl"
    backup(store, out)
    newer = advance(store, "u0", prev["u0"], "ask_size")  # moved on after the backup
    store.delete_session("u1")  # lost after the backup
    k2 = K.session_keys("u2")
    store.client.delete(k2.state, k2.hist)  # half gone, behind the store's back...
    assert store.reconcile().fixes["counters"]["changed"] == 3  # ...so the counters are fixed first
    r = restore(store, out)
    assert (r.restored, r.skipped_newer) == (2, 2)  # u1 and u2 come back; u0 (newer) and u3 (same) stay
    assert store.load("u0") == newer and store.load("u1") == prev["u1"] and store.load("u2") == prev["u2"]
    assert store.reconcile().fixed == 0
    assert restore(store, out).restored == 0  # running it again changes nothing


def test_damaged_or_incomplete_backups_are_refused(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        advance(store, f"u{i}", None, "welcome")
    out = tmp_path / "b.jsonl"
    backup(store, out)
    lines = out.read_text().splitlines()

    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([lines[0], lines[1].replace("welcome", "welcom3"), *lines[2:]]) + "\n")
    with pytest.raises(BackupError, match="line 2"):
        restore(store, damaged)

    forged = json.loads(lines[2])  # a consistent line checksum over a state that fails its own
    fields = forged["data"]["state"]
    fields[fields.index("state") + 1] = fields[fields.index("state") + 1].replace("welcome", "elsewhere")
    from flowkit.store.backup import _line_sum

    forged["sum"] = _line_sum(forged)
    bad_state = tmp_path / "bad_state.jsonl"
    bad_state.write_text("\n".join([lines[0], lines[1], json.dumps(forged), *lines[3:]]) + "\n")
    with pytest.raises(BackupError, match="fails its checksum"):
        restore(store, bad_state)

    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(BackupError, match="incomplete"):
        restore(store, cut)
    with pytest.raises(BackupError):
        restore(store, tmp_path / "missing.jsonl")
