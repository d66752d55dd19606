"""The history checker against real Redis: clean sessions pass, and every violation kind,
injected straight into the session's keys, is named with its session and version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowkit.check import CODES, CheckError, SentLog, check, check_export, check_store, load_sent_log
from flowkit.engine import UserMessage
from flowkit.history.export import export_store
from flowkit.runtime import FlowRegistry, RecordingChannel, Runtime
from flowkit.store import Store, legacy
from flowkit.store import entries as packed
from flowkit.store import keys as K
from flowkit.store.codec import checksum, dumps
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock

PIZZA = ["pizza", "large", "yes", "2", "12 Main Street"]  # 6 commits: start .. done (with the order call)
SUPPORT = ["support", "billing", "AB123456", "2", "The box arrived empty", "no"]
REGISTRY = FlowRegistry(EXAMPLE_FLOWS)


class World:
    """Two sessions the runtime wrote, the sent log of what their users sent, and reply counts."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.channel = RecordingChannel()
        self.rt = Runtime(store, REGISTRY, channel=self.channel, services=EXAMPLE_SERVICES, clock=Clock())
        self.sent: list[dict[str, Any]] = []
        for sid, texts in (("31600000001", PIZZA), ("31600000002", SUPPORT)):
            for i, text in enumerate(texts, 1):
                mid = f"wamid.{sid}.{i}"
                out = self.rt.handle(sid, UserMessage(text=text, message_id=mid))
                self.rt.clock.advance(5)  # type: ignore[attr-defined]
                self.sent.append({"kind": "in", "session_id": sid, "message_id": mid, "ts": 0, "text": text,
                                  "acked": True, "outcome": out.status, "delivery": "first"})
        counts: dict[str, int] = {}
        for out_msg in self.channel.sent:
            counts[out_msg.to] = counts.get(out_msg.to, 0) + 1
        self.replies = counts
        self.sent += [{"kind": "replies", "session_id": s, "count": n, "exact": True} for s, n in counts.items()]

    def check(self, **kw: Any) -> Any:
        return check_store(self.store, REGISTRY, sent=kw.pop("sent", self.sent), **kw)

    # -- direct edits of the session's Redis keys

    # (in layout 1's shape, id + fields, which is easy to edit; stored in the compact layout)
    def entries(self, sid: str) -> list[tuple[str, dict[str, str]]]:
        raw = self.store.client.lrange(K.session_keys(sid).hist, 0, -1)
        out = []
        for rec in packed.decode_all(sid, raw):
            f = legacy.record_fields(rec)
            out.append((legacy.entry_id(rec["version"], rec["ts"]), dict(zip(f[::2], f[1::2], strict=True))))
        return out

    def rewrite(self, sid: str, entries: list[tuple[str, dict[str, str]]]) -> None:
        hist = K.session_keys(sid).hist
        records = [legacy.decode_entry(sid, eid, [x for kv in fields.items() for x in kv]) for eid, fields in entries]
        pipe = self.store.client.pipeline()
        pipe.delete(hist)
        pipe.rpush(hist, *packed.pack_records(records))
        pipe.execute()

    def set_state(self, sid: str, change: Any) -> dict[str, Any]:
        """Write a changed state with a matching checksum (so it passes the integrity check)."""
        k = K.session_keys(sid).state
        state = self.store.load_raw(sid)  # (the JSON is packed in chunks: flowkit/store/statefield.py)
        assert state is not None
        change(state)
        text = dumps(state)
        self.store.client.hset(k, mapping={"state": text, "checksum": checksum(text), "version": state["version"],
                                           "step": state["step"] or "", "status": state["status"]})
        return state


@pytest.fixture
def world(store: Store) -> World:
    return World(store)


def _one(report: Any, code: str) -> Any:
    found = report.by_code(code)
    assert len(found) >= 1, report.violations
    return found[0]


def test_sessions_the_runtime_wrote_pass_every_check(world: World) -> None:
    report = world.check()
    assert report.ok, [str(v) for v in report.violations]
    assert report.sessions == 2 and report.records == 6 + 7
    assert report.messages_checked == len(PIZZA) + len(SUPPORT)
    # the support flow's `details` slot is sensitive: that record's input is redacted, so
    # its replay (and that session's reply count) is left unchecked
    assert report.replies_checked == 1 and report.replayed == report.records - 1
    assert world.store.load("31600000001")["status"] == "completed"


