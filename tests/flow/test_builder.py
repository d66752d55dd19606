"""The Python builder produces the same model as the loader, and a flow built in code
survives save-as-YAML-then-load with an equal model and an equal content hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkit.errors import FlowError
from flowkit.flow import AskStep, EndStep, Flow, FlowBuilder, SetStep, load_flow, load_flows, parse_flow, when

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


def build_refund() -> Flow:
    b = FlowBuilder("refund", start="ask_order", version="1",
                    description="Refund a payment, retrying the payment service and timing out slow answers.",
                    triggers=["refund", "money back"], timeout="30m")
    b.slot("order_ref", "text")
    b.slot("amount", "number", min=0.01, max=5000)
    b.slot("confirm", "bool")
    b.slot("payment", "any")
    b.slot("refund_id", "text")
    b.slot("tries", "int", min=0, max=10)
    b.ask("ask_order", "Which order should we refund? (order reference)",
          input={"type": "text", "min_length": 4, "max_length": 20}, save="order_ref", next="lookup")
    b.call("lookup", "payments.lookup", args={"order": "order_ref"}, save="payment", timeout="5s",
           on_error="not_found", on_timeout="not_found", next="ask_amount")
    b.end("not_found", "failed", say="We couldn't find a payment for {{ order_ref }}.")
    b.ask("ask_amount", "You paid {{ payment.amount }} EUR. How much should we refund?",
          input={"type": "number", "min": 0.01, "max": 5000}, save="amount",
          invalid="Please send an amount like 12.50, at most what you paid.", retries=2, on_fail="agent",
          next=[when("amount > payment.amount", "too_much"), "confirm"])
    b.say("too_much", "That's more than the {{ payment.amount }} EUR you paid.", next="ask_amount")
    b.ask("confirm", {"text": "Refund {{ amount }} EUR for order {{ order_ref }}?",
                      "buttons": [{"id": "yes", "title": "Yes, refund"}, {"id": "no", "title": "No"}]},
          input="yes_no", save="confirm", timeout="15m", on_timeout="timed_out",
          next=[when("confirm", "start_try"), {"goto": "declined"}])
    b.set("start_try", {"tries": "0"}, next="refund")
    b.call("refund", "payments.refund", args={"order": "order_ref", "amount": "amount", "attempt": "tries"},
           save="refund_id", timeout=10, on_error="count_try", on_timeout="count_try", next="done")
    b.set("count_try", {"tries": "tries + 1"}, next=[when("tries < 3", "refund"), "agent"])
    b.end("done", say="Refund {{ refund_id }} of {{ amount }} EUR is on its way.")
    b.end("declined", "cancelled", say="OK, no refund was made.")
    b.end("timed_out", "cancelled", say="We didn't get a confirmation, so no refund was made.")
    b.end("agent", "handoff", say="A person from our payments team will take it from here.")
    return b.build()


def test_builder_gives_the_same_model_as_the_example_file() -> None:
    built = build_refund()
    loaded = load_flow(EXAMPLES / "refund.yaml")
    assert built == loaded
    assert built.content_hash == loaded.content_hash
    assert built.version_id == loaded.version_id == "1"
    assert list(built.steps) == list(loaded.steps)
    assert isinstance(built.steps["start_try"], SetStep)
    assert built.steps["confirm"].targets()[0] == ("retry", "confirm")


def test_build_save_load_round_trip(tmp_path: Path) -> None:
    built = build_refund()
    path = tmp_path / "refund.yaml"
    path.write_text(built.to_yaml())
    again = load_flow(path)
    assert again == built
    assert again.content_hash == built.content_hash
    as_json = tmp_path / "refund.json"
    as_json.write_text(built.to_json())
    assert load_flow(as_json) == built
    assert load_flow(as_json).content_hash == built.content_hash


def test_builder_subflows_load_together_with_the_examples(tmp_path: Path) -> None:
    b = FlowBuilder("signup", triggers=["signup"], help="Say cancel to stop.")
    b.slot("name", "text").slot("email", "email").slot("age", "int", min=0, max=150)
    b.subflow("contact", "collect_contact", save={"name": "name", "email": "email"}, on_fail="bye", next="ask_age")
    b.ask("ask_age", "Age?", input={"type": "int", "min": 0, "max": 150}, save="age", next="route")
    b.branch("route", [when("age >= 18", "adult"), "bye"])
    b.end("adult", say={"text": "Welcome {{ name }}", "buttons": ["Thanks"]})
    b.end("bye", "cancelled")
    flow = b.build()
    assert flow.start == "contact"  # the first step added, when no start is given
    assert flow.version_id == flow.content_hash[:12]
    (tmp_path / "signup.yaml").write_text(flow.to_yaml())
    (tmp_path / "collect_contact.yaml").write_text((EXAMPLES / "collect_contact.yaml").read_text())
    flows = load_flows(tmp_path)
    assert flows["signup"] == flow
    assert flows["signup"].content_hash == flow.content_hash


def test_builder_reports_every_problem_like_the_loader() -> None:
    b = FlowBuilder("broken", start="ask")
    b.slot("qty", "int")
    b.ask("ask", "How many {{ things }}?", input="text", save="qty", next="nowhere", timeout="soon")
    b.say("lost", "never", next="end")
    b.end("end", "finished")
    with pytest.raises(FlowError) as info:
        b.build()
    codes = sorted(p.code for p in info.value.problems)
    assert codes == ["bad-duration", "bad-value", "input-contradicts-slot", "unknown-slot", "unknown-target", "unreachable", "unreachable"]
    for p in info.value.problems:
        assert p.file == "<builder:broken>" and p.line >= 1 and p.column >= 1
    # the locations point into the YAML the builder wrote, which to_dict reproduces
    text = b.to_dict()
    assert text["steps"]["ask"]["timeout"] == "soon"


def test_builder_shorthands_are_normalised() -> None:
    b = FlowBuilder("t", version=3, timeout=90)
    b.slot("ok", "bool")
    b.ask("q", "OK?", input="yes_no", save="ok", next=["done"], retries=0)
    b.end("done")
    flow = b.build()
    assert flow.version == "3"
    assert flow.timeout == 90.0
    step = flow.steps["q"]
    assert isinstance(step, AskStep) and step.retries == 0 and step.input.type == "yes_no"
    assert isinstance(flow.steps["done"], EndStep) and flow.steps["done"].end == "completed"
    same = parse_flow(flow.to_yaml())
    assert same == flow and same.to_dict() == flow.to_dict()
    assert "timeout: 1m30s" in flow.to_yaml()


def test_equal_models_are_equal_regardless_of_source_locations() -> None:
    a = parse_flow("flow: t\nstart: a\nsteps:\n  a: {end: completed}\n", "one.yaml")
    b = parse_flow('{"steps": {"a": {"end": "completed"}}, "start": "a", "flow": "t"}', "two.json")
    assert a == b and hash(a) == hash(b)
    assert a.source != b.source
    assert a.steps["a"].loc != b.steps["a"].loc
