"""What-if replay of recorded histories against other flow versions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flowkit.errors import FlowkitError
from flowkit.flow.loader import flow_from_dict
from flowkit.flow.model import Flow
from flowkit.history.flowset import FlowSet
from flowkit.history.replay import KINDS, whatif
from flowkit.history.synthetic import Synthetic


def test_replay_against_the_recorded_version_never_diverges(clean: Synthetic) -> None:
    h = clean.history
    for name in ("order_pizza", "book_appointment", "refund", "support_triage"):
        for version in clean.flows.versions(name):
            report = whatif(h, clean.flows.get(name, version), clean.flows)
            own = report.journeys[report.journeys["recorded_version"] == version]
            assert len(own) > 0
            assert set(own["kind"].astype(str)) <= {"same", "not_replayable"}, own[own["diverged"]].head()
            assert (own["kind"] == "same").any()


def test_second_journeys_match_service_results_to_the_new_call_ids(clean: Synthetic) -> None:
    report = whatif(clean.history, clean.flows.get("refund"), clean.flows)
    j = report.journeys
    later = j[j.duplicated("session_id", keep="first") & (j["kind"] == "same")]
    h = clean.history
    with_calls = set(h.loc[(h["event"] == "service_result") & (h["flow"] == "refund"), "session_id"])
    assert len(later[later["session_id"].isin(with_calls)]) > 0  # versions differ, results still match


def test_new_version_diverges_where_it_changed(clean: Synthetic) -> None:
    v4 = clean.flows.get("order_pizza", "4")
    report = whatif(clean.history, v4, clean.flows)
    v3 = report.journeys[report.journeys["recorded_version"] == "3"]
    diverged = v3[v3["diverged"]]
    assert len(diverged) > 0 and set(diverged["kind"].astype(str)) == {"different_step"}
    # Large pizzas used to get the upsell; after the quantity came the address, now the crust.
    moves = set(zip(diverged["recorded_step"], diverged["replayed_step"], strict=True))
    assert moves <= {("upsell", "ask_qty"), ("ask_address", "ask_crust")}
    assert report.summary["counts"]["different_step"] == len(report.diverged)
    counts = report.counts()
    assert list(counts["kind"]) == list(KINDS) and counts["journeys"].sum() == len(report.journeys)
    by_step = report.by_step()
    assert set(by_step["step"]) <= {"ask_size", "ask_qty"} and by_step["journeys"].sum() == len(report.diverged)


def test_tighter_input_makes_recorded_answers_invalid(clean: Synthetic) -> None:
    d = clean.flows.get("order_pizza", "3").to_dict()
    d["version"] = "5"
    d["slots"]["qty"] = {"type": "int", "min": 1, "max": 3}
    d["steps"]["ask_qty"] = {**d["steps"]["ask_qty"], "input": {"type": "int", "min": 1, "max": 3}}
    v5 = flow_from_dict(d, "<v5>")
    report = whatif(clean.history, v5, clean.flows)
    now_invalid = report.journeys[report.journeys["kind"] == "now_invalid"]
    assert len(now_invalid) > 0
    assert set(now_invalid["recorded_from"]) == {"ask_qty"}
    assert now_invalid["detail"].str.contains("too_large").all()


def test_redacted_and_admin_records_stop_the_replay(clean: Synthetic) -> None:
    report = whatif(clean.history, clean.flows.get("support_triage"), clean.flows)
    stopped = report.journeys[report.journeys["kind"] == "not_replayable"]
    assert len(stopped) > 0 and not stopped["diverged"].any()
    # `details` is a sensitive slot: its answers are redacted in history, so cannot be replayed.
    assert stopped["recorded_from"].eq("ask_details").any()


def test_selecting_sessions_and_limit(clean: Synthetic) -> None:
    flow = clean.flows.get("book_appointment")
    some = list(pd.unique(clean.history.loc[clean.history["flow"] == "book_appointment", "session_id"]))[:3]
    r = whatif(clean.history, flow, clean.flows, sessions=some)
    assert set(r.journeys["session_id"]) == set(some)
    assert len(whatif(clean.history, flow, clean.flows, limit=2).journeys) == 2
    assert len(whatif(clean.history.iloc[:0], flow, clean.flows).journeys) == 0
    with pytest.raises(TypeError):
        whatif(clean.history, "book_appointment", clean.flows)  # type: ignore[arg-type]


def test_flowset_is_not_modified(clean: Synthetic) -> None:
    fs = FlowSet(clean.flows)
    d = clean.flows.get("refund").to_dict()
    d["version"] = "7"
    whatif(clean.history, flow_from_dict(d, "<refund 7>"), fs)
    assert not fs.has("refund", "7")


def _renamed_address(clean: Synthetic, version: str, *, min_length: int = 5) -> Flow:
    """order_pizza v3 with ``ask_address`` renamed ``ask_street`` (and, optionally, a longer minimum)."""
    d = clean.flows.get("order_pizza", "3").to_dict()
    d["version"] = version
    steps = d["steps"]
    steps["ask_street"] = {**steps.pop("ask_address"),
                           "input": {"type": "text", "min_length": min_length, "max_length": 200}}
    steps["ask_qty"] = {**steps["ask_qty"], "next": "ask_street"}
    return flow_from_dict(d, f"<v{version}>")


def test_a_step_map_carries_the_replay_past_a_renamed_step(clean: Synthetic) -> None:
    v8 = _renamed_address(clean, "8")
    plain = whatif(clean.history, v8, clean.flows)
    v3 = plain.journeys[plain.journeys["recorded_version"] == "3"]
    assert set(v3.loc[v3["diverged"], "kind"].astype(str)) == {"different_step"}  # the rename, nothing else
    mapped = whatif(clean.history, v8, clean.flows, mapping={"ask_address": "ask_street"})
    v3 = mapped.journeys[mapped.journeys["recorded_version"] == "3"]
    assert len(v3) > 0 and not v3["diverged"].any()
    assert mapped.summary["mapping"] == {"ask_address": "ask_street"}


def test_a_renamed_step_no_longer_hides_the_changes_after_it(clean: Synthetic) -> None:
    # v9 renames the address question and also wants longer addresses: without the map every
    # journey stops at the rename, and the stricter input is never seen.
    v9 = _renamed_address(clean, "9", min_length=14)
    plain = whatif(clean.history, v9, clean.flows)
    assert plain.summary["counts"]["now_invalid"] == 0
    mapped = whatif(clean.history, v9, clean.flows, mapping={"ask_address": "ask_street"})
    now_invalid = mapped.journeys[mapped.journeys["kind"] == "now_invalid"]
    assert len(now_invalid) > 0 and set(now_invalid["recorded_from"]) == {"ask_address"}
    assert now_invalid["detail"].str.contains("too_short").all()
    with pytest.raises(FlowkitError, match="does not have: nowhere"):
        whatif(clean.history, v9, clean.flows, mapping={"ask_address": "nowhere"})


def test_whatif_command_takes_the_step_map(clean: Synthetic, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowkit.cli import app
    from flowkit.history.synthetic import EXAMPLE_FLOWS

    history = tmp_path / "history.parquet"
    clean.history.to_parquet(history)
    v8 = tmp_path / "order_pizza_v8.yaml"
    v8.write_text(_renamed_address(clean, "8").to_yaml())
    runner = CliRunner()
    base = ["whatif", str(history), "--new", str(v8), "--flows", str(EXAMPLE_FLOWS), "-f", "json"]
    r = runner.invoke(app, base)
    assert r.exit_code == 1 and json.loads(r.stdout)["summary"]["diverged"] > 0
    r = runner.invoke(app, [*base, "--map", "ask_address=ask_street"])
    data = json.loads(r.stdout)
    assert data["summary"]["mapping"] == {"ask_address": "ask_street"}
    v3 = [j for j in data["journeys"] if j["recorded_version"] == "3"]
    assert v3 == []  # no v3 journey diverges any more (v4's recorded journeys may: other changes)
    r = runner.invoke(app, [*base, "--map", "ask_address"])
    assert r.exit_code == 2 and "OLD_STEP=NEW_STEP" in r.stderr
    r = runner.invoke(app, [*base, "--map", "ask_address=nowhere"])
    assert r.exit_code == 2 and "does not have: nowhere" in r.stderr
