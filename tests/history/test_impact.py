"""Change impact: affected running sessions and the proposed step mapping."""

from __future__ import annotations

from flowkit.flow.loader import flow_from_dict
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
    assert by.loc["at_address", ["change", "proposed_step", "reason"]].tolist() == ["removed", "ask_delivery", "renamed"]
    assert by.loc["at_qty", ["change", "proposed_step"]].tolist() == ["unchanged", "ask_qty"]
    assert by.loc["old", "change"] == "unknown"  # version 2 is not loaded
    assert dict(report.mapping["3"]) == PIZZA_V3_TO_V4
    assert report.migrate_args() == ["ask_address=ask_delivery", "upsell=ask_qty"]
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
