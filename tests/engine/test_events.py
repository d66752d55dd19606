"""Every event kind into the engine: starts, messages of each WhatsApp type, service
results, timeouts, global commands and admin commands."""

from __future__ import annotations

import json

import pytest

from flowkit.engine import (
    CallService,
    Command,
    End,
    Reply,
    Schedule,
    ServiceResult,
    Start,
    Timeout,
    UserMessage,
    step,
)
from flowkit.engine.transition import CANCELLED_TEXT, EXPIRED_TEXT, NO_BACK_TEXT
from flowkit.errors import EngineError
from flowkit.flow import flow_from_dict

from .helpers import FLOWS, T0, Session, flow, flows_of

KINDS = flow("""
flow: kinds
start: ask_size
triggers: [go]
timeout: 30m
help: "Answer the question, {{ profile.name or 'friend' }}."
slots:
  size: {type: choice, options: [small, medium, large]}
  topping: {type: choice, options: [cheese, ham, olives, mushroom, pepper]}
  where: {type: location}
  photo: {type: media}
  ok: {type: bool}
  result: {type: text}
steps:
  ask_size:
    ask:
      text: "Size?"
      buttons: [{id: small, title: "Small"}, {id: medium, title: "Medium"}, {id: large, title: "Large one"}]
    input: {type: choice, options: [small, medium, large]}
    save: size
    next: ask_topping
  ask_topping:
    ask:
      text: "Topping?"
      list:
        button: "Toppings"
        rows:
          - {id: cheese, title: "Cheese"}
          - {id: ham, title: "Ham"}
          - {id: olives, title: "Olives"}
          - {id: mushroom, title: "Mushroom"}
          - {id: pepper, title: "Pepper"}
    input: {type: choice, options: [cheese, ham, olives, mushroom, pepper]}
    save: topping
    next: ask_where
  ask_where:
    ask: "Where?"
    input: location
    save: where
    next: ask_photo
  ask_photo:
    ask: "A photo please"
    input: {type: media, media: [image]}
    save: photo
    next: lookup
  lookup:
    call: shop.lookup
    args: {size: "size", topping: "topping"}
    save: result
    timeout: 5s
    on_error: oops
    next: ask_ok
  ask_ok:
    ask: "OK?"
    input: yes_no
    save: ok
    next: done
  oops:
    say: "Oops"
    end: failed
  done:
    say: "Done {{ result }}"
    end: completed
""")


def at_lookup() -> Session:
    s = Session(KINDS)
    s.send(Start(flow="kinds", text="go", message_id="m0", profile={"name": "Ana"}))
    s.send(UserMessage(type="button_reply", reply_id="large", text="Large one", message_id="b1"))
    s.send(UserMessage(type="list_reply", reply_id="olives", text="Olives", message_id="l1"))
    s.send(UserMessage(type="location", location={"latitude": 52.37, "longitude": 4.9, "name": "Dam"}, message_id="g1"))
    s.send(UserMessage(type="media", media={"id": "MEDIA1", "kind": "image", "mime_type": "image/jpeg"}, message_id="p1"))
    return s


# ---------------------------------------------------------------- start


def test_start_by_trigger_records_the_text_and_enters_the_start_step() -> None:
    t = step(KINDS, None, Start(flow="kinds", text="go", message_id="m0"), T0, session_id="s1")
    r = t.record
    assert r is not None and r.event == "start" and r.from_step is None and r.path == ("ask_size",)
    assert r.message_id == "m0" and json.loads(r.input or "") == {"flow": "kinds", "text": "go"}
    assert t.state.session_id == "s1" and t.state.flow_version == KINDS.version_id and t.state.started_at == T0
    assert t.state.status == "waiting_input" and t.state.version == 1
    reply = t.effects[0]
    assert isinstance(reply, Reply) and reply.buttons == (("small", "Small"), ("medium", "Medium"), ("large", "Large one"))


def test_explicit_start_with_args_fills_slots() -> None:
    t = step(KINDS, None, Start(flow="kinds", args={"size": "small"}, actor="admin"), T0, session_id="s1")
    assert t.state.slots["size"] == "small" and t.record is not None and t.record.actor == "admin"
    assert json.loads(t.record.input or "")["args"] == {"size": "small"}


def test_start_needs_the_right_flow_and_a_session_id() -> None:
    with pytest.raises(EngineError, match="names flow 'refund'"):
        step(KINDS, None, Start(flow="refund"), T0, session_id="s1")
    with pytest.raises(EngineError, match="needs a session_id"):
        step(KINDS, None, Start(flow="kinds"), T0)
    with pytest.raises(EngineError, match="can only begin with a Start"):
        step(KINDS, None, UserMessage(text="hi"), T0, session_id="s1")