def test_deleted_history_record_is_a_version_gap(world: World) -> None:
    entries = world.entries("31600000001")
    world.rewrite("31600000001", [e for e in entries if not e[0].startswith("3-")])
    v = _one(world.check(), "VERSION_GAP")
    assert (v.session_id, v.version) == ("31600000001", 3)
    assert "from 2 to 4" in v.detail
    assert {x.session_id for x in world.check().violations} == {"31600000001"}


def test_record_stored_twice_is_a_version_duplicate(world: World) -> None:
    entries = world.entries("31600000002")
    out = []
    for eid, fields in entries:
        out.append((eid, fields))
        if eid.startswith("4-"):
            version, ts = eid.split("-")
            out.append((f"{version}-{int(ts) + 1}", dict(fields)))
    world.rewrite("31600000002", out)
    v = _one(world.check(), "VERSION_DUPLICATE")
    assert (v.session_id, v.version) == ("31600000002", 4)


def test_one_message_applied_twice_is_a_double_apply(world: World) -> None:
    entries = world.entries("31600000001")
    first = next(f for e, f in entries if e.startswith("2-"))["message_id"]
    world.rewrite("31600000001", [(e, {**f, "message_id": first} if e.startswith("3-") else f) for e, f in entries])
    v = _one(world.check(), "DOUBLE_APPLY")
    assert (v.session_id, v.version) == ("31600000001", 3)
    assert first in v.detail and "first at v2" in v.detail


def test_acked_message_missing_from_history_is_lost(world: World) -> None:
    lost = [*world.sent,
            {"kind": "in", "session_id": "31600000002", "message_id": "wamid.gone", "acked": True, "outcome": "applied"},
            {"kind": "in", "session_id": "31699999999", "message_id": "wamid.nobody", "acked": True, "outcome": "applied"},
            # not acknowledged, or acknowledged as unrouted: nothing promised it is stored
            {"kind": "in", "session_id": "31600000002", "message_id": "wamid.unacked", "acked": False, "outcome": "unavailable"},
            {"kind": "in", "session_id": "31600000002", "message_id": "wamid.unrouted", "acked": True, "outcome": "unrouted"}]
    report = world.check(sent=lost)
    found = {(v.session_id, v.version, v.detail.split()[1]) for v in report.by_code("LOST_MESSAGE")}
    assert found == {("31600000002", None, "wamid.gone"), ("31699999999", None, "wamid.nobody")}
    assert set(report.counts()) == {"LOST_MESSAGE"}


def test_a_redelivered_unrouted_message_is_not_required(world: World) -> None:
    """The runtime answers a redelivery of an unrouted message "duplicate" (it remembers the
    id), but no history holds it: found by the simulator, `flowkit check` called it lost."""
    sid, mid = "31600000001", "wamid.after.the.end"  # the pizza session has completed
    first = world.rt.handle(sid, UserMessage(text="hello?", message_id=mid))
    again = world.rt.handle(sid, UserMessage(text="hello?", message_id=mid))
    assert (first.status, again.status) == ("unrouted", "duplicate")
    sent = [*world.sent, *({"kind": "in", "session_id": sid, "message_id": mid, "acked": True, "outcome": o.status}
                           for o in (first, again))]
    assert SentLog.of(sent).acked[sid] == {f"wamid.{sid}.{i}" for i in range(1, 6)}
    report = world.check(sent=sent)
    assert report.ok, [str(v) for v in report.violations]


def test_state_that_disagrees_with_the_last_record_is_a_state_mismatch(world: World) -> None:
    # the support session ended at `to_agent`; pretend the state says ask_details
    world.set_state("31600000002", lambda s: s.update(step="ask_details"))
    report = world.check()
    v = _one(report, "STATE_MISMATCH")
    assert (v.session_id, v.version) == ("31600000002", 7) and "ask_details" in v.detail
    # a state one version ahead of its history
    world.set_state("31600000001", lambda s: s.update(version=7))
    mism = {(x.session_id, x.version) for x in world.check().by_code("STATE_MISMATCH")}
    assert ("31600000001", 6) in mism


def test_altered_recorded_path_is_a_replay_mismatch(world: World) -> None:
    entries = world.entries("31600000001")
    out = []
    for eid, f in entries:
        if eid.startswith("2-"):  # "large": ask_size -> upsell; claim it went to ask_qty
            f = {**f, "path": json.dumps(["ask_qty"]), "to_step": ""}
        out.append((eid, f))
    world.rewrite("31600000001", out)
    report = world.check()
    found = [v for v in report.by_code("REPLAY_MISMATCH") if v.session_id == "31600000001"]
    assert found and found[0].version == 2
    assert any("to_step" in v.detail or "path" in v.detail for v in found)


