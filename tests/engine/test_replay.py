"""Replaying a recorded history through the pure engine gives the same states and effects."""

from __future__ import annotations

import json
from typing import Any

from flowkit.engine import Command, ServiceResult, Start, State, Timeout, UserMessage
from flowkit.engine.replay import event_from_record, replay
from flowkit.flow import Flow

from .helpers import FLOWS, Session


def history(s: Session) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Records as the store keeps them (with the state's flow columns) and states by version."""
    records, states = [], {}
    for t in s.log:
        if t.record is None:
            continue
        rec = {**t.record.to_dict(), "session_id": t.state.session_id, "flow": t.state.flow,
               "flow_version": t.state.flow_version}
        records.append(json.loads(json.dumps(rec)))
        states[t.state.version] = t.state.to_dict()
    return records, states


def flow_for(name: str, version: str | None) -> Flow:
    f = FLOWS[name]
    assert version in (None, f.version_id)
    return f


def book_session() -> Session:
    s = Session(FLOWS["book_appointment"], FLOWS, sid="31600000001")
    s.send(Start(flow="book_appointment", profile={"name": "Ana"}, message_id="w0", text="book"))
    for text in ["vaccin", "31/02/2026", "1/12/2026", "help", "14:00", "back", "16:00", "A", "Ana Lima", "nope@",
                 "ana@example.com", "no", "Ana Lima", "ana@example.com", "yes"]:
        s.send(text)
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    s.send(ServiceResult(call_id=call_id, ok=False, error="taken"))
    s.send("09:00")
    s.send("Ana Lima")
    s.send("ana@example.com")
    s.send("yes")
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    s.send(ServiceResult(call_id=call_id, ok=True, value="BK-9"))
    s.send(Start(flow="book_appointment", text="book"))
    s.send(Timeout(), dt_ms=3_600_000)
    return s


def test_replay_of_a_recorded_history_gives_the_same_states_records_and_effects() -> None:
    s = book_session()
    records, states = history(s)
    assert len(records) == 24 and s.state is not None and s.state.status == "expired"
    steps = list(replay(records, flow_for, FLOWS, session_id="31600000001", profile={"name": "Ana"}))
    assert [r.error for r in steps] == [None] * len(records)
    changed = [t for t in s.log if t.changed]
    for item, original in zip(steps, changed, strict=True):
        assert item.transition is not None
        assert item.transition.state.to_json() == original.state.to_json()
        assert item.transition.record == original.record
        assert item.transition.effects == original.effects


def test_replay_detects_a_tampered_history() -> None:
    s = book_session()
    records, _ = history(s)
    records[1]["input"] = json.dumps({"type": "text", "text": "dental"})  # was "vaccin"
    steps = list(replay(records, flow_for, FLOWS, session_id="31600000001", profile={"name": "Ana"}))
    first = steps[1].transition
    assert first is not None and first.state.slots["service"] == "dental"
    assert first.state.to_json() != s.log[1].state.to_json()


def test_unreplayable_records_take_the_stored_state() -> None:
    s = Session(FLOWS["support_triage"], sid="s7")
    s.send(Start(flow="support_triage"))
    s.send("account")
    s.send("2")
    s.send("my password leaked")  # a sensitive slot: redacted in history
    target = s.log[1].state
    s.send(Command(name="rollback", args={"state": target.to_dict(), "to_version": 2}, actor="admin"))
    s.send("5")
    records, states = history(s)
    assert event_from_record(records[3]) is None and event_from_record(records[4]) is None
    steps = list(replay(records, flow_for, FLOWS, session_id="s7", state_at=lambda v: states[v]))
    assert [x.error for x in steps] == [None, None, None, "not replayable", "not replayable", None]
    last = steps[-1].transition
    assert last is not None and last.state.to_json() == s.state.to_json()  # type: ignore[union-attr]


def test_event_from_record_rebuilds_each_kind() -> None:
    assert event_from_record({"event": "start", "input": '{"flow":"refund","text":"refund"}', "message_id": "m"}) == Start(
        flow="refund", text="refund", message_id="m")
    assert event_from_record({"event": "timeout", "input": "{}", "actor": "recovery"}) == Timeout(actor="recovery")
    assert event_from_record({"event": "expire", "input": "{}"}) == Timeout()
    assert event_from_record({"event": "service_result", "input": '{"call_id":"c","ok":false,"error":"x"}'}) == ServiceResult(
        call_id="c", ok=False, error="x")
    assert event_from_record({"event": "command", "input": '{"command":"reset"}', "actor": "admin"}) == Command(
        name="reset", actor="admin")
    assert event_from_record({"event": "command", "input": '{"type":"text","text":"back"}', "message_id": "m2"}) == UserMessage(
        text="back", message_id="m2")
    loc = {"latitude": 1.0, "longitude": 2.0}
    assert event_from_record({"event": "message", "input": json.dumps({"type": "location", "location": loc})}) == UserMessage(
        type="location", location=loc)
    assert event_from_record({"event": "migrate", "input": "{}"}) is None


def test_replayed_states_equal_the_json_of_the_originals() -> None:
    s = book_session()
    for t in s.log:
        assert State.from_json(t.state.to_json()) == t.state
