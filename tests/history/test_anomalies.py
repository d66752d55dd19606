"""Anomaly detection: precision and recall 1.0 on synthetic histories with a known ground
truth, nothing on clean ones, and the exact rules on hand-made edge cases — every test
for both engines (pandas and DuckDB; ``test_engines.py`` compares their full reports)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from flowkit.errors import HistoryError
from flowkit.history import anomalies
from flowkit.history.anomalies import CODES
from flowkit.history.columns import write_export
from flowkit.history.flowset import FlowSet
from flowkit.history.synthetic import Synthetic, generate
from tests.history.helpers import T0, frame, pizza_ok, rec, snapshot

MIN = 60_000
find_anomalies = anomalies.find_anomalies
analyze = anomalies.analyze


@pytest.fixture(autouse=True, params=["pandas", "duckdb"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test of this module runs once per engine: its find_anomalies/analyze use that engine."""
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "find_anomalies", partial(anomalies.find_anomalies, engine=request.param))
    monkeypatch.setattr(module, "analyze", partial(anomalies.analyze, engine=request.param))
    return request.param


def keys(report: object) -> set[tuple[str, str, int | None]]:
    return {(a.code, a.session_id, a.version) for a in report.anomalies}  # type: ignore[attr-defined]


def find(rows: list[dict], flows: FlowSet, *, snap: pd.DataFrame | None | bool = True, **kw: object) -> set:
    s = snapshot(rows) if snap is True else (None if snap is False or snap is None else snap)
    kw.setdefault("as_of", max(r["ts"] for r in rows) + MIN)
    return keys(find_anomalies(frame(rows), s, flows, **kw))


# ---------------------------------------------------------------- ground truth


def test_precision_and_recall_are_one_for_every_code(syn: Synthetic, engine: str) -> None:
    report = find_anomalies(syn.history, syn.sessions, syn.flows, exported_at=syn.exported_at,
                            retry_threshold=syn.config.retry_threshold, stuck_after=syn.config.stuck_after_s)
    assert report.summary["engine"] == engine
    score = syn.score(report)
    assert set(score["code"]) == set(CODES)
    assert (score["truth"] == syn.config.per_code).all()  # every code injected
    assert score["precision"].tolist() == [1.0] * len(CODES), score
    assert score["recall"].tolist() == [1.0] * len(CODES), score
    assert keys(report) == set(syn.truth)
    # Sessions without an injected anomaly produce nothing.
    assert not {a.session_id for a in report.anomalies} & syn.clean_sessions


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_ground_truth_holds_for_other_seeds(flows: FlowSet, seed: int) -> None:
    s = generate(sessions=300, seed=seed, per_code=2, flows=flows)
    report = find_anomalies(s.history, s.sessions, s.flows, exported_at=s.exported_at)
    assert keys(report) == set(s.truth)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_same_findings_from_files_of_every_format(syn: Synthetic, tmp_path: Path, fmt: str, engine: str) -> None:
    out = syn.write(tmp_path / fmt, fmt=fmt)  # type: ignore[arg-type]
    report = analyze(out, syn.flows)
    assert report.summary["engine"] == engine
    assert keys(report) == set(syn.truth)
    assert report.summary["as_of_source"] == "exported_at"


def test_clean_histories_have_no_anomalies(clean: Synthetic) -> None:
    report = find_anomalies(clean.history, clean.sessions, clean.flows, exported_at=clean.exported_at)
    assert report.ok, report.anomalies[:5]
    assert report.summary["counts"] == {c: 0 for c in CODES}
    assert report.summary["unchecked"] == []
    # ...although they hold every case the rules must let through:
    h = clean.history
    events = set(h["event"].astype(str))
    assert {"rollback", "migrate", "command", "expire", "timeout", "service_result"} <= events
    assert (h["actor"] == "admin").any()  # rollbacks, resets, migrations
    assert h["to_step"].astype(str).str.contains("/").any()  # sub-flows
    per_session = h.groupby("session_id", observed=True)["flow_version"].nunique()
    assert (per_session > 1).any()  # sessions across flow versions
    assert ((h["event"] == "start") & h["from_step"].isna()).sum() > h["session_id"].nunique()  # new starts after an end
    assert (h["path"].list.len() == 0).any()  # help, busy, expiry: the session stayed put
    assert clean.sessions["status"].isin(["waiting_input", "waiting_service"]).any()  # still running at export


