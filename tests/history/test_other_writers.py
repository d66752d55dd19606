"""Exports written by other tools, by hand (text files, pyarrow tables): read the same as
flowkit's own, judged by what the records mean, or refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowkit.errors import HistoryError
from flowkit.history.anomalies import analyze, find_anomalies
from flowkit.history.columns import HISTORY_SCHEMA, read_history
from flowkit.history.flowset import FlowSet

T0_S = 1_790_812_800  # 2026-10-01T00:00:00Z in epoch seconds
ENGINES = ["pandas", "duckdb"]

# An order_pizza v3 session that answers the quantity question badly six times in a row,
# written as another tool writes it: epoch seconds, re-prompts with an EMPTY path and an
# invalid_input error, paths as quoted lists, and no message_id/input/actor columns.
CSV = f"""\
session_id,flow,flow_version,version,ts,event,from_step,to_step,path,status,error
s,order_pizza,3,1,{T0_S + 60},start,,ask_size,"[""welcome"", ""ask_size""]",waiting_input,
s,order_pizza,3,2,{T0_S + 120},message,ask_size,ask_qty,['ask_qty'],waiting_input,
""" + "".join(f"s,order_pizza,3,{v},{T0_S + 60 * v},message,ask_qty,ask_qty,[],waiting_input,invalid_input:not_a_number\n"
              for v in range(3, 9))


def keys(report: object) -> set[tuple[str, str, int]]:
    return {(a.code, a.session_id, a.version) for a in report.anomalies}  # type: ignore[attr-defined]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_hand_written_csv_is_read_by_meaning(tmp_path: Path, flows: FlowSet, engine: str) -> None:
    (tmp_path / "history.csv").write_text(CSV)
    df = read_history(tmp_path)
    assert df["ts"].iloc[0].isoformat() == "2026-10-01T00:01:00+00:00"  # seconds, read as such
    assert list(df["path"].iloc[0]) == ["welcome", "ask_size"] and list(df["path"].iloc[1]) == ["ask_qty"]
    assert list(df["path"].iloc[2]) == ["ask_qty"]  # the empty-path re-prompt, as flowkit writes it
    assert df["actor"].unique().tolist() == ["runtime"] and df["message_id"].isna().all()
    report = analyze(tmp_path, flows, as_of="2026-10-01T00:09:00Z", engine=engine)
    # six re-prompts: the 6th crosses the default threshold of 5; nothing else is wrong
    assert keys(report) == {("RETRY_LOOP", "s", 8)}, report.anomalies


@pytest.mark.parametrize("engine", ENGINES)
def test_both_forms_of_a_re_prompt_count_the_same(flows: FlowSet, engine: str) -> None:
    rows = [json.loads(line) for line in _jsonl_rows()]
    import pandas as pd

    for form in ("self-edge", "empty-path"):
        frame = pd.DataFrame(rows)
        if form == "self-edge":
            frame["path"] = [r["path"] or [r["from_step"]] for r in rows]
        report = find_anomalies(frame, flows=flows, as_of="2026-10-01T00:09:00Z", engine=engine)
        assert keys(report) == {("RETRY_LOOP", "s", 8)}, (form, report.anomalies)


def _jsonl_rows() -> list[str]:
    us = (T0_S * 1_000_000)
    rows = [{"session_id": "s", "flow": "order_pizza", "flow_version": "3", "version": 1, "ts": us + 60_000_000,
             "event": "start", "from_step": None, "to_step": "ask_size", "path": ["welcome", "ask_size"],
             "status": "waiting_input"},
            {"session_id": "s", "flow": "order_pizza", "flow_version": "3", "version": 2, "ts": us + 120_000_000,
             "event": "message", "from_step": "ask_size", "to_step": "ask_qty", "path": ["ask_qty"],
             "status": "waiting_input"}]
    rows += [{"session_id": "s", "flow": "order_pizza", "flow_version": "3", "version": v, "ts": us + v * 60_000_000,
              "event": "message", "from_step": "ask_qty", "to_step": "ask_qty", "path": [], "status": "waiting_input",
              "error": "invalid_input:too_large"} for v in range(3, 9)]
    return [json.dumps(r) for r in rows]


@pytest.mark.parametrize("engine", ENGINES)
def test_jsonl_with_epoch_microseconds(tmp_path: Path, flows: FlowSet, engine: str) -> None:
    (tmp_path / "history.jsonl").write_text("\n".join(_jsonl_rows()) + "\n")
    assert read_history(tmp_path)["ts"].iloc[1].isoformat() == "2026-10-01T00:02:00+00:00"
    assert keys(analyze(tmp_path, flows, as_of="2026-10-01T00:09:00Z", engine=engine)) == {("RETRY_LOOP", "s", 8)}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_parquet_file_written_with_pyarrow_by_hand(tmp_path: Path, flows: FlowSet, engine: str) -> None:
    """Canonical types (DuckDB reads such files as they are), re-prompts with empty paths, and
    timestamps in nanoseconds as int64: both engines judge the same."""
    rows = [json.loads(line) for line in _jsonl_rows()]
    schema = pa.schema([f if f.name != "ts" else pa.field("ts", pa.int64()) for f in HISTORY_SCHEMA
                        if f.name not in ("message_id", "input", "actor")])
    for r in rows:
        r["ts"] *= 1000  # µs -> ns
    (tmp_path / "history").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "history" / "part-00000.parquet")
    assert keys(analyze(tmp_path, flows, as_of="2026-10-01T00:09:00Z", engine=engine)) == {("RETRY_LOOP", "s", 8)}
    canonical = pa.Table.from_pylist([{**r, "ts": r["ts"] // 1_000_000} for r in rows],
                                     schema=pa.schema([f for f in HISTORY_SCHEMA if f.name not in ("message_id", "input", "actor")]))
    pq.write_table(canonical.cast(pa.schema([f if f.name != "ts" else pa.field("ts", pa.timestamp("ms", tz="UTC"))
                                             for f in canonical.schema])), tmp_path / "history" / "part-00000.parquet")
    assert keys(analyze(tmp_path, flows, as_of="2026-10-01T00:09:00Z", engine=engine)) == {("RETRY_LOOP", "s", 8)}


@pytest.mark.parametrize(("ts", "unit"), [(T0_S, "seconds"), (T0_S * 1000, "milliseconds"),
                                          (T0_S * 10**6, "microseconds"), (T0_S * 10**9, "nanoseconds"),
                                          (f"{T0_S}.250", "seconds"), ("2026-10-01 02:00:00+02:00", "iso")])
def test_timestamp_units_are_read_from_their_magnitude(tmp_path: Path, ts: object, unit: str) -> None:
    (tmp_path / "history.csv").write_text(
        "session_id,flow,flow_version,version,ts,event,from_step,to_step,path,status\n"
        f"s,order_pizza,3,1,{ts},start,,ask_size,welcome>ask_size,waiting_input\n")
    got = read_history(tmp_path)["ts"].iloc[0]
    assert got.isoformat().startswith("2026-10-01T00:00:00"), (unit, got)


def test_what_cannot_be_read_is_refused_clearly(tmp_path: Path) -> None:
    head = "session_id,flow,flow_version,version,ts,event,from_step,to_step,path,status\n"
    cases = {
        "mixed units": (head + f"s,f,1,1,{T0_S},start,,a,a,active\ns,f,1,2,{T0_S * 1000},message,a,a,a,active\n",
                        "column 'ts' mixes epoch units: seconds (e.g. 1790812800), milliseconds (e.g. 1790812800000)"),
        "unterminated list": (head + f"s,f,1,1,{T0_S},start,,a,\"[a, b\",active\n", "column 'path' holds an unterminated list"),
        "not a list of names": (head + f"s,f,1,1,{T0_S},start,,a,\"[1, 2]\",active\n", "column 'path' holds '[1, 2]'"),
        "no path": ("session_id,flow,flow_version,version,ts,event,from_step,to_step,status\n"
                    f"s,f,1,1,{T0_S},start,,a,active\n", "history is missing column 'path'"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / "history.csv").write_text(text)
        with pytest.raises(HistoryError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            read_history(tmp_path)
        assert name
