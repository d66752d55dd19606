"""Each history record says why it went where it went (flowkit/engine/why.py): the condition
that matched with the values it read, the validation error with the input it judged, the
service result that decided."""

from __future__ import annotations

import json
from typing import Any

from flowkit.engine import ServiceResult, Start, State, UserMessage, step
from flowkit.engine.why import REDACTED
from tests.engine.helpers import FLOWS, T0, flow

PIZZA = FLOWS["order_pizza"]


def _at_ask_size() -> State:
    return step(PIZZA, None, Start(flow="order_pizza"), T0, session_id="s1").state


def _why(state: State, text: str) -> dict[str, Any]:
    t = step(PIZZA, state, UserMessage(text=text), T0 + 1000)
    assert t.record is not None
    return json.loads(t.record.why or "null")  # type: ignore[no-any-return]


def test_the_matching_condition_and_what_it_read() -> None:
    assert _why(_at_ask_size(), "large") == {"branches": [
        {"step": "ask_size", "if": "size == 'large'", "goto": "upsell", "read": {"size": "large"}}]}


def test_the_default_branch_after_the_conditions_that_did_not_match() -> None:
    assert _why(_at_ask_size(), "small") == {"branches": [
        {"step": "ask_size", "if": None, "passed": ["size == 'large'"], "goto": "ask_qty", "read": {"size": "small"}}]}


def test_a_validation_error_with_the_input_it_judged() -> None:
    why = _why(_at_ask_size(), "extra large")
    assert why["invalid"]["input"] == "extra large" and why["invalid"]["code"]
    assert not why.get("branches")


def test_an_unconditional_step_needs_no_why_and_start_has_none() -> None:
    s = _at_ask_size()
    assert step(PIZZA, None, Start(flow="order_pizza"), T0, session_id="s1").record.why is None  # type: ignore[union-attr]
    assert s.step == "ask_size"


SECRET_FLOW = """
flow: pin_check
version: "1"
start: ask_pin
slots:
  pin: {type: text, sensitive: true}
  ok: {type: bool}
steps:
  ask_pin:
    ask: "Your PIN?"
    input: {type: text}
    save: pin
    next:
      - if: "pin == '1234'"
        goto: check
      - done
  check:
    call: verify
    args: {pin: pin}
    save: ok
    on_error: done
    next: done
  done:
    end: completed
"""


def test_sensitive_values_are_never_written_and_a_service_error_is_named() -> None:
    f = flow(SECRET_FLOW)
    s = step(f, None, Start(flow="pin_check"), T0, session_id="s1").state
    wrong = step(f, s, UserMessage(text="9876"), T0 + 1000)
    assert wrong.record is not None and "9876" not in (wrong.record.why or "")
    assert json.loads(wrong.record.why or "{}")["branches"][0]["read"] == {"pin": REDACTED}
    t = step(f, s, UserMessage(text="1234"), T0 + 1000)
    call_id = t.state.pending["call_id"]  # type: ignore[index]
    r = step(f, t.state, ServiceResult(call_id=call_id, ok=False, error="timeout"), T0 + 2000)
    assert json.loads(r.record.why or "{}")["service"] == {"call": "verify", "ok": False, "error": "timeout"}  # type: ignore[union-attr]
    bad = step(f, s, UserMessage(text=""), T0 + 1000)  # an invalid answer to a sensitive question
    assert bad.record is not None and json.loads(bad.record.why or "{}")["invalid"]["input"] in (REDACTED, None)