# ---------------------------------------------------------------- exact cases per code


def test_single_record_sessions(flows: FlowSet) -> None:
    recent = [rec("a", 1, None, ["welcome", "ask_size"], event="start")]
    assert find(recent, flows) == set()
    assert find(recent, flows, as_of=T0 + 2 * MIN) == set()
    assert find(recent, flows, as_of=T0 + 40 * MIN) == {("STUCK", "a", 1)}
    assert find(recent, flows, as_of=T0 + 40 * MIN, stuck_after="1h") == set()
    ended = [rec("b", 1, None, ["welcome", "ask_size"], event="start", status="cancelled")]
    assert find(ended, flows, as_of=T0 + 100 * MIN) == set()


def test_empty_history(flows: FlowSet, tmp_path: Path) -> None:
    empty = frame([])
    report = find_anomalies(empty, snapshot([]), flows)
    assert report.ok and report.summary["rows"] == 0 and report.summary["as_of"] is None
    out = write_export(tmp_path / "e", empty, snapshot([]), exported_at=T0)
    assert analyze(out, flows).ok


def test_version_gap_and_duplicate(flows: FlowSet) -> None:
    rows = pizza_ok("s")
    del rows[2]  # version 3 missing
    assert find(rows, flows) == {("VERSION_GAP", "s", 3)}
    rows = pizza_ok("s")
    rows = [r for r in rows if r["version"] not in (2, 3)]
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert keys(found) == {("VERSION_GAP", "s", 2)}
    assert "versions 2-3 are missing" in found.anomalies[0].detail
    rows = pizza_ok("s")[1:]  # version 1 missing: a gap, unless the export is partial
    assert find(rows, flows) == {("VERSION_GAP", "s", 1)}
    assert find(rows, flows, since=T0) == set()
    assert find(rows, flows, partial=True) == set()
    rows = pizza_ok("s")
    rows.insert(2, {**rows[1], "message_id": "other"})  # two commits of version 2
    assert find(rows, flows) == {("VERSION_DUPLICATE", "s", 2)}


def test_chain_break_only_between_consecutive_versions(flows: FlowSet) -> None:
    rows = pizza_ok("s", large=True)
    rows[3]["from_step"] = "ask_size"  # (ask_size, ask_address) is no edge: chain and graph both break
    assert find(rows, flows) == {("CHAIN_BREAK", "s", 4), ("ILLEGAL_TRANSITION", "s", 4)}
    rows = pizza_ok("s", large=True)
    rows[2]["from_step"] = "ask_size"  # (ask_size, ask_qty) is an edge: only the chain breaks
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert keys(found) == {("CHAIN_BREAK", "s", 3)}
    assert found.anomalies[0].detail == "from_step 'ask_size' but version 2 ended at 'upsell'"


def test_rollback_migrate_and_admin_commands_are_exempt(flows: FlowSet) -> None:
    rows = pizza_ok("s")[:3]  # at ask_address
    rows += [
        # an admin rolls back to ask_size (no edge ask_address -> ask_size)
        rec("s", 4, "ask_address", ["ask_size"], event="rollback", actor="admin", message_id=None),
        # the store's rollback may name the restored state's step as from_step: no chain check
        rec("s", 5, "ask_qty", ["upsell"], event="migrate", actor="admin", message_id=None, flow_version="3"),
        rec("s", 6, "upsell", ["welcome", "ask_size"], event="command", actor="admin", message_id=None),  # reset
        rec("s", 7, "ask_size", ["ask_qty"]),
        rec("s", 8, "ask_qty", [], event="command", actor="admin", status="failed", message_id=None,
            error="engine_error: boom"),
        rec("s", 9, "ask_qty", ["ask_size"], event="rollback", actor="admin", message_id=None),  # after the end
        rec("s", 10, "ask_size", ["ask_qty"]),
    ]
    assert find(rows, flows) == set()
    # The same jump by the runtime is illegal.
    rows[3] = {**rows[3], "event": "message", "actor": "runtime", "message_id": "m"}
    assert find(rows, flows) == {("ILLEGAL_TRANSITION", "s", 4)}