def test_illegal_states_unknown_step_bad_slot_and_broken_checksum(world: World) -> None:
    world.set_state("31600000002", lambda s: s["slots"].update(urgency=99))  # 1..5
    v = _one(world.check(), "ILLEGAL_STATE")
    assert (v.session_id, v.version) == ("31600000002", 7) and "urgency" in v.detail

    world.set_state("31600000002", lambda s: (s["slots"].update(urgency=2), s.update(step="no_such_step")))
    v = _one(world.check(), "ILLEGAL_STATE")
    assert (v.session_id, v.version) == ("31600000002", 7) and "no_such_step" in v.detail

    world.set_state("31600000002", lambda s: s.update(step="resolved", status="waiting_input",
                                                      pending={"wait": "input", "step": "resolved", "deadline": None,
                                                               "trail": []}))  # a say step
    v = _one(world.check(), "ILLEGAL_STATE")
    assert "waits for input" in v.detail

    world.store.client.hset(K.session_keys("31600000001").state, "checksum", "12345")
    found = {x.session_id: x for x in world.check().by_code("ILLEGAL_STATE")}
    assert "integrity" in found["31600000001"].detail and found["31600000001"].version == 6


def test_wrong_reply_count_is_a_reply_mismatch(world: World) -> None:
    report = world.check(replies={"31600000001": world.replies["31600000001"] + 1})
    v = _one(report, "REPLY_MISMATCH")
    assert (v.session_id, v.version) == ("31600000001", None)
    assert f"got {world.replies['31600000001'] + 1} replies" in v.detail
    assert set(report.counts()) == {"REPLY_MISMATCH"}
    # an inexact count (a reply may have gone out before a failure) is not held against anyone
    loose = [{**r, "count": 99, "exact": False} if r["kind"] == "replies" else r for r in world.sent]
    assert world.check(sent=loose).ok


def test_every_code_is_exercised_here() -> None:
    text = Path(__file__).read_text()
    assert all(f'"{code}"' in text for code in CODES)


def test_check_export_of_a_clean_and_a_damaged_export(world: World, tmp_path: Path) -> None:
    export_store(world.store, tmp_path / "clean", fmt="jsonl")
    report = check_export(tmp_path / "clean", REGISTRY, sent=world.sent)
    assert report.ok, [str(v) for v in report.violations]
    assert report.sessions == 2 and report.records == 13 and report.messages_checked == 11
    assert report.source.endswith("clean")
    assert check(tmp_path / "clean", REGISTRY).ok  # check() dispatches on a path

    # drop one history row and double another: the export shows a gap and a duplicate
    src = tmp_path / "clean" / "history.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    bad = [r for r in rows if not (r["session_id"] == "31600000002" and r["version"] == 5)]
    bad.append(next(r for r in rows if r["session_id"] == "31600000001" and r["version"] == 2))
    dmg = tmp_path / "damaged"
    dmg.mkdir()
    (dmg / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    (dmg / "sessions.jsonl").write_text((tmp_path / "clean" / "sessions.jsonl").read_text())
    report = check_export(dmg, REGISTRY, sent=world.sent)
    got = {(v.code, v.session_id, v.version) for v in report.violations}
    assert ("VERSION_GAP", "31600000002", 5) in got
    assert ("VERSION_DUPLICATE", "31600000001", 2) in got
    assert ("DOUBLE_APPLY", "31600000001", 2) in got
    with pytest.raises(CheckError):
        check_export(tmp_path / "nothing-here", REGISTRY)


def test_sent_log_file_round_trip_and_bad_lines(world: World, tmp_path: Path) -> None:
    p = tmp_path / "sent.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in world.sent) + "\n")
    records = load_sent_log(p)
    log = SentLog.of(records)
    assert log.acked["31600000001"] == {f"wamid.31600000001.{i}" for i in range(1, 6)}
    assert log.replies == world.replies
    assert world.check(sent=log).ok
    (tmp_path / "bad.jsonl").write_text('{"session_id": "a"}\nnot json\n')
    with pytest.raises(CheckError, match="bad.jsonl:2"):
        load_sent_log(tmp_path / "bad.jsonl")
    with pytest.raises(CheckError):
        load_sent_log(tmp_path / "missing.jsonl")
