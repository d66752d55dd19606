"""The export format: dtypes, round trips in every format, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowkit.errors import HistoryError
from flowkit.history.columns import (
    HISTORY_COLUMNS,
    SESSION_COLUMNS,
    empty_frame,
    is_canonical,
    normalize,
    read_export,
    read_history,
    read_meta,
    read_sessions,
    write_export,
)
from flowkit.history.synthetic import Synthetic
from tests.history.helpers import T0, frame, pizza_ok, rec

FORMATS = ["parquet", "jsonl", "csv"]


def _assert_canonical(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(HISTORY_COLUMNS)
    assert is_canonical(df, "history")
    assert str(df["ts"].dtype) == "datetime64[ms, UTC]"
    for c in ("flow", "flow_version", "event", "from_step", "to_step", "status", "actor"):
        assert isinstance(df[c].dtype, pd.CategoricalDtype), c
    assert df["version"].dtype == np.int64
    assert isinstance(df["path"].dtype, pd.ArrowDtype)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format_keeps_values_and_dtypes(syn: Synthetic, tmp_path: Path, fmt: str) -> None:
    out = syn.write(tmp_path / fmt, fmt=fmt)  # type: ignore[arg-type]
    ex = read_export(out)
    _assert_canonical(ex.history)
    assert ex.sessions is not None and list(ex.sessions.columns) == list(SESSION_COLUMNS)
    assert ex.exported_at == syn.exported_at
    a = syn.history.astype(object).where(syn.history.notna(), None)
    b = ex.history.astype(object).where(ex.history.notna(), None)
    assert len(a) == len(b)
    for c in HISTORY_COLUMNS:
        left = [list(x) if c == "path" else x for x in a[c]]
        right = [list(x) if c == "path" else x for x in b[c]]
        assert left == right, c
    pd.testing.assert_frame_equal(ex.sessions.astype(object), syn.sessions.astype(object))
    meta = read_meta(out)
    assert meta["history"]["rows"] == len(syn.history)
    assert all(len(v) == 64 for v in meta["history"]["files"].values())  # sha256 per file


def test_jsonl_and_csv_forms_of_the_contract(tmp_path: Path) -> None:
    rows = pizza_ok("s1") + [rec("s2", 1, None, ["welcome", "ask_size"], event="start", message_id=None)]
    write_export(tmp_path / "j", frame(rows), fmt="jsonl", exported_at=T0)
    first = json.loads((tmp_path / "j" / "history.jsonl").read_text().splitlines()[0])
    assert first["path"] == ["welcome", "ask_size"]  # JSONL: an array
    assert first["ts"] == "2026-10-01T00:01:00.000Z"  # ISO-8601 UTC
    assert first["from_step"] is None
    write_export(tmp_path / "c", frame(rows), fmt="csv", exported_at=T0)
    lines = (tmp_path / "c" / "history.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ['"session_id"', '"flow"', '"flow_version"']
    assert "welcome>ask_size" in lines[1]  # CSV: joined by '>'
    back = read_history(tmp_path / "c")
    assert back["message_id"].isna().sum() == 1
    assert list(back["path"].iloc[0]) == ["welcome", "ask_size"]
    assert back["flow_version"].astype(str).tolist() == ["3"] * len(rows)  # labels stay text


def test_timezone_aware_and_naive_timestamps_become_utc(tmp_path: Path) -> None:
    rows = pizza_ok("s1")
    df = frame(rows)
    # A notebook user's frame in local time: converted, not shifted.
    local = df.assign(ts=df["ts"].dt.tz_convert("Europe/Amsterdam"))
    assert normalize(local)["ts"].equals(df["ts"])
    # CSV written by another tool: +02:00 offsets, a 'Z', naive text (taken as UTC) and epoch ms.
    csv = tmp_path / "history.csv"
    frame_csv = pd.DataFrame({c: [r.get(c) for r in rows] for c in HISTORY_COLUMNS})
    frame_csv["path"] = [">".join(p) for p in frame_csv["path"]]
    stamps = pd.to_datetime(frame_csv["ts"], unit="ms", utc=True)
    frame_csv["ts"] = [
        stamps[0].tz_convert("Europe/Amsterdam").isoformat(),
        stamps[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        stamps[2].strftime("%Y-%m-%d %H:%M:%S"),
        stamps[3].isoformat(),
        stamps[4].tz_convert("America/New_York").isoformat(),
    ]
    frame_csv.to_csv(csv, index=False)
    back = read_history(csv)
    assert back["ts"].tolist() == df["ts"].tolist()
    # epoch milliseconds in a JSONL file are accepted too
    jl = tmp_path / "h.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert read_history(jl)["ts"].tolist() == df["ts"].tolist()


def test_missing_column_is_named(tmp_path: Path) -> None:
    df = frame(pizza_ok("s1")).drop(columns=["to_step", "path", "actor"])  # actor is optional
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "h.parquet")
    with pytest.raises(HistoryError, match=r"missing columns 'to_step', 'path'"):
        read_history(tmp_path / "h.parquet")
    with pytest.raises(HistoryError, match=r"missing columns 'to_step', 'path'"):
        normalize(df)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("version", "three", r"column 'version' must be an integer \(int64\); got 'three'"),
    ("ts", "yesterday", r"column 'ts' is not an ISO-8601 time: 'yesterday'"),
    ("event", "poke", r"column 'event' has unknown value\(s\) 'poke'"),
    ("status", "sleeping", r"column 'status' has unknown value\(s\) 'sleeping'"),
    ("session_id", "", r"column 'session_id' is empty in 1 row\(s\), first at row 2"),
])
def test_ill_typed_column_is_named_with_an_example(tmp_path: Path, column: str, value: str, message: str) -> None:
    rows = pizza_ok("s1")
    lines = []
    for i, r in enumerate(rows):
        r = dict(r)
        if i == 2:
            r[column] = value
        lines.append(json.dumps(r))
    p = tmp_path / "h.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(HistoryError, match=message) as err:
        read_history(p)
    assert str(p) in str(err.value)


def test_fractional_version_and_bad_path_are_refused() -> None:
    df = pd.DataFrame([rec("s", 1, None, ["welcome"], event="start")])
    with pytest.raises(HistoryError, match="'version' must hold whole numbers; got 1.5"):
        normalize(df.assign(version=[1.5]))
    with pytest.raises(HistoryError, match="'path' must be a list of step names"):
        normalize(df.assign(path=[[1, 2]]))


def test_empty_export_reads_as_empty_typed_frames(tmp_path: Path) -> None:
    for fmt in FORMATS:
        out = write_export(tmp_path / fmt, empty_frame("history"), empty_frame("sessions"), fmt=fmt, exported_at=T0)  # type: ignore[arg-type]
        h = read_history(out)
        s = read_sessions(out)
        assert len(h) == 0 and is_canonical(h)
        assert s is not None and len(s) == 0
        assert read_meta(out)["history"]["rows"] == 0


def test_canonical_frames_pass_through_untouched(syn: Synthetic) -> None:
    assert normalize(syn.history) is syn.history


def test_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such file or folder"):
        read_history(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(HistoryError, match="unknown file type '.txt'"):
        read_history(tmp_path / "x.txt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "export.json").write_text("{}")
    with pytest.raises(HistoryError, match="export folder without history"):
        read_history(tmp_path / "bad")
