"""Session state: exact JSON round trip, and the slot schema checked after every transition."""

from __future__ import annotations

import json

import pytest

from flowkit.engine import Command, Record, ServiceResult, Start, State, UserMessage, step
from flowkit.engine.state import check_state_shape
from flowkit.errors import EngineError, StateValidationError

from .helpers import FLOWS, T0, Session, flow


def full_state() -> State:
    return State(
        session_id="31612345678", flow="book_appointment", flow_version="2", step="contact/ask_email",
        status="waiting_input",
        slots={"profile": {"name": "Zoë 🍕", "wa_id": "316"}, "name": "Ana Lima", "score": 1.5, "n": 2**70,
               "loc": {"latitude": -23.5, "longitude": 46.6}, "tags": ["a", "b"], "none": None, "ok": False},
        attempts={"contact/ask_email": 2},
        stack=({"at": "contact", "flow": "collect_contact", "flow_version": "1",
                "slots": {"service": "dental", "day": "2026-12-01"}, "attempts": {}, "trail": ["ask_service"]},),
        pending={"wait": "input", "step": "contact/ask_email", "deadline": None, "trail": ["contact/ask_name"]},
        version=7, started_at=T0, updated_at=T0 + 12_345,
    )


def test_state_json_round_trip_is_exact() -> None:
    s = full_state()
    text = s.to_json()
    back = State.from_json(text)
    assert back == s
    assert back.to_json() == text  # canonical: serialising again gives the same bytes
    assert State.from_json(text.encode()) == s
    assert back.slots["n"] == 2**70 and isinstance(back.slots["score"], float)
    assert "Zoë 🍕" in text  # not \u-escaped
    assert json.loads(text)["stack"][0]["trail"] == ["ask_service"]


def test_terminal_state_round_trip() -> None:
    s = full_state().evolve(status="completed", pending=None, stack=(), step="confirmed")
    assert State.from_json(s.to_json()) == s


def test_from_dict_names_missing_fields() -> None:
    d = full_state().to_dict()
    del d["pending"], d["version"]
    with pytest.raises(StateValidationError, match="missing pending, version"):
        State.from_dict(d)


def test_record_round_trip() -> None:
    r = Record(version=3, ts=T0, event="message", from_step="a", to_step="b", path=("x", "b"), status="waiting_input",
               message_id="wamid.1", input='{"text":"hi"}', error="invalid_input:empty", actor="simulator")
    assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_shape_checks() -> None:
    s = full_state()
    check_state_shape(s)
    with pytest.raises(StateValidationError, match="unknown status 'sleeping'"):
        check_state_shape(s.evolve(status="sleeping"))
    with pytest.raises(StateValidationError, match="must say what it waits for"):
        check_state_shape(s.evolve(pending=None))
    with pytest.raises(StateValidationError, match="cannot wait for anything"):
        check_state_shape(s.evolve(status="completed"))
    with pytest.raises(StateValidationError, match="bad version or timestamps"):
        check_state_shape(s.evolve(updated_at=T0 - 1))
    for bad in ({"started_at": float("nan")}, {"version": -1}, {"started_at": -5}):
        with pytest.raises(StateValidationError, match="bad version or timestamps"):  # named, whatever else holds
            check_state_shape(s.evolve(**bad))


def test_every_transition_of_a_conversation_round_trips_and_fits_the_schema() -> None:
    # Session.send checks JSON round trip, version + 1 and the slot schema independently.
    s = Session(FLOWS["book_appointment"], FLOWS)
    s.send(Start(flow="book_appointment", profile={"name": "Ana"}))
    for text in ["dental", "25/12/2026", "2", "Ana Lima", "ana@Example.COM", "yes"]:
        s.send(text)
    assert s.state is not None and s.state.status == "waiting_service" and s.state.stack == ()
    call_id = s.state.pending["call_id"]  # type: ignore[index]
    s.send(ServiceResult(call_id=call_id, ok=True, value="BK-1"))
    assert s.state.status == "completed"
    assert s.state.slots["email"] == "ana@example.com" and s.state.slots["patient"] == "Ana Lima"
    assert [t.state.version for t in s.log] == list(range(1, 9))


BAD_SET = """
flow: bad_set
start: ask
slots:
  qty: {type: int, min: 1, max: 5}
  size: {type: choice, options: [s, m]}
steps:
  ask:
    ask: "Qty?"
    input: text
    next: compute
  compute:
    set: {qty: "'many'"}
    next: done
  done:
    end: completed
"""