def test_migration_across_flow_versions(flows: FlowSet) -> None:
    rows = pizza_ok("s")[:3]  # v3, at ask_address
    rows += [
        rec("s", 4, "ask_address", ["ask_delivery"], event="migrate", actor="admin", message_id=None, flow_version="4"),
        rec("s", 5, "ask_delivery", ["place_order"], flow_version="4", status="waiting_service"),
        rec("s", 6, "place_order", ["done"], event="service_result", flow_version="4", status="completed"),
        rec("s", 7, None, ["welcome", "ask_size"], event="start", flow_version="4"),  # a new start on v4
        rec("s", 8, "ask_size", ["ask_qty"], flow_version="4"),
        rec("s", 9, "ask_qty", ["ask_crust"], flow_version="4"),
    ]
    assert find(rows, flows) == set()
    # Checked against the record's own version: ask_crust is not in v3.
    rows[-1]["flow_version"] = "3"
    found = find(rows, flows)
    assert ("UNKNOWN_STEP", "s", 9) in found
    assert ("STATE_MISMATCH", "s", 9) not in found  # the snapshot follows the rows


def test_global_commands_jump_but_then_follow_edges(flows: FlowSet) -> None:
    rows = pizza_ok("s", large=True)[:4]  # at ask_address
    rows.append(rec("s", 5, "ask_address", ["ask_qty"], event="command"))  # "back"
    rows.append(rec("s", 6, "ask_qty", ["welcome", "ask_size"], event="command"))  # "restart"
    assert find(rows, flows) == set()
    rows.append(rec("s", 7, "ask_size", ["welcome", "ask_qty"], event="command"))  # welcome -> ask_qty is no edge
    assert find(rows, flows) == {("ILLEGAL_TRANSITION", "s", 7)}


def test_start_must_enter_the_flow_start(flows: FlowSet) -> None:
    rows = [rec("s", 1, None, ["ask_size"], event="start")]
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert keys(found) == {("ILLEGAL_TRANSITION", "s", 1)}
    assert "(start) -> ask_size" in found.anomalies[0].detail


def test_subflow_steps_read_against_the_expanded_graph(flows: FlowSet) -> None:
    g = flows.graph("book_appointment", "2")
    assert {("contact", "contact/ask_name"), ("contact/done", "reserve"), ("contact/give_up", "handoff"),
            ("contact/ask_email", "contact/ask_email"), ("contact/confirm", "contact/ask_name")} <= g.edges
    assert ("contact", "reserve") not in g.edges  # a session goes through the sub-flow
    assert ("contact/done", "handoff") not in g.edges  # a completed sub-flow returns to `next`
    kw = {"flow": "book_appointment", "flow_version": "2"}
    rows = [rec("s", 1, None, ["greet", "ask_service"], event="start", **kw),
            rec("s", 2, "ask_service", ["ask_day"], **kw), rec("s", 3, "ask_day", ["ask_time"], **kw),
            rec("s", 4, "ask_time", ["contact", "contact/ask_name"], **kw),
            rec("s", 5, "contact/ask_name", ["contact/ask_email"], **kw),
            rec("s", 6, "contact/ask_email", ["contact/confirm"], **kw),
            rec("s", 7, "contact/confirm", ["contact/done", "reserve"], status="waiting_service", **kw)]
    assert find(rows, flows) == set()
    rows[6]["path"] = ["reserve"]
    assert find(rows, flows) == {("ILLEGAL_TRANSITION", "s", 7)}
    rows[6]["path"] = ["contact/finished", "reserve"]
    assert find(rows, flows) == {("UNKNOWN_STEP", "s", 7)}  # unknown steps are not also illegal pairs


def test_unknown_step_reported_once_per_session_and_step(flows: FlowSet) -> None:
    rows = pizza_ok("s")[:2] + [rec("s", 3, "ask_qty", ["ask_where"]), rec("s", 4, "ask_where", ["ask_where"]),
                                rec("s", 5, "ask_where", ["ask_where"])]
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert keys(found) == {("UNKNOWN_STEP", "s", 3)}
    assert found.anomalies[0].detail == "step 'ask_where' is not in flow 'order_pizza' version '3'"


