"""Change impact: affected running sessions and the proposed step mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowkit.flow.loader import flow_from_dict
from flowkit.flow.model import Flow
from flowkit.history.flowset import FlowSet
from flowkit.history.impact import change_impact, classify
from flowkit.history.synthetic import PIZZA_V3_TO_V4
from tests.history.helpers import T0, frame, pizza_ok, rec, snapshot


def _running(flows: FlowSet) -> list[dict]:
    rows = []
    rows += pizza_ok("done")  # completed: never affected
    rows += [rec("at_upsell", 1, None, ["welcome", "ask_size"], event="start"),
             rec("at_upsell", 2, "ask_size", ["upsell"])]
    rows += pizza_ok("at_address")[:3]
    rows += pizza_ok("at_qty")[:2]
    rows += [rec("on_v4", 1, None, ["welcome", "ask_size"], event="start", flow_version="4")]
    rows += [rec("old", 1, None, ["welcome", "ask_size"], event="start", flow_version="2")]
    return rows


def test_v3_sessions_against_v4(flows: FlowSet) -> None:
    rows = _running(flows)
    v4 = flows.get("order_pizza", "4")
    report = change_impact(snapshot(rows), v4, flows)
    by = report.sessions.set_index("session_id")
    assert set(by.index) == {"at_upsell", "at_address", "at_qty", "old"}  # not the ended one, not v4's
    assert by.loc["at_upsell", ["change", "proposed_step", "reason"]].tolist() == ["removed", "ask_qty", "next_surviving"]
    # ask_delivery is ask_address renamed, but v4 asks for the crust before it and orders.create
    # reads it: the proposal is the crust question (the synthetic migrations, PIZZA_V3_TO_V4, skip it).
    assert by.loc["at_address", ["change", "proposed_step", "reason"]].tolist() == ["removed", "ask_crust", "before_need"]
    assert "'ask_delivery' has the same meaning" in by.loc["at_address", "detail"]
    assert "'crust' (read by 'place_order')" in by.loc["at_address", "detail"]
    assert by.loc["at_qty", ["change", "proposed_step"]].tolist() == ["unchanged", "ask_qty"]
    assert by.loc["old", "change"] == "unknown"  # version 2 is not loaded
    assert dict(report.mapping["3"]) == {**PIZZA_V3_TO_V4, "ask_address": "ask_crust"}
    assert report.migrate_args() == ["ask_address=ask_crust", "upsell=ask_qty"]
    assert report.summary["affected"] == 3 and report.summary["running_sessions"] == 4
    assert set(report.affected["session_id"]) == {"at_upsell", "at_address", "old"}
    steps = report.steps.set_index("step")
    assert steps.loc["ask_qty", "detail"] == "same meaning; its routes changed"
    d = report.to_dict()
    assert set(d) == {"summary", "mapping", "steps", "sessions"}
    # The history alone (its last records) gives the same answer.
    again = change_impact(frame(rows), v4, flows)
    assert again.sessions.sort_values("session_id").reset_index(drop=True).equals(
        report.sessions.sort_values("session_id").reset_index(drop=True))


def test_changed_meaning_keeps_the_step(flows: FlowSet) -> None:
    v3 = flows.get("order_pizza", "3")
    d = v3.to_dict()
    d["version"] = "6"
    d["steps"]["ask_size"] = {**d["steps"]["ask_size"], "ask": "Which size, friend?"}  # wording only
    d["steps"]["ask_qty"] = {**d["steps"]["ask_qty"], "input": {"type": "int", "min": 1, "max": 5}}
    d["slots"]["qty"] = {"type": "int", "min": 1, "max": 5}
    v6 = flow_from_dict(d, "<v6>")
    assert classify(v3, v6, "ask_size").change == "unchanged"
    c = classify(v3, v6, "ask_qty")
    assert (c.change, c.proposed, c.reason) == ("changed", "ask_qty", "same_step")
    assert "input changed" in c.detail


def test_sessions_inside_a_subflow(flows: FlowSet) -> None:
    kw = {"flow": "book_appointment", "flow_version": "2"}
    rows = [rec("s", 1, None, ["greet", "ask_service"], event="start", **kw),
            rec("s", 2, "ask_service", ["ask_day"], **kw), rec("s", 3, "ask_day", ["ask_time"], **kw),
            rec("s", 4, "ask_time", ["contact", "contact/ask_name"], **kw)]
    d = flows.get("book_appointment").to_dict()
    d["version"] = "3"
    d["steps"]["ask_time"] = {**d["steps"]["ask_time"], "ask": "When?"}
    v3 = flow_from_dict(d, "<b3>")
    fs = FlowSet(flows)
    fs.add(v3)
    report = change_impact(snapshot(rows), v3, fs)
    row = report.sessions.iloc[0]
    assert row["change"] == "in_subflow" and row["step"] == "contact/ask_name"
    assert "migrate after it returns" in row["detail"]
    # The calling step gone: the session is affected and mapped like any other.
    d["steps"].pop("contact")
    d["steps"]["ask_time"]["next"] = "reserve"
    d["version"] = "4"
    d["steps"]["reserve"] = {**d["steps"]["reserve"], "args": {"service": "service", "day": "day", "time": "slot_time"}}
    d["steps"]["confirmed"] = {**d["steps"]["confirmed"], "say": "Booked {{ service }} on {{ day }}."}
    v4 = flow_from_dict(d, "<b4>")
    report = change_impact(snapshot(rows), v4, fs)
    row = report.sessions.iloc[0]
    assert (row["change"], row["proposed_step"]) == ("removed", "reserve")
    assert T0  # the helper's epoch is the test's clock


def _pizza(flows: FlowSet, version: str, edit: Callable[[dict[str, Any]], None]) -> Flow:
    d = flows.get("order_pizza", "3").to_dict()
    d["version"] = version
    d["slots"] = {**d["slots"], "floor": {"type": "int", "min": 0, "max": 99}}
    edit(d["steps"])
    return flow_from_dict(d, f"<order_pizza v{version}>")


def _issue_v4(steps: dict[str, Any]) -> None:
    """The issue's version 4: no upsell, and the quantity asked by a new question (other bounds)."""
    steps.pop("upsell")
    steps["ask_quantity"] = {**steps.pop("ask_qty"), "ask": "How many? (1-10)",
                             "input": {"type": "int", "min": 1, "max": 10}}
    steps["ask_size"] = {**steps["ask_size"], "next": "ask_quantity"}


