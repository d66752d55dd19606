"""How the engine moves: auto-advance, paths, set/save expressions, templates, service
calls, sub-flows, back, cancel, expiry, effects, and the admin moves (migrate, rollback)."""

from __future__ import annotations

import copy

import pytest

from flowkit.engine import (
    MAX_AUTO_STEPS,
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
from flowkit.engine.transition import NO_BACK_TEXT
from flowkit.errors import EngineError, StateValidationError
from flowkit.flow import flow_from_dict

from .helpers import FLOWS, T0, Session, flow

AUTO = """
flow: auto
start: hello
slots:
  qty: {type: int, min: 0, max: 100}
  total: {type: number}
  label: {type: text}
  big: {type: bool}
steps:
  hello:
    say: "Hello {{ profile.name or 'there' }}"
    next: init
  init:
    set: {qty: "2", label: "upper('ab') + '-' + str(qty)"}
    next: route
  route:
    next:
      - if: "qty > 5"
        goto: big
      - goto: ask_qty
  big:
    set: {big: "true"}
    next: ask_qty
  ask_qty:
    ask: "How many? (now {{ qty }})"
    input: {type: int, min: 0, max: 100}
    save: qty
    next: price
  price:
    set: {total: "qty * 2.5 + 1", big: "qty >= 10"}
    next:
      - if: "big"
        goto: big_end
      - goto: small_end
  big_end:
    say: "Big order: {{ total }} ({{ label }})"
    end: completed
  small_end:
    say: "Total {{ total }}, {{ big }}"
    end: completed
"""


def test_auto_advance_through_say_set_branch_until_an_ask() -> None:
    s = Session(flow(AUTO))
    t = s.send(Start(flow="auto", profile={"name": "Ana"}))
    assert t.record is not None and t.record.path == ("hello", "init", "route", "ask_qty")
    assert s.texts() == ["Hello Ana", "How many? (now 2)"]
    assert t.state.slots["qty"] == 2 and t.state.slots["label"] == "AB-2"  # `set` assigns in order: label sees the new qty
    assert t.state.status == "waiting_input" and t.state.pending["step"] == "ask_qty"  # type: ignore[index]


def test_set_and_save_with_safe_expressions_then_end() -> None:
    s = Session(flow(AUTO))
    s.send(Start(flow="auto"))
    t = s.send("12")
    assert t.record is not None and t.record.path == ("price", "big_end")
    assert t.state.slots["total"] == 31.0 and t.state.slots["big"] is True and t.state.status == "completed"
    assert s.texts() == ["Big order: 31 (AB-2)"] and t.effects[-1] == End(status="completed")
    assert t.state.pending is None and t.state.attempts == {}
    s2 = Session(flow(AUTO))
    s2.send(Start(flow="auto"))
    s2.send("3")
    assert s2.texts() == ["Total 8.5, no"]


def test_missing_template_value_is_a_clear_error() -> None:
    f = flow(AUTO.replace("{{ label }}", "{{ missing_slot_x }}").replace("  label: {type: text}\n",
                                                                       "  label: {type: text}\n  missing_slot_x: {type: text}\n"))
    s = Session(f)
    s.send(Start(flow="auto"))
    with pytest.raises(EngineError) as exc:
        s.send("12")
    msg = str(exc.value)
    assert "step 'big_end' of flow 'auto'" in msg and "{{ missing_slot_x }} has no value" in msg and "or '...'" in msg


def test_expression_error_names_the_step() -> None:
    f = flow(AUTO.replace('"qty * 2.5 + 1"', '"qty / (qty - qty)"'))
    s = Session(f)
    s.send(Start(flow="auto"))
    with pytest.raises(EngineError, match=r"step 'price' of flow 'auto': set total: division by zero"):
        s.send("3")


LOOP = """
flow: loop
start: a
slots:
  n: {type: int}
steps:
  a:
    set: {n: "0"}
    next: b
  b:
    set: {n: "n + 1"}
    next: c
  c:
    say: "tick {{ n }}"
    next:
      - if: "n < 100000"
        goto: b
      - goto: done
  done:
    end: completed
"""


def test_endless_auto_advance_is_a_clear_error_naming_the_cycle() -> None:
    with pytest.raises(EngineError) as exc:
        step(flow(LOOP), None, Start(flow="loop"), T0, session_id="s")
    msg = str(exc.value)
    assert f"moved {MAX_AUTO_STEPS} steps without waiting" in msg
    assert "(cycle b -> c -> b)" in msg or "(cycle c -> b -> c)" in msg
    assert "add an ask step or an exit condition" in msg


def test_a_long_but_finite_loop_is_fine() -> None:
    t = step(flow(LOOP.replace("100000", "50")), None, Start(flow="loop"), T0, session_id="s")
    assert t.state.status == "completed" and t.state.slots["n"] == 50 and len(t.record.path) == 1 + 2 * 50 + 1  # type: ignore[union-attr]


# ---------------------------------------------------------------- service calls


def to_refund_call() -> Session:
    s = Session(FLOWS["refund"])
    s.send(Start(flow="refund"))
    s.send("AB1234")
    return s


def test_call_step_emits_a_deterministic_call_and_waits() -> None:
    a, b = to_refund_call(), to_refund_call()
    ca = next(e for e in a.last.effects if isinstance(e, CallService))
    cb = next(e for e in b.last.effects if isinstance(e, CallService))
    assert ca == cb == CallService(call_id="s1/2/lookup", service="payments.lookup", args={"order": "AB1234"}, timeout=5.0)
    st = a.state
    assert st is not None and st.status == "waiting_service"
    assert st.pending == {"wait": "service", "step": "lookup", "call_id": "s1/2/lookup", "service": "payments.lookup",
                          "deadline": a.now + 5000, "trail": ["ask_order"]}
    assert Schedule(at=a.now + 5000, reason="service") in a.last.effects


def test_result_continues_error_and_timeout_go_to_their_steps() -> None:
    s = to_refund_call()
    s.send(ServiceResult(call_id="s1/2/lookup", ok=True, value={"amount": 40}))
    assert s.state is not None and s.state.step == "ask_amount" and s.texts() == ["You paid 40 EUR. How much should we refund?"]
    t = s.send("50")  # more than paid: branch to too_much, which says and loops back to the question
    assert t.record is not None and t.record.path == ("too_much", "ask_amount")
    s.send("25,50")
    t = s.send("yes")
    assert t.record is not None and t.record.path == ("start_try", "refund") and t.state.slots["tries"] == 0
    c1 = next(e for e in t.effects if isinstance(e, CallService))
    assert c1.args == {"order": "AB1234", "amount": 25.5, "attempt": 0}
    t = s.send(Timeout(), dt_ms=10_000)  # on_timeout -> count_try -> refund again, with a new call id
    assert t.record is not None and t.record.event == "timeout" and t.record.path == ("count_try", "refund")
    c2 = next(e for e in t.effects if isinstance(e, CallService))
    assert c2.call_id != c1.call_id and c2.args["attempt"] == 1
    assert not s.send(ServiceResult(call_id=c1.call_id, ok=True, value="late")).changed
    t = s.send(ServiceResult(call_id=c2.call_id, ok=False, error="declined"))
    assert t.record is not None and t.record.path == ("count_try", "refund") and t.state.slots["tries"] == 2
    c3 = next(e for e in t.effects if isinstance(e, CallService))
    t = s.send(ServiceResult(call_id=c3.call_id, ok=False, error="declined"))
    assert t.record is not None and t.record.path == ("count_try", "agent") and t.state.status == "handoff"


def test_call_without_on_error_fails_the_session() -> None:
    f = flow("""
    flow: c
    start: go
    steps:
      go:
        call: x.y
        next: done
      done:
        end: completed
    """)
    s = Session(f)
    t = s.send(Start(flow="c"))
    assert t.state.status == "waiting_service"
    t = s.send(Timeout(), dt_ms=10_000)
    assert t.state.status == "failed" and t.record is not None and t.record.error == "timeout"
    assert End(status="failed") in t.effects


# ---------------------------------------------------------------- asks with timeouts


def test_ask_timeout_goes_to_on_timeout() -> None:
    s = Session(FLOWS["order_pizza"])
    s.send(Start(flow="order_pizza"))
    s.send("small")
    t = s.send("2")
    assert Schedule(at=s.now + 600_000, reason="input") in t.effects
    assert not s.send(Timeout(), dt_ms=599_999).changed
    t = s.send(Timeout(), dt_ms=1)
    assert t.record is not None and t.record.path == ("expired_reminder",) and t.state.status == "cancelled"


# ---------------------------------------------------------------- sub-flows


def to_contact() -> Session:
    s = Session(FLOWS["book_appointment"], FLOWS)
    s.send(Start(flow="book_appointment", profile={"name": "Ana"}))
    for text in ["dental", "2026-12-01", "09:00"]:
        s.send(text)
    return s


def test_subflow_pushes_a_frame_and_returns_with_saved_slots() -> None:
    s = to_contact()
    st = s.state
    assert st is not None and st.step == "contact/ask_name" and s.last.record.path == ("contact", "contact/ask_name")  # type: ignore[union-attr]
    assert st.flow == "book_appointment" and st.flow_version == "2"
    assert len(st.stack) == 1 and st.stack[0]["at"] == "contact" and st.stack[0]["flow"] == "collect_contact"
    assert st.stack[0]["flow_version"] == "1" and st.stack[0]["slots"]["service"] == "dental"
    assert st.slots == {"profile": {"name": "Ana"}}  # the sub-flow has its own slots
    s.send("Ana Lima")
    s.send("ana@example.com")
    t = s.send("yes")
    assert t.record is not None and t.record.path == ("contact/done", "reserve") and t.state.stack == ()
    assert t.state.slots["patient"] == "Ana Lima" and t.state.slots["email"] == "ana@example.com"
    assert "ok" not in t.state.slots and t.state.slots["service"] == "dental"


def test_subflow_failure_goes_to_on_fail_of_the_caller() -> None:
    s = to_contact()
    s.send("Ana Lima")
    for _ in range(3):
        s.send("not an email")
    t = s.send("still not")
    assert t.record is not None and t.record.path == ("contact/give_up", "handoff") and t.state.status == "handoff"
    assert t.state.stack == () and t.state.slots["service"] == "dental"


def test_subflow_failure_without_on_fail_ends_where_the_subflow_ended() -> None:
    d = FLOWS["book_appointment"].to_dict()
    del d["steps"]["contact"]["on_fail"]
    f = flow_from_dict(d)
    s = Session(f, FLOWS)
    s.send(Start(flow="book_appointment"))
    for text in ["dental", "2026-12-01", "09:00", "Ana Lima", "x", "x", "x"]:
        s.send(text)
    t = s.send("x")
    assert t.state.status == "failed" and t.state.step == "contact/give_up" and t.record is not None
    assert t.record.path == ("contact/give_up",) and t.record.to_step == "contact/give_up"
    assert t.state.stack == () and t.state.slots["service"] == "dental"  # the root flow's slots again


def test_cancel_inside_a_subflow_ends_the_session_with_root_slots() -> None:
    s = to_contact()
    t = s.send(UserMessage(text="x", profile={"name": "Ana L."}))
    t = s.send("cancel")
    assert t.state.status == "cancelled" and t.state.stack == () and t.state.slots["day"] == "2026-12-01"
    assert t.state.slots["profile"] == {"name": "Ana L."}  # a profile update inside the sub-flow is kept


def test_profile_update_inside_a_subflow_survives_the_return() -> None:
    s = to_contact()
    s.send(UserMessage(text="Ana Lima", profile={"name": "Ana L."}))
    s.send("ana@example.com")
    t = s.send("yes")
    assert t.state.stack == () and t.state.slots["profile"] == {"name": "Ana L."}


def test_subflow_needs_flows() -> None:
    s = Session(FLOWS["book_appointment"])
    s.send(Start(flow="book_appointment"))
    s.send("dental")
    s.send("2026-12-01")
    with pytest.raises(EngineError, match="needed as a sub-flow but no flows were given"):
        s.send("09:00")


# ---------------------------------------------------------------- back


def test_back_follows_the_answered_path_including_branches() -> None:
    s = Session(FLOWS["order_pizza"])
    s.send(Start(flow="order_pizza"))
    s.send("large")
    s.send("yes")  # upsell only on the large branch
    t = s.send("back")
    assert t.state.step == "upsell" and t.record is not None and t.record.event == "command" and t.record.path == ("upsell",)
    t = s.send("back")
    assert t.state.step == "ask_size"
    s.send("small")  # the other branch: no upsell this time
    t = s.send("back")
    assert t.state.step == "ask_size"


def test_a_question_loop_keeps_the_trail_short_and_back_never_repeats_a_question() -> None:
    s = to_refund_call()
    s.send(ServiceResult(call_id="s1/2/lookup", ok=True, value={"amount": 40}))
    for amount in ("50", "45", "41", "60"):  # each more than paid: too_much loops back to ask_amount
        t = s.send(amount)
        assert t.state.step == "ask_amount"
        assert t.state.pending is not None and t.state.pending["trail"] == ["ask_order", "ask_amount"]
    t = s.send("20")
    assert t.state.step == "confirm" and t.state.pending is not None
    assert t.state.pending["trail"] == ["ask_order", "ask_amount"]
    assert s.send("back").state.step == "ask_amount"
    assert s.send("back").state.step == "ask_order"  # not ask_amount again


def test_back_from_the_first_subflow_question_returns_to_the_caller() -> None:
    s = to_contact()
    t = s.send("back")
    assert t.state.step == "ask_time" and t.state.stack == () and t.state.slots["day"] == "2026-12-01"
    assert t.state.slots["profile"] == {"name": "Ana"}
    t = s.send("11:00")
    assert t.state.step == "contact/ask_name"


def test_back_while_waiting_for_a_service_is_refused_politely() -> None:
    s = to_refund_call()
    t = s.send("back")
    assert s.texts() == [NO_BACK_TEXT] and t.state.status == "waiting_service"


# ---------------------------------------------------------------- effects


def test_reply_effects_text_buttons_list_template() -> None:
    f = flow("""
    flow: fx
    start: tpl
    slots:
      c: {type: choice, options: [o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11]}
      d: {type: choice, options: [a, b, c, d]}
    steps:
      tpl:
        say:
          template: {name: order_update, language: pt_BR, params: ["{{ profile.name or 'cliente' }}", "2"]}
        next: many
      many:
        ask: "Pick one"
        input: {type: choice, options: [o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11]}
        save: c
        next: four
      four:
        ask: "And?"
        input: {type: choice, options: [a, b, c, d]}
        save: d
        next: done
      done:
        end: completed
    """)
    s = Session(f)
    t = s.send(Start(flow="fx", profile={"name": "Zé"}))
    tpl, many = [e for e in t.effects if isinstance(e, Reply)]
    assert tpl.template == ("order_update", "pt_BR", ("Zé", "2")) and tpl.text is None
    assert many.text == "Pick one\n" + "\n".join(f"{i}) o{i}" for i in range(1, 12))
    t = s.send("11")
    assert t.state.slots["c"] == "o11"
    four = t.effects[0]
    assert isinstance(four, Reply) and four.list_button == "Choose"
    assert four.sections == (("", (("a", "a", None), ("b", "b", None), ("c", "c", None), ("d", "d", None))),)
    t = s.send(UserMessage(type="list_reply", reply_id="c", text="c"))
    assert [e.kind for e in t.effects] == ["end"]


def test_effects_round_trip_through_their_dict_form() -> None:
    from flowkit.engine import effect_from_dict

    s = to_refund_call()
    effects = list(s.last.effects) + list(s.log[0].effects)
    effects.append(Reply(text="t", list_button="b", sections=(("s", (("i", "t", "d"),)),), template=("n", "en", ("p",))))
    for e in effects:
        assert effect_from_dict(e.to_dict()) == e


# ---------------------------------------------------------------- purity


def test_step_never_mutates_its_input_state() -> None:
    s = to_contact()
    st = s.state
    assert st is not None
    before = copy.deepcopy(st.to_dict())
    for ev in (UserMessage(text="Ana Lima"), Command(name="back"), Command(name="cancel"), Timeout(),
               Command(name="restart"), UserMessage(text="help")):
        step(FLOWS["book_appointment"], st, ev, s.now + 10**9, flows=FLOWS)
        assert st.to_dict() == before


def test_now_is_kept_monotonic_and_datetimes_must_be_aware() -> None:
    import datetime as dt

    t = step(FLOWS["refund"], None, Start(flow="refund"), T0, session_id="s")
    t2 = step(FLOWS["refund"], t.state, UserMessage(text="AB1234"), T0 - 5000)
    assert t2.state.updated_at == T0 and t2.record is not None and t2.record.ts == T0
    aware = dt.datetime.fromtimestamp(T0 / 1000 + 1, dt.UTC)
    assert step(FLOWS["refund"], None, Start(flow="refund"), aware, session_id="s").state.started_at == T0 + 1000
    with pytest.raises(EngineError, match="timezone-aware"):
        step(FLOWS["refund"], None, Start(flow="refund"), aware.replace(tzinfo=None), session_id="s")


# ---------------------------------------------------------------- migrate and rollback


def pizza_v4() -> object:
    d = FLOWS["order_pizza"].to_dict()
    d["version"] = "4"
    del d["steps"]["upsell"]
    del d["slots"]["drink"]
    d["steps"]["place_order"]["args"]["drink"] = "false"
    d["steps"]["ask_size"]["next"] = "ask_qty"
    return flow_from_dict(d)


def test_migrate_remaps_the_back_trail_for_the_new_version() -> None:
    # Known bug 2: the old trail (with `upsell`, gone in v4) was kept, so `back` raised
    # "flow 'order_pizza' has no step 'upsell'".
    v4 = pizza_v4()
    s = Session(FLOWS["order_pizza"])
    s.send(Start(flow="order_pizza"))
    s.send("large")
    s.send("yes")
    s.send("2")
    assert s.state is not None and s.state.pending["trail"] == ["ask_size", "upsell", "ask_qty"]  # type: ignore[index]
    t = s.send(Command(name="migrate", args={"step": "ask_address", "flow_version": "4"}, actor="admin"), root=v4)  # type: ignore[arg-type]
    assert t.state.pending["trail"] == ["ask_size", "ask_qty"] and "drink" not in t.state.slots  # type: ignore[index]
    t = s.send("back", root=v4)  # type: ignore[arg-type]
    assert t.state.step == "ask_qty"
    t = s.send("back", root=v4)  # type: ignore[arg-type]
    assert t.state.step == "ask_size"


def test_migrate_back_to_an_earlier_step_cuts_the_trail_there() -> None:
    v4 = pizza_v4()
    s = Session(FLOWS["order_pizza"])
    s.send(Start(flow="order_pizza"))
    s.send("small")
    s.send("2")
    t = s.send(Command(name="migrate", args={"step": "ask_qty"}), root=v4)  # type: ignore[arg-type]
    assert t.state.step == "ask_qty" and t.state.pending["trail"] == ["ask_size"]  # type: ignore[index]


def test_migrate_inside_a_subflow_is_refused() -> None:
    s = to_contact()
    with pytest.raises(EngineError, match="inside a sub-flow"):
        s.send(Command(name="migrate", args={"step": "reserve"}))


def test_rollback_is_validated_against_the_target_version() -> None:
    # Known bug 3: rolling back to a state of version 3 (with `drink`) after a migration to
    # version 4 (no `drink` slot) was validated against version 4 and refused.
    v3, v4 = FLOWS["order_pizza"], pizza_v4()
    versions = {("order_pizza", "3"): v3, ("order_pizza", "4"): v4}

    def flows(name: str, version: str | None) -> object:
        return versions[(name, version or "4")]

    s = Session(v3)
    s.send(Start(flow="order_pizza"))
    s.send("large")
    s.send("yes")
    old = s.state
    assert old is not None and old.slots["drink"] is True
    s.send(Command(name="migrate", args={"step": "ask_qty"}), root=v4)  # type: ignore[arg-type]
    t = step(v4, s.state, Command(name="rollback", args={"state": old.to_dict()}, actor="admin"),  # type: ignore[arg-type]
             s.now + 1, flows=flows)  # type: ignore[arg-type]
    assert t.state.flow_version == "3" and t.state.slots["drink"] is True and t.state.step == "ask_qty"
    assert t.record is not None and t.record.event == "rollback"
    # From there the session runs under version 3 again, `upsell` included.
    t2 = step(v3, t.state, UserMessage(text="back"), s.now + 2)
    assert t2.state.step == "upsell"
    # Without a way to find the target's version, the refusal says why.
    with pytest.raises(EngineError, match="needed as a sub-flow but no flows were given"):
        step(v4, s.state, Command(name="rollback", args={"state": old.to_dict()}), s.now + 1)  # type: ignore[arg-type]
    bad = old.evolve(slots={**old.slots, "qty": 500})
    with pytest.raises(StateValidationError, match="slot 'qty'"):
        step(v4, s.state, Command(name="rollback", args={"state": bad.to_dict()}), s.now + 1, flows=flows)  # type: ignore[arg-type]
