"""The DuckDB and Dask engines give the pandas engine's report, word for word: on synthetic
histories of several seeds and options, from every file form (a multi-file Parquet dataset
in shuffled order included), on order-sensitive ties, and with the same errors on bad input.

The Dask engine runs on a real local cluster (scheduler and worker processes, the
``dask_scheduler`` fixture) with a bucket count that differs from the worker count, so
sessions really are split over tasks and processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowkit.errors import HistoryError
from flowkit.history import duck
from flowkit.history.anomalies import CODES, analyze, find_anomalies, resolve_engine
from flowkit.history.columns import HISTORY_SCHEMA, frame_to_table, write_export
from flowkit.history.flowset import FlowSet
from flowkit.history.synthetic import Synthetic, example_flows, generate
from tests.history.helpers import T0, frame, pizza_ok, rec, snapshot

MIN = 60_000


DASK_BUCKETS = 5  # not the worker count: several buckets per worker, some sessions per bucket


@pytest.fixture(autouse=True)
def _dask(dask_scheduler: str) -> Iterator[None]:
    global SCHEDULER
    SCHEDULER = dask_scheduler
    yield


SCHEDULER = ""


def both(history: pd.DataFrame, sessions: pd.DataFrame | None, flows: Any, **kw: Any) -> tuple[dict, dict]:
    """The pandas and duckdb reports (engine keys removed); the dask report must equal the pandas one."""
    a = find_anomalies(history, sessions, flows, engine="pandas", **kw).to_dict()
    b = find_anomalies(history, sessions, flows, engine="duckdb", **kw).to_dict()
    c = find_anomalies(history, sessions, flows, engine="dask", scheduler=SCHEDULER, buckets=DASK_BUCKETS, **kw).to_dict()
    assert a["summary"].pop("engine") == "pandas" and b["summary"].pop("engine") == "duckdb"
    assert c["summary"].pop("engine") == "dask"
    assert c == a
    return a, b


def same_files(path: Path, flows: Any, **kw: Any) -> dict:
    a = analyze(path, flows, engine="pandas", **kw).to_dict()
    b = analyze(path, flows, engine="duckdb", **kw).to_dict()
    c = analyze(path, flows, engine="dask", scheduler=SCHEDULER, buckets=DASK_BUCKETS, **kw).to_dict()
    assert a["summary"].pop("engine") == "pandas" and b["summary"].pop("engine") == "duckdb"
    assert c["summary"].pop("engine") == "dask"
    assert a == b
    assert c == a
    return a


def engine_kw(engine: str) -> dict[str, Any]:
    return {"scheduler": SCHEDULER, "buckets": DASK_BUCKETS} if engine == "dask" else {}


@pytest.fixture(scope="module", params=[41, 42, 43])
def seeded(request: pytest.FixtureRequest, flows: FlowSet) -> Synthetic:
    return generate(sessions=300, seed=request.param, per_code=3, flows=flows)


@pytest.mark.parametrize("options", [
    {},
    {"retry_threshold": 2, "stuck_after": "5m"},
    {"since": T0},
    {"partial": True, "codes": ["VERSION_GAP", "STUCK", "ILLEGAL_TRANSITION"]},
    {"as_of": "2030-01-01T00:00:00Z"},
], ids=["default", "tight", "since", "partial-codes", "late"])
def test_full_reports_are_identical(seeded: Synthetic, options: dict) -> None:
    a, b = both(seeded.history, seeded.sessions, seeded.flows, exported_at=seeded.exported_at, **options)
    assert a == b
    assert a["anomalies"], "the comparison must be about findings"


def test_identical_without_snapshot_flows_or_some_flow_versions(seeded: Synthetic) -> None:
    a, b = both(seeded.history, None, seeded.flows, exported_at=seeded.exported_at)
    assert a == b and a["summary"]["counts"]["STUCK"] > 0  # from the last records
    a, b = both(seeded.history, seeded.sessions, None)
    assert a == b and a["summary"]["unchecked"]
    a, b = both(seeded.history, seeded.sessions, example_flows(with_v4=False), exported_at=seeded.exported_at)
    assert a == b and [u["flow_version"] for u in a["summary"]["unchecked"]] == ["4"]


def test_identical_on_clean_histories(clean: Synthetic) -> None:
    a, b = both(clean.history, clean.sessions, clean.flows, exported_at=clean.exported_at)
    assert a == b and a["anomalies"] == []


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_identical_from_files(seeded: Synthetic, tmp_path: Path, fmt: str) -> None:
    out = seeded.write(tmp_path / fmt, fmt=fmt)  # type: ignore[arg-type]
    report = same_files(out, seeded.flows)
    assert {(a["code"], a["session_id"], a["version"]) for a in report["anomalies"]} == set(seeded.truth)


def test_shuffled_multi_file_dataset(seeded: Synthetic, tmp_path: Path) -> None:
    """Rows out of order over many files: ties (duplicated versions) are broken by file order, as in pandas."""
    h = seeded.history
    # Every record of some sessions doubled with another status and message: ties at every version.
    doubled = h[h["session_id"].isin(h["session_id"].unique()[:20])].copy()
    doubled["status"] = doubled["status"].astype(str).map({"completed": "waiting_input"}).fillna("completed")
    doubled["message_id"] = "dup"
    mixed = pd.concat([h, doubled], ignore_index=True)
    mixed = mixed.iloc[np.random.default_rng(5).permutation(len(mixed))].reset_index(drop=True)
    out = write_export(tmp_path / "x", mixed, seeded.sessions, exported_at=seeded.exported_at, rows_per_file=499)
    assert len(list((out / "history").glob("*.parquet"))) > 5
    report = same_files(out, seeded.flows)
    assert report["summary"]["counts"]["VERSION_DUPLICATE"] > 20
    assert report["summary"]["counts"]["STATE_MISMATCH"] > 3
    mem = both(mixed, seeded.sessions, seeded.flows, exported_at=seeded.exported_at)
    assert mem[0] == mem[1]
    assert mem[0]["anomalies"] == report["anomalies"]


def test_order_sensitive_ties(flows: FlowSet) -> None:
    rows = pizza_ok("s")
    # Two records of the last version: the later row is the session's last record.
    rows.append({**rows[-1], "status": "waiting_input", "message_id": "other"})
    rows.append(rec("s", 6, "done", [], status="completed"))
    rows.append(rec("t", 1, None, ["welcome", "ask_where"], event="start"))
    rows.append(rec("t", 1, None, ["welcome", "ask_where"], event="start", flow_version="4", message_id="x"))
    snap = snapshot(rows)
    snap.loc[snap["session_id"] == "t", "step"] = None  # a snapshot row without a step
    a, b = both(frame(rows), snap, flows, as_of=T0 + 9 * MIN)
    assert a == b
    found = {(x["code"], x["session_id"], x["version"]): x["detail"] for x in a["anomalies"]}
    assert found[("UNKNOWN_STEP", "t", 1)] == "step 'ask_where' is not in flow 'order_pizza' version '3'"
    assert found[("STATE_MISMATCH", "t", 1)] == "snapshot vs last record: step nan vs to_step 'ask_where'"
    assert ("AFTER_TERMINAL", "s", 6) not in found  # the previous record (the later of the two v5) is waiting_input
    assert found[("VERSION_DUPLICATE", "s", 5)] == "2 records carry version 5 (a lost or doubled update)"


def test_empty_history(flows: FlowSet, tmp_path: Path) -> None:
    a, b = both(frame([]), snapshot([]), flows)
    assert a == b and a["summary"]["rows"] == 0
    out = write_export(tmp_path / "e", frame([]), snapshot([]), exported_at=T0)
    assert same_files(out, flows)["anomalies"] == []
    rows = pizza_ok("s")
    a, b = both(frame([]), snapshot(rows), flows, as_of=T0 + 99 * MIN)
    assert a == b and [x["detail"] for x in a["anomalies"]] == [
        "the snapshot has this session but the history has no record of it"]


# ---------------------------------------------------------------- the same errors


def _canonical(syn: Synthetic) -> pa.Table:
    return frame_to_table(syn.history, "history")


def _with(table: pa.Table, column: str, values: list) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(values, table.schema.field(column).type))


@pytest.mark.parametrize(("column", "bad", "message"), [
    ("session_id", "", "column 'session_id' is empty in 1 row(s), first at row 3; it is required"),
    ("session_id", None, "column 'session_id' is empty in 1 row(s), first at row 3; it is required"),
    ("flow_version", None, "column 'flow_version' is empty in 1 row(s)"),
    ("event", "teleport", "column 'event' has unknown value(s) 'teleport'"),
    ("status", "dancing", "column 'status' has unknown value(s) 'dancing'"),
    ("version", 0, "column 'version' must be >= 1 (1 is the first commit); got 0"),
    ("ts", None, "column 'ts' is empty in 1 row(s)"),
])
def test_bad_values_in_a_canonical_dataset_give_the_same_error(syn: Synthetic, tmp_path: Path, column: str,
                                                              bad: Any, message: str) -> None:
    table = _canonical(syn).slice(0, 50)
    values = table.column(column).to_pylist()
    values[3] = bad
    (tmp_path / "history").mkdir()
    pq.write_table(_with(table, column, values), tmp_path / "history" / "part-00000.parquet")
    assert duck.canonical_parquet([tmp_path / "history" / "part-00000.parquet"], HISTORY_SCHEMA.names)
    errors = []
    for engine in ("pandas", "duckdb", "dask"):
        with pytest.raises(HistoryError) as exc:
            analyze(tmp_path, engine=engine, **engine_kw(engine))
        errors.append(str(exc.value))
    assert errors[0] == errors[1]
    # The dask workers read file by file: the same error, naming the file (rows counted in it).
    folder = str(tmp_path / "history")
    assert errors[2] == errors[0].replace(folder + ":", folder + "/part-00000.parquet:")
    assert message in errors[0]


def test_missing_and_ill_typed_columns_give_the_same_error(syn: Synthetic, tmp_path: Path) -> None:
    cases = {
        "missing.parquet": pa.Table.from_pandas(syn.history.drop(columns=["from_step"]), preserve_index=False),
        "typed.parquet": _canonical(syn).slice(0, 20).set_column(3, "version", pa.array(["1"] * 19 + ["two"])),
    }
    for name, table in cases.items():
        pq.write_table(table, tmp_path / name)
    (tmp_path / "bad.csv").write_text(syn.history.head(3).assign(version=["1", "two", "3"]).to_csv(index=False))
    for name, message in (("missing.parquet", "missing column 'from_step'"),
                          ("typed.parquet", "column 'version' must be an integer (int64); got 'two'"),
                          ("bad.csv", "column 'version' must be an integer (int64); got 'two'")):
        errors = []
        for engine in ("pandas", "duckdb", "dask"):
            with pytest.raises(HistoryError) as exc:
                analyze(tmp_path / name, engine=engine, **engine_kw(engine))
            errors.append(str(exc.value))
        assert errors[0] == errors[1] == errors[2] and message in errors[0], errors


def test_non_canonical_parquet_is_read_like_pandas(syn: Synthetic, tmp_path: Path) -> None:
    """Categoricals written by pandas (dictionary columns) and microsecond timestamps: read through Arrow."""
    h = syn.history.assign(ts=syn.history["ts"].astype("datetime64[us, UTC]"))
    pq.write_table(pa.Table.from_pandas(h, preserve_index=False), tmp_path / "h.parquet")
    assert not duck.canonical_parquet([tmp_path / "h.parquet"], HISTORY_SCHEMA.names)
    report = same_files(tmp_path / "h.parquet", syn.flows, as_of=syn.exported_at)
    assert report["summary"]["rows"] == len(syn.history)


# ---------------------------------------------------------------- choosing the engine


def test_engine_choice(syn: Synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = syn.write(tmp_path / "x")
    assert analyze(out, syn.flows).summary["engine"] == "pandas"  # the default
    assert analyze(out, syn.flows, engine="auto").summary["engine"] == "duckdb"  # on disk, duckdb importable
    assert find_anomalies(syn.history, syn.sessions, syn.flows).summary["engine"] == "pandas"  # auto: in memory
    with pytest.raises(HistoryError, match="unknown engine 'spark'; use one of auto, pandas, duckdb, dask"):
        analyze(out, engine="spark")
    monkeypatch.setattr(duck, "available", lambda: False)
    assert resolve_engine("auto", on_disk=True) == "pandas"
    assert analyze(out, syn.flows, engine="auto").summary["engine"] == "pandas"
    with pytest.raises(HistoryError, match="needs the duckdb package"):
        analyze(out, engine="duckdb")


def test_counts_cover_every_code(seeded: Synthetic) -> None:
    report = find_anomalies(seeded.history, seeded.sessions, seeded.flows, exported_at=seeded.exported_at,
                            engine="duckdb")
    assert report.counts() == {c: 3 for c in CODES}
