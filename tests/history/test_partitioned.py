"""Hive-partitioned Parquet exports (history/flow=NAME/day=YYYY-MM-DD/): written from a real
Redis and by write_export, read as they are by DuckDB, pyarrow.dataset and Dask, and by
every flowkit reader and engine with the same results as the flat layout."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.errors import HistoryError
from flowkit.history.anomalies import analyze
from flowkit.history.columns import (
    HISTORY_COLUMNS,
    read_export,
    read_history,
    read_meta,
    sha256_file,
    write_export,
)
from flowkit.history.export import export_store
from flowkit.history.partitioned import parse_partition_by
from flowkit.history.synthetic import Synthetic, load_into_store
from flowkit.store import Store
from tests.history.test_export import _same_rows

DAY = 86_400_000


def spread_over_days(h: pd.DataFrame) -> pd.DataFrame:
    """Whole sessions moved 0-2 days on, and the later records of some sessions past midnight."""
    h = h.copy()
    codes = pd.factorize(h["session_id"])[0]
    ms = h["ts"].astype("datetime64[ms, UTC]").array.asi8.copy()
    ms += (codes % 3) * DAY
    ms += np.where((codes % 5 == 0) & (h["version"].to_numpy() > 2), DAY, 0)  # crosses into the next day
    h["ts"] = pd.to_datetime(ms, unit="ms", utc=True).astype("datetime64[ms, UTC]")
    return h


@pytest.fixture(scope="module")
def spread(syn: Synthetic) -> pd.DataFrame:
    return spread_over_days(syn.history)


def folders(root: Path) -> set[str]:
    return {str(f.parent.relative_to(root / "history")) for f in (root / "history").rglob("*.parquet")}


def test_layout_and_what_other_readers_see(spread: pd.DataFrame, syn: Synthetic, tmp_path: Path) -> None:
    out = write_export(tmp_path / "p", spread, syn.sessions, exported_at=syn.exported_at, partition_by=("flow", "day"),
                       rows_per_file=300)
    days = sorted(spread["ts"].dt.strftime("%Y-%m-%d").unique())
    flows = sorted(spread["flow"].astype(str).unique())
    assert len(days) >= 3 and len(flows) >= 2
    want = {f"flow={f}/day={d}" for f, d in
            spread.assign(day=spread["ts"].dt.strftime("%Y-%m-%d"))[["flow", "day"]].astype(str).drop_duplicates()
            .itertuples(index=False)}
    assert folders(out) == want
    meta = read_meta(out)
    assert meta["history"]["layout"] == "hive" and meta["history"]["partition_by"] == ["flow", "day"]
    assert meta["history"]["rows"] == len(spread)
    for name, digest in meta["history"]["files"].items():
        assert sha256_file(out / name) == digest
    assert "layout" not in meta["sessions"]  # one row per session: one flat dataset

    glob = str(out / "history" / "**" / "*.parquet")
    con = duckdb.connect()
    try:
        n, n_flows, n_days = con.execute(f"SELECT count(*), count(DISTINCT flow), count(DISTINCT day) FROM "
                                         f"read_parquet('{glob}', hive_partitioning=true)").fetchone()  # type: ignore[misc]
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()]
        per_flow = dict(con.execute(f"SELECT flow, count(*) FROM read_parquet('{glob}', hive_partitioning=true) "
                                    "GROUP BY flow").fetchall())
    finally:
        con.close()
    assert (n, n_flows, n_days) == (len(spread), len(flows), len(days))
    assert set(cols) == set(HISTORY_COLUMNS) | {"day"}
    assert per_flow == spread["flow"].astype(str).value_counts().to_dict()

    dataset = ds.dataset(out / "history", format="parquet", partitioning="hive")
    assert dataset.count_rows() == len(spread)
    assert set(dataset.schema.names) == set(HISTORY_COLUMNS) | {"day"}
    one = dataset.to_table(filter=(ds.field("flow") == flows[0]) & (ds.field("day") == days[1]))
    assert one.num_rows == int(((spread["flow"] == flows[0]) & (spread["ts"].dt.strftime("%Y-%m-%d") == days[1])).sum())

    import dask.dataframe as dd

    ddf = dd.read_parquet(str(out / "history"), dataset={"partitioning": "hive"})
    assert len(ddf) == len(spread) and set(ddf.columns) == set(HISTORY_COLUMNS) | {"day"}


def test_flowkit_reads_it_back_and_every_engine_agrees(spread: pd.DataFrame, syn: Synthetic, tmp_path: Path,
                                                         dask_scheduler: str) -> None:
    flat = write_export(tmp_path / "flat", spread, syn.sessions, exported_at=syn.exported_at)
    hive = write_export(tmp_path / "hive", spread, syn.sessions, exported_at=syn.exported_at, partition_by=("flow", "day"),
                        rows_per_file=250)
    _same_rows(read_history(flat), read_history(hive))
    reports = {}
    for engine in ("pandas", "duckdb", "dask"):
        kw = {"scheduler": dask_scheduler, "buckets": 3} if engine == "dask" else {}
        for name, path in (("flat", flat), ("hive", hive)):
            r = analyze(path, syn.flows, engine=engine, **kw).to_dict()
            assert r["summary"].pop("engine") == engine
            reports[(engine, name)] = r
    first = reports[("pandas", "flat")]
    assert first["summary"]["counts"]["STATE_MISMATCH"] > 0 and first["summary"]["counts"]["ILLEGAL_TRANSITION"] > 0
    for key, r in reports.items():
        assert r == first, key


def test_export_from_redis_partitioned(store: Store, committed: Synthetic, tmp_path: Path) -> None:
    load_into_store(store, committed)
    meta = export_store(store, tmp_path / "out", partition_by=("flow", "day"), rows_per_file=200)
    assert meta["history"]["layout"] == "hive" and meta["history"]["rows"] == len(committed.history)
    assert all(p.startswith("flow=") for p in folders(tmp_path / "out"))
    ex = read_export(tmp_path / "out")
    _same_rows(committed.history, ex.history)
    assert analyze(tmp_path / "out", committed.flows, as_of=committed.exported_at).ok


def test_a_re_export_replaces_either_layout(spread: pd.DataFrame, syn: Synthetic, tmp_path: Path) -> None:
    out = tmp_path / "x"
    write_export(out, spread, syn.sessions, partition_by=("flow", "day"))
    half = spread.iloc[: len(spread) // 2]
    write_export(out, half, syn.sessions)  # flat over partitioned: the hive folders go
    assert len(read_history(out)) == len(half) and folders(out) == {"."}
    write_export(out, spread, syn.sessions, partition_by=("flow",))
    assert len(read_history(out)) == len(spread) and all("day=" not in f for f in folders(out))


def test_cli_export_partition_by(store: Store, committed: Synthetic, redis_url: str, tmp_path: Path) -> None:
    load_into_store(store, committed)
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(tmp_path / "o"), "--redis", redis_url, "--partition-by", "flow,day", "-q"])
    assert r.exit_code == 0, r.stderr
    meta = json.loads((tmp_path / "o" / "export.json").read_text())
    assert meta["history"]["partition_by"] == ["flow", "day"]
    r = runner.invoke(app, ["export", str(tmp_path / "c"), "--redis", redis_url, "--partition-by", "flow", "-f", "csv"])
    assert r.exit_code == 2 and "--partition-by needs --format parquet, not csv" in r.stderr
    r = runner.invoke(app, ["export", str(tmp_path / "h"), "--redis", redis_url, "--partition-by", "flow,hour"])
    assert r.exit_code == 2 and "cannot partition by 'flow,hour'" in r.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "h").exists()


def test_partition_keys() -> None:
    assert parse_partition_by("flow, day") == ("flow", "day")
    assert parse_partition_by("day") == ("day",)
    assert parse_partition_by(None) == ()
    for bad in ("flow,flow", "session_id", "flow;day"):
        with pytest.raises(HistoryError, match="use a comma-separated subset of flow, day"):
            parse_partition_by(bad)