def test_start_on_a_live_session_is_refused() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    with pytest.raises(EngineError, match="still in flow 'kinds'"):
        s.send(Start(flow="kinds"))


def test_start_again_on_an_ended_session_keeps_the_profile_and_clears_slots() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds", profile={"name": "Ana"}, args={"size": "small"}))
    s.send(Command(name="cancel"))
    t = s.send(Start(flow="kinds", text="go"))
    assert t.state.status == "waiting_input" and t.state.step == "ask_size" and t.state.version == 3
    assert t.state.slots == {"profile": {"name": "Ana"}} and t.state.started_at == s.now


def test_start_of_another_flow_on_an_ended_session_starts_it() -> None:
    # Known bug 1: this raised "session runs flow 'kinds', but the engine was given flow 'refund'".
    s = Session(KINDS, FLOWS)
    s.send(Start(flow="kinds", profile={"name": "Ana"}, args={"size": "small"}))
    s.send(Command(name="cancel"))
    t = s.send(Start(flow="refund", text="refund"), root=FLOWS["refund"])
    assert t.state.flow == "refund" and t.state.flow_version == "1" and t.state.step == "ask_order"
    assert t.state.slots == {"profile": {"name": "Ana"}} and t.state.version == 3
    assert t.record is not None and t.record.from_step is None and t.record.event == "start"


def test_another_flow_on_a_live_session_is_refused() -> None:
    s = Session(KINDS, FLOWS)
    s.send(Start(flow="kinds"))
    with pytest.raises(EngineError, match="runs flow 'kinds', but the engine was given flow 'refund'"):
        s.send(UserMessage(text="x"), root=FLOWS["refund"])
    with pytest.raises(EngineError, match="runs flow 'kinds'"):
        s.send(Start(flow="refund"), root=FLOWS["refund"])


def test_session_id_must_match_the_state() -> None:
    t = step(KINDS, None, Start(flow="kinds"), T0, session_id="s1")
    with pytest.raises(EngineError, match="belongs to session 's1', not 's2'"):
        step(KINDS, t.state, UserMessage(text="small"), T0 + 1, session_id="s2")


# ---------------------------------------------------------------- messages


def test_text_button_list_location_and_media_messages() -> None:
    s = at_lookup()
    recs = [t.record for t in s.log]
    assert [r.to_step for r in recs if r] == ["ask_size", "ask_topping", "ask_where", "ask_photo", "lookup"]
    st = s.state
    assert st is not None
    assert st.slots["size"] == "large" and st.slots["topping"] == "olives"
    assert st.slots["where"] == {"latitude": 52.37, "longitude": 4.9, "name": "Dam"}
    assert st.slots["photo"] == {"id": "MEDIA1", "kind": "image", "mime_type": "image/jpeg"}
    assert json.loads(recs[1].input or "") == {"type": "button_reply", "reply_id": "large", "text": "Large one"}
    assert recs[1].message_id == "b1"
    # a 5-option list question is offered as the flow's list menu
    menu = s.log[1].effects[0]
    assert isinstance(menu, Reply) and menu.list_button == "Toppings" and len(menu.sections[0][1]) == 5


def test_button_title_typed_as_text_counts_as_the_option() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    t = s.send("large ONE")
    assert t.state.slots["size"] == "large"


def test_wrong_message_type_is_invalid_input() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    t = s.send(UserMessage(type="location", location={"latitude": 1, "longitude": 2}))
    assert t.record is not None and t.record.error == "invalid_input:wrong_type"
    s3 = Session(KINDS)
    s3.send(Start(flow="kinds"))
    s3.send("small")
    s3.send("ham")
    t = s3.send("Amsterdam")
    assert t.record is not None and t.record.error == "invalid_input:need_location" and t.state.step == "ask_where"
    t = s3.send(UserMessage(type="location", location={"latitude": 95, "longitude": 2}))
    assert t.record is not None and t.record.error == "invalid_input:need_location"
    s3.send(UserMessage(type="location", location={"latitude": 5, "longitude": 2}))
    t = s3.send(UserMessage(type="media", media={"id": "A1", "kind": "audio"}))
    assert t.record is not None and t.record.error == "invalid_input:wrong_media"
    t = s3.send(UserMessage(type="unsupported"))
    assert t.record is not None and t.record.error == "invalid_input:need_media"


def test_profile_update_in_a_message_is_saved() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds", profile={"name": "Ana"}))
    t = s.send(UserMessage(text="small", profile={"name": "Ana Lima", "wa_id": "316"}))
    assert t.state.slots["profile"] == {"name": "Ana Lima", "wa_id": "316"}