def test_duplicate_message(flows: FlowSet) -> None:
    rows = pizza_ok("s")
    rows[3]["message_id"] = rows[1]["message_id"]
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert keys(found) == {("DUPLICATE_MESSAGE", "s", 4)}
    assert found.anomalies[0].detail == f"message {rows[1]['message_id']} was already applied at version 2"
    other = pizza_ok("t")
    other[1]["message_id"] = rows[1]["message_id"]  # the same id in another session is not a duplicate
    assert find(rows[:3] + other, flows) == set()


def test_state_mismatch(flows: FlowSet) -> None:
    rows = pizza_ok("s") + pizza_ok("t")
    snap = snapshot(rows)
    assert find(rows, flows, snap=snap) == set()
    bad = snap.copy()
    bad.loc[bad["session_id"] == "s", "version"] = 9
    bad["status"] = bad["status"].astype(str)
    bad.loc[bad["session_id"] == "t", "status"] = "failed"
    found = find_anomalies(frame(rows), bad, flows, as_of=T0)
    assert keys(found) == {("STATE_MISMATCH", "s", 5), ("STATE_MISMATCH", "t", 5)}
    assert {a.detail for a in found.anomalies} == {"snapshot vs last record: version 9 vs 5",
                                                    "snapshot vs last record: status 'failed' vs 'completed'"}
    missing = snap[snap["session_id"] == "s"]
    assert find(rows, flows, snap=missing) == {("STATE_MISMATCH", "t", 5)}
    assert find(rows[:5], flows, snap=snap) == {("STATE_MISMATCH", "t", 5)}  # no history for t
    assert find(rows, flows, snap=False) == set()  # no snapshot, nothing to compare


def test_retry_loop_threshold(flows: FlowSet) -> None:
    rows = pizza_ok("s")[:2]  # at ask_qty (v2)
    for v in range(3, 9):  # six invalid answers in a row
        rows.append(rec("s", v, "ask_qty", ["ask_qty"], error="invalid_input:not_a_number"))
    rows.append(rec("s", 9, "ask_qty", [], event="command"))  # "help": stays, does not break the run
    rows.append(rec("s", 10, "ask_qty", ["ask_qty"], error="invalid_input:too_large"))
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert keys(found) == {("RETRY_LOOP", "s", 8)}  # the 6th re-entry crosses N=5
    assert "re-entered 7 times in a row (versions 3-10; threshold 5)" in found.anomalies[0].detail
    assert find(rows, flows, retry_threshold=7) == set()
    assert find(rows, flows, retry_threshold=2) == {("RETRY_LOOP", "s", 5)}
    with pytest.raises(HistoryError, match="at least 1"):
        find(rows, flows, retry_threshold=0)


def test_after_terminal(flows: FlowSet) -> None:
    rows = pizza_ok("s")
    rows.append(rec("s", 6, "done", [], status="completed"))
    assert find(rows, flows) == {("AFTER_TERMINAL", "s", 6)}
    rows[-1] = rec("s", 6, None, ["welcome", "ask_size"], event="start")  # a new start is fine
    assert find(rows, flows) == set()


def test_stuck_uses_snapshot_and_as_of(flows: FlowSet) -> None:
    rows = pizza_ok("s")[:3]  # waiting at ask_address since T0 + 3 min
    assert find(rows, flows, as_of=T0 + 20 * MIN) == set()
    found = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0 + 63 * MIN)
    assert keys(found) == {("STUCK", "s", 3)}
    assert found.anomalies[0].detail == ("waiting_input at step 'ask_address', idle for 1h at "
                                         "2026-10-01T01:03:00.000Z (threshold 30m)")
    assert find(rows, flows, snap=False, as_of=T0 + 63 * MIN) == {("STUCK", "s", 3)}  # from the last record
    # as_of wins over exported_at; without either, the latest record's time is used.
    r = find_anomalies(frame(rows), snapshot(rows), flows, exported_at=T0 + 99 * MIN, as_of=T0 + 4 * MIN)
    assert r.ok and r.summary["as_of_source"] == "as_of"
    r = find_anomalies(frame(rows), snapshot(rows), flows)
    assert r.ok and r.summary["as_of_source"] == "latest record"
    with pytest.raises(HistoryError, match="bad duration"):
        find(rows, flows, stuck_after="soon")