def test_schema_violation_by_a_set_step_names_step_and_slot() -> None:
    f = flow(BAD_SET)
    t = step(f, None, Start(flow="bad_set"), T0, session_id="s")
    with pytest.raises(StateValidationError) as exc:
        step(f, t.state, UserMessage(text="hello"), T0 + 1)
    msg = str(exc.value)
    assert isinstance(exc.value, EngineError)
    assert "step 'done'" in msg and "slot 'qty'" in msg and "whole number" in msg and "nothing was changed" in msg
    assert t.state.version == 1 and "qty" not in t.state.slots  # the input state is untouched


def test_schema_violation_bounds_and_undeclared_slots() -> None:
    f = flow(BAD_SET.replace("\"'many'\"", "'7'"))
    t = step(f, None, Start(flow="bad_set"), T0, session_id="s")
    with pytest.raises(StateValidationError, match=r"slot 'qty' is invalid: 7 is above the maximum 5"):
        step(f, t.state, UserMessage(text="x"), T0 + 1)
    with pytest.raises(StateValidationError, match=r"step 'ask' of flow 'bad_set': slot 'colour' is not declared"):
        step(f, None, Start(flow="bad_set", args={"colour": "red"}), T0, session_id="s")
    with pytest.raises(StateValidationError, match=r"slot 'size' is invalid: 'xl' is not one of s, m"):
        step(f, None, Start(flow="bad_set", args={"size": "xl"}), T0, session_id="s")


def test_rollback_to_an_invalid_state_is_refused_naming_the_slot() -> None:
    f = FLOWS["order_pizza"]
    t = step(f, None, Start(flow="order_pizza"), T0, session_id="s")
    bad = t.state.evolve(slots={**t.state.slots, "qty": 99}).to_dict()
    with pytest.raises(StateValidationError, match=r"step 'ask_size' of flow 'order_pizza': slot 'qty' is invalid: 99 is above"):
        step(f, t.state, Command(name="rollback", args={"state": bad}, actor="admin"), T0 + 1)


def test_caller_frames_are_validated_too() -> None:
    s = Session(FLOWS["book_appointment"], FLOWS)
    s.send(Start(flow="book_appointment"))
    for text in ["dental", "2026-12-01", "09:00"]:
        s.send(text)
    assert s.state is not None and s.state.step == "contact/ask_name"
    frame = dict(s.state.stack[0])
    frame["slots"] = {**frame["slots"], "service": "surgery"}
    bad = s.state.evolve(stack=(frame,))
    with pytest.raises(StateValidationError, match=r"step 'contact' of flow 'book_appointment': slot 'service'"):
        step(FLOWS["book_appointment"], bad, UserMessage(text="Ana Lima"), T0 + 10_000, flows=FLOWS)


def test_bad_service_value_is_a_service_error_not_a_corrupt_state() -> None:
    s = Session(FLOWS["order_pizza"], FLOWS)
    s.send(Start(flow="order_pizza"))
    for text in ["small", "2", "12 Main Street"]:
        s.send(text)
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    t = s.send(ServiceResult(call_id=call_id, ok=True, value=12345))  # order_id is text
    assert t.record is not None and t.record.error is not None
    assert t.record.error.startswith("service_error:bad_result") and "expected text" in t.record.error
    assert t.state.status == "failed" and t.state.step == "sorry" and "order_id" not in t.state.slots


def test_service_value_is_stored_as_it_reads_back_from_json() -> None:
    s = Session(FLOWS["refund"], FLOWS)
    s.send(Start(flow="refund"))
    s.send("AB1234")
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    t = s.send(ServiceResult(call_id=call_id, ok=True, value={"amount": 20, "items": ("a", "b")}))
    assert t.state.slots["payment"] == {"amount": 20, "items": ["a", "b"]}  # the tuple became a list
    assert State.from_json(t.state.to_json()) == t.state


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object(), {"x": float("inf")}])
def test_service_value_without_json_form_is_a_bad_result(value: object) -> None:
    s = Session(FLOWS["refund"], FLOWS)
    s.send(Start(flow="refund"))
    s.send("AB1234")
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    t = s.send(ServiceResult(call_id=call_id, ok=True, value=value))
    assert t.record is not None and t.record.error is not None and t.record.error.startswith("service_error:bad_result")
    assert t.state.step == "not_found" and t.state.status == "failed"


def test_start_args_and_profile_must_have_a_json_form() -> None:
    f = FLOWS["refund"]
    with pytest.raises(EngineError, match="Start event's args cannot be stored"):
        step(f, None, Start(flow="refund", args={"payment": {1, 2}}), T0, session_id="s")
    with pytest.raises(EngineError, match="profile cannot be stored"):
        step(f, None, Start(flow="refund", profile={"name": float("nan")}), T0, session_id="s")
    with pytest.raises(EngineError, match="'profile' is reserved"):
        step(f, None, Start(flow="refund", args={"profile": {}}), T0, session_id="s")