def test_message_while_waiting_for_a_service_gets_a_busy_reply() -> None:
    s = at_lookup()
    t = s.send("hello?")
    assert t.changed and t.record is not None and t.record.error == "busy" and t.state.status == "waiting_service"
    assert t.state.pending == s.log[-2].state.pending
    assert not any(isinstance(e, CallService) for e in t.effects)


def test_message_to_an_ended_session_is_refused() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    s.send(Command(name="cancel"))
    with pytest.raises(EngineError, match=r"has ended \(cancelled\)"):
        s.send("small")


# ---------------------------------------------------------------- service results


def test_service_result_ok_continues_and_saves() -> None:
    s = at_lookup()
    call = next(e for e in s.last.effects if isinstance(e, CallService))
    assert call.service == "shop.lookup" and call.args == {"size": "large", "topping": "olives"} and call.timeout == 5.0
    t = s.send(ServiceResult(call_id=call.call_id, ok=True, value="R-1"))
    assert t.record is not None and t.record.event == "service_result" and t.record.message_id == f"result:{call.call_id}"
    assert t.state.slots["result"] == "R-1" and t.state.step == "ask_ok"
    assert json.loads(t.record.input or "") == {"call_id": call.call_id, "ok": True, "value": "R-1"}


def test_service_result_error_goes_to_on_error() -> None:
    s = at_lookup()
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    t = s.send(ServiceResult(call_id=call_id, ok=False, error="http_503"))
    assert t.record is not None and t.record.error == "service_error:http_503"
    assert t.state.status == "failed" and t.record.path == ("oops",) and s.texts() == ["Oops"]


def test_service_result_for_another_call_id_changes_nothing() -> None:
    s = at_lookup()
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    t = s.send(ServiceResult(call_id=call_id + "x", ok=True, value="R-1"))
    assert not t.changed and t.record is None
    s.send(ServiceResult(call_id=call_id, ok=True, value="R-1"))
    dup = s.send(ServiceResult(call_id=call_id, ok=True, value="R-2"))  # redelivered after it applied
    assert not dup.changed and s.state is not None and s.state.slots["result"] == "R-1"


def test_late_service_result_after_cancel_is_stale_not_an_error() -> None:
    s = at_lookup()
    call_id = s.state.pending["call_id"]  # type: ignore[union-attr,index]
    s.send(Command(name="cancel"))
    t = s.send(ServiceResult(call_id=call_id, ok=True, value="R-1"))
    assert not t.changed and t.state.status == "cancelled"


# ---------------------------------------------------------------- timeouts


def test_timeout_not_due_changes_nothing() -> None:
    s = at_lookup()
    t = s.send(Timeout(), dt_ms=4_000)
    assert not t.changed


def test_timeout_of_a_service_call_goes_to_on_error_without_on_timeout() -> None:
    s = at_lookup()
    t = s.send(Timeout(), dt_ms=5_000)
    assert t.record is not None and t.record.event == "timeout" and t.record.error == "timeout"
    assert t.state.step == "oops" and t.state.status == "failed"


def test_session_inactivity_expires() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    assert not s.send(Timeout(), dt_ms=30 * 60_000 - 1).changed
    t = s.send(Timeout(), dt_ms=1)
    assert t.record is not None and t.record.event == "expire" and t.record.error == "inactive"
    assert t.state.status == "expired" and t.state.pending is None and s.texts() == [EXPIRED_TEXT]
    assert End(status="expired") in t.effects
    assert not s.send(Timeout(), dt_ms=60_000).changed  # a stale wake-up of an ended session


def test_every_live_state_schedules_its_next_wake_up() -> None:
    s = at_lookup()
    sched = [e for e in s.last.effects if isinstance(e, Schedule)]
    assert sched == [Schedule(at=s.now + 5_000, reason="service")]
    s2 = Session(KINDS)
    t = s2.send(Start(flow="kinds"))
    assert [e for e in t.effects if isinstance(e, Schedule)] == [Schedule(at=s2.now + 30 * 60_000, reason="session")]


# ---------------------------------------------------------------- commands


def test_cancel_as_command_and_as_typed_word() -> None:
    for ev in (Command(name="cancel"), UserMessage(text=" STOP ")):
        s = Session(KINDS)
        s.send(Start(flow="kinds"))
        t = s.send(ev)
        assert t.state.status == "cancelled" and t.record is not None and t.record.event == "command"
        assert s.texts() == [CANCELLED_TEXT] and End(status="cancelled") in t.effects


def test_custom_command_words() -> None:
    s = Session(FLOWS["support_triage"])
    s.send(Start(flow="support_triage"))
    t = s.send("Never mind")
    assert t.state.status == "cancelled"