def test_timezone_aware_input_is_judged_in_utc(flows: FlowSet) -> None:
    rows = pizza_ok("s")[:3]
    h = frame(rows)
    h = h.assign(ts=h["ts"].dt.tz_convert("Asia/Kolkata"))
    as_of = pd.Timestamp(T0 + 63 * MIN, unit="ms", tz="UTC").tz_convert("America/Los_Angeles")
    report = find_anomalies(h, snapshot(rows), flows, as_of=as_of)
    assert keys(report) == {("STUCK", "s", 3)}
    assert find(rows, flows, as_of="2026-10-01T02:33:00+02:00") == set()  # 00:33 UTC: 30 minutes idle


def test_unloaded_flow_versions_are_listed_not_guessed(flows: FlowSet) -> None:
    rows = pizza_ok("s")
    for r in rows:
        r["flow_version"] = "99"
    rows[2]["path"] = ["nowhere"]
    report = find_anomalies(frame(rows), snapshot(rows), flows, as_of=T0)
    assert report.ok
    assert report.summary["unchecked"] == [{"flow": "order_pizza", "flow_version": "99", "rows": 5}]
    assert find_anomalies(frame(rows), snapshot(rows), None, as_of=T0).summary["checks"]["graph"] is False


def test_codes_filter(syn: Synthetic) -> None:
    report = find_anomalies(syn.history, syn.sessions, syn.flows, exported_at=syn.exported_at, codes=["STUCK"])
    assert {a.code for a in report.anomalies} == {"STUCK"}
    assert report.summary["counts"] == {"STUCK": syn.config.per_code}
    with pytest.raises(HistoryError, match="unknown anomaly code"):
        find_anomalies(syn.history, codes=["NOPE"])


def test_report_forms(syn: Synthetic) -> None:
    report = find_anomalies(syn.history, syn.sessions, syn.flows, exported_at=syn.exported_at)
    d = report.to_dict()
    assert set(d) == {"summary", "anomalies"}
    assert set(d["anomalies"][0]) == {"code", "session_id", "version", "detail"}
    df = report.to_frame()
    assert list(df.columns) == ["code", "session_id", "version", "detail"] and len(df) == len(report.anomalies)
    assert str(df["version"].dtype) == "Int64"



def test_a_session_held_by_people_is_stuck_only_past_its_handoff_timeout() -> None:
    import dataclasses

    support = FlowSet.load(Path(__file__).resolve().parents[2] / "examples" / "flows").get("support_triage")
    assert support.handoff is not None and support.handoff.timeout == 4 * 3600
    v = support.version_id
    rows = [rec("h", 1, None, ["ask_topic"], event="start", flow="support_triage", flow_version=v),
            rec("h", 2, "ask_topic", ["ask_urgency"], flow="support_triage", flow_version=v),
            rec("h", 3, "ask_urgency", ["to_agent"], status="handoff", flow="support_triage", flow_version=v)]
    held_at = rows[-1]["ts"]
    flows, no_timeout = FlowSet([support]), FlowSet([dataclasses.replace(support, handoff=None)])
    for snap in (True, False):  # judged from the snapshot and from the last record
        assert find(rows, flows, snap=snap, as_of=held_at + 4 * 60 * MIN) == set()  # people still have it
        assert find(rows, flows, snap=snap, as_of=held_at + 4 * 60 * MIN + 31 * MIN) == {("STUCK", "h", 3)}
        # without a hand-off timeout people hold it as long as they need
        assert find(rows, no_timeout, snap=snap, as_of=held_at + 30 * 24 * 60 * MIN) == set()
    rows[-1]["status"] = "waiting_input"  # the same idle time anywhere else is STUCK at 30 minutes
    assert find(rows, flows, as_of=held_at + 31 * MIN) == {("STUCK", "h", 3)}
