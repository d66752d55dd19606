"""Backup and restore: a 10k-session round trip, restartable backups, verification, and
restoring into a non-empty Redis without going back in time."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from flowkit.errors import BackupError
from flowkit.store import Store, backup, entries, restore
from flowkit.store import keys as K
from flowkit.store import statefield as SF
from flowkit.store.backup import _compact
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
            state, hist, seen, snap, fx, ttl, _layout = reply
            # the history decoded: a restore names each element's flow, which a live commit may
            # leave to the element before (flowkit/store/entries.py); the records are the same
            # the state hash with its state JSON unpacked: a restore cuts the JSON into chunks
            # as it is (Lua has no zlib), a commit deflates it first (flowkit/store/statefield.py)
            plain = SF.plain_fields(SF.as_fields(zip(state[::2], state[1::2], strict=True)))
            out[sid] = (sorted((k.encode(), v) for k, v in plain.items()), entries.decode_all(sid, hist), seen,
                        sorted(snap), sorted(fx))
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
    trailer = json.loads(lines[-1])
    assert trailer.keys() == {"end", "sessions", "lines", "sum"} and trailer["sessions"] == 10_000
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


def _rewrite(path: Path, out: Path, edit: Any) -> Path:
    """``path`` with ``edit(line)`` applied to its first session line, re-checksummed (a crafted file)."""
    from flowkit.store.backup import _Chain, _line_sum, _trailer_line

    header, *sessions, _ = path.read_text().splitlines()
    lines = [json.loads(x) for x in sessions]
    edit(lines[0])
    chain = _Chain()
    for line in lines:
        line["sum"] = _line_sum(line)
        chain.add(line["sum"])
    out.write_text("\n".join([header, *map(json.dumps, lines), json.dumps(_trailer_line(len(lines), chain))]) + "\n")
    return out


CRAFTED: dict[str, tuple[Any, str]] = {
    "no data": (lambda line: line.pop("data"), "data does not hold"),
    "version a string": (lambda line: line.update(version="2"), "version is not an integer"),
    "odd state": (lambda line: line["data"]["state"].append("x"), "state hash is not a list of string pairs"),
    "state not a list": (lambda line: line["data"].update(state={"a": 1}), "state hash is not a list"),
    "hist not a list": (lambda line: line["data"].update(hist="x"), "hist is not a list"),
    "hist entry": (lambda line: line["data"]["hist"].append(["9-9"]), "history entry is not \\[id, fields\\]"),
    "hist id": (lambda line: line["data"]["hist"][0].__setitem__(0, "a-b"), "is malformed"),
    "hist order": (lambda line: line["data"]["hist"].reverse(), "does not increase"),
    "hist ahead": (lambda line: line["data"]["hist"].append(["99-0", ["event", "x"]]), "beyond the state's version"),
    "seen score": (lambda line: line["data"]["seen"].extend(["x", "m"]), "dedupe score is not an integer"),
    "ttl": (lambda line: line["data"].update(ttl="soon"), "ttl is not an integer"),
    "fx": (lambda line: line["data"]["fx"].extend(["3", "no time"]), "outbox time is not an integer"),
    "hash version": (lambda line: line["data"]["state"].__setitem__(
        line["data"]["state"].index("version") + 1, "7"), "another version than the line"),
    "hash status": (lambda line: line["data"]["state"].__setitem__(
        line["data"]["state"].index("status") + 1, "completed"), "disagree with the state"),
}


def test_crafted_lines_with_valid_checksums_are_refused_and_write_nothing(store: Store, tmp_path: Path) -> None:
    """Each crafted line used to crash with a traceback (KeyError, TypeError, ValueError) or, for
    history ids that do not increase, rewrite the state and then fail in the middle of the script."""
    prev = advance(store, "u0", None, "welcome")
    advance(store, "u0", prev, "ask_size")
    out = tmp_path / "b.jsonl"
    backup(store, out)
    store.client.flushall()
    older = advance(store, "u0", None, "welcome")  # Redis holds v1; the backup v2 would replace it
    for name, (edit, message) in CRAFTED.items():
        crafted = _rewrite(out, tmp_path / f"{name}.jsonl", edit)
        with pytest.raises(BackupError, match=message):
            restore(store, crafted)
        assert store.load("u0") == older and len(store.history("u0")) == 1, name
    assert restore(store, out).restored == 1  # the untouched file still restores


def test_the_restore_script_checks_everything_before_its_first_write(store: Store, tmp_path: Path) -> None:
    """Even past the Python checks (a caller of the script, a flowkit bug), the script writes
    nothing when history ids do not increase: Redis does not roll a failed script back."""
    from flowkit.store.contract import RestoreArgs

    prev = advance(store, "u0", None, "welcome")
    advance(store, "u0", prev, "ask_size")
    out = tmp_path / "b.jsonl"
    backup(store, out)
    line = json.loads(out.read_text().splitlines()[1])
    store.client.flushall()
    older = advance(store, "u0", None, "welcome")
    data = json.loads(_compact(line))  # what restore() hands the script: compact elements
    data["hist"].reverse()
    call = RestoreArgs(version=2, data=json.dumps(data), session_id="u0").call(K.session_keys("u0"), indexed=True)
    [reply] = store.driver.execute([call])
    assert isinstance(reply, Exception) and "do not increase; nothing was written" in str(reply)
    assert store.load("u0") == older and len(store.history("u0")) == 1
    assert store.reconcile(dry_run=True).fixed == 0


def test_version_1_backups_are_still_restored(store: Store, tmp_path: Path) -> None:
    populate(store, 30)
    before = dump_all(store)
    out = tmp_path / "b.jsonl"
    backup(store, out)
    header, *sessions, _ = out.read_text().splitlines()
    old = tmp_path / "v1.jsonl"
    old.write_text("\n".join([json.dumps({**json.loads(header), "version": 1}), *sessions,
                              json.dumps({"end": True, "sessions": len(sessions)})]) + "\n")
    store.client.flushall()
    assert restore(store, old).restored == 30
    assert dump_all(store) == before


def test_backups_are_private_whatever_the_umask(store: Store, tmp_path: Path) -> None:
    advance(store, "u0", None, "welcome")
    out = tmp_path / "b.jsonl"
    partial = out.with_name("b.jsonl.partial")
    partial.write_text("")  # an old partial file, world-readable
    partial.chmod(0o644)
    old = os.umask(0)
    try:
        backup(store, out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_why_survives_a_backup_and_a_restore(store: Store, tmp_path: Path) -> None:
    # the engine's reasons are part of the history: kept in the compact element, in the backup
    # line (only when there is one) and after a restore
    from flowkit.engine import UserMessage
    from flowkit.runtime import RecordingChannel, Runtime
    from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES

    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES)
    for i, text in enumerate(["pizza", "huge", "large"]):
        rt.handle("w1", UserMessage(text=text, message_id=f"m{i}"))
    before = store.history("w1")
    assert json.loads(before[1]["why"])["invalid"]["input"] == "huge" and before[0]["why"] is None
    backup(store, tmp_path / "b.jsonl")
    store.client.flushall()
    assert restore(store, tmp_path / "b.jsonl").restored == 1
    assert store.history("w1") == before