def test_restart_goes_back_to_the_start_and_clears_slots() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds", profile={"name": "Ana"}))
    s.send("small")
    t = s.send("restart")
    assert t.state.step == "ask_size" and t.state.slots == {"profile": {"name": "Ana"}} and t.record is not None
    assert t.record.path == ("ask_size",)


def test_back_returns_to_the_previous_question() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    s.send("small")
    t = s.send(Command(name="back"))
    assert t.state.step == "ask_size" and t.state.pending["trail"] == []  # type: ignore[index]
    t = s.send("back")
    assert t.state.step == "ask_size" and s.texts() == [NO_BACK_TEXT, "Size?"]


def test_help_replies_and_repeats_the_question() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds", profile={"name": "Ana"}))
    t = s.send("help")
    assert s.texts() == ["Answer the question, Ana.", "Size?"] and t.state.step == "ask_size"
    assert t.record is not None and t.record.path == ()


def test_user_commands_on_an_ended_session_are_refused() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    s.send(Command(name="cancel"))
    for name in ("cancel", "restart", "back", "help"):
        with pytest.raises(EngineError, match="needs an active session"):
            s.send(Command(name=name))
    live = Session(KINDS)
    live.send(Start(flow="kinds"))
    with pytest.raises(EngineError, match="unknown command 'dance'"):
        live.send(Command(name="dance"))


# ---------------------------------------------------------------- admin commands


def test_admin_reset_restarts_on_the_given_version() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    s.send("small")
    t = s.send(Command(name="reset", actor="admin"))
    assert t.state.step == "ask_size" and "size" not in t.state.slots and t.record is not None
    assert t.record.actor == "admin" and t.record.event == "command" and json.loads(t.record.input or "") == {"command": "reset"}


def test_admin_rollback_restores_the_target_state_as_a_new_version() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    s.send("small")
    target = s.state
    s.send("ham")
    t = s.send(Command(name="rollback", args={"state": target.to_dict(), "to_version": 2}, actor="admin"))  # type: ignore[union-attr]
    assert t.record is not None and t.record.event == "rollback" and t.record.path == ("ask_topping",)
    assert t.state.version == 4 and t.state.step == target.step and t.state.slots == target.slots  # type: ignore[union-attr]
    assert json.loads(t.record.input or "") == {"command": "rollback", "args": {"to_version": 2}}  # no state copy


def test_rollback_of_another_session_is_refused() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    other = s.state.evolve(session_id="s9")  # type: ignore[union-attr]
    with pytest.raises(EngineError, match="target state is session 's9'"):
        s.send(Command(name="rollback", args={"state": other.to_dict()}))
    with pytest.raises(EngineError, match="needs the target state"):
        s.send(Command(name="rollback", args={}))


def test_admin_migrate_moves_to_the_new_version_and_mapped_step() -> None:
    d = KINDS.to_dict()
    d["version"] = "2"
    d["steps"]["ask_topping2"] = d["steps"].pop("ask_topping")
    d["steps"]["ask_size"]["next"] = "ask_topping2"
    v2 = flow_from_dict(d)
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    s.send("small")
    with pytest.raises(EngineError, match="step 'ask_topping' does not exist .* give a step mapping"):
        s.send(Command(name="migrate", args={}), root=v2)
    t = s.send(Command(name="migrate", args={"step": "ask_topping2", "flow_version": "2"}, actor="admin"), root=v2)
    assert t.record is not None and t.record.event == "migrate" and t.state.flow_version == "2"
    assert t.state.step == "ask_topping2" and t.state.slots["size"] == "small"
    t = s.send("ham", root=v2)
    assert t.state.step == "ask_where"


def test_fail_command_ends_the_session_with_the_reason() -> None:
    s = Session(KINDS)
    s.send(Start(flow="kinds"))
    t = s.send(Command(name="fail", args={"reason": "engine_error: boom"}))
    assert t.state.status == "failed" and t.record is not None and t.record.error == "engine_error: boom"
    assert not s.send(Command(name="fail", args={"reason": "again"})).changed


def test_flows_mapping_with_wrong_pinned_version_is_a_clear_error() -> None:
    s = Session(FLOWS["book_appointment"], FLOWS)
    s.send(Start(flow="book_appointment"))
    for text in ["dental", "2026-12-01", "09:00"]:
        s.send(text)
    d = FLOWS["collect_contact"].to_dict()
    d["version"] = "9"
    newer = flows_of(FLOWS["book_appointment"], flow_from_dict(d))
    with pytest.raises(EngineError, match="pinned to flow 'collect_contact' version '1', but version '9' is loaded"):
        step(FLOWS["book_appointment"], s.state, UserMessage(text="Ana Lima"), s.now + 1, flows=newer)