def test_impact_never_proposes_skipping_a_needed_answer(flows: FlowSet) -> None:
    """Issue 18: `impact` proposed upsell=ask_address (the nearest surviving step), which skips
    the quantity that orders.create reads. It proposes the quantity question instead."""
    v3, v4 = flows.get("order_pizza", "3"), _pizza(flows, "4b", _issue_v4)
    c = classify(v3, v4, "upsell")
    assert (c.change, c.proposed, c.reason) == ("removed", "ask_quantity", "before_need")
    assert "'ask_address' would skip the answer 'qty' (read by 'place_order')" in c.detail
    q = classify(v3, v4, "ask_qty")
    assert (q.change, q.proposed, q.reason) == ("removed", "ask_quantity", "same_slot")
    rows = [rec("at_upsell", 1, None, ["welcome", "ask_size"], event="start"), rec("at_upsell", 2, "ask_size", ["upsell"])]
    fs = FlowSet(flows)
    fs.add(v4)
    report = change_impact(snapshot(rows), v4, fs)
    assert report.migrate_args() == ["upsell=ask_quantity"]


def test_an_unchanged_step_behind_a_new_needed_question_is_affected(flows: FlowSet) -> None:
    def new_question(steps: dict[str, Any]) -> None:
        steps["ask_qty"] = {**steps["ask_qty"], "next": "ask_floor"}
        steps["ask_floor"] = {"ask": "Which floor?", "input": {"type": "int", "min": 0, "max": 99}, "save": "floor",
                              "next": "ask_address"}
        steps["place_order"] = {**steps["place_order"],
                                "args": {**steps["place_order"]["args"], "floor": "floor"}}

    v3, v7 = flows.get("order_pizza", "3"), _pizza(flows, "7", new_question)
    c = classify(v3, v7, "ask_address")
    assert (c.change, c.proposed, c.reason) == ("changed", "ask_floor", "before_need")
    assert c.detail.startswith("same meaning, but a question before it is new")
    assert classify(v3, v7, "ask_qty").change == "unchanged"  # nothing it leads to lacks an answer
