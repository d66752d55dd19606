"""The dask engine end to end on a real Dask cluster (scheduler and worker processes):
analytics tables equal to the pandas engine's DataFrames exactly, the CLI's --engine dask
and --scheduler (a running cluster, and a local one started and stopped by the command),
and clear errors for what it cannot do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.history import analytics as an
from flowkit.history import dask_analytics
from flowkit.history.columns import read_history, write_export
from flowkit.history.dask_engine import ANALYTICS_TABLES
from flowkit.history.synthetic import EXAMPLE_FLOWS, Synthetic, generate
from tests.history.test_partitioned import spread_over_days

runner = CliRunner()


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthetic, Path]:
    syn = generate(sessions=400, seed=44, per_code=3)
    return syn, syn.write(tmp_path_factory.mktemp("dirty") / "export")


def pandas_table(history: pd.DataFrame, name: str, flows: object, flow: str | None) -> pd.DataFrame:
    kw: dict = {}
    if name in ("funnel", "drop_off", "retries"):
        kw["flows"] = flows
    if name != "rates":
        kw["flow"] = flow
    return getattr(an, name)(history, **kw)


@pytest.mark.parametrize("name", ANALYTICS_TABLES)
@pytest.mark.parametrize(("with_flows", "flow"), [(True, None), (False, None), (True, "order_pizza")],
                         ids=["flows", "no-flows", "one-flow"])
def test_analytics_tables_are_the_pandas_dataframes(dirty: tuple[Synthetic, Path], dask_scheduler: str, name: str,
                                                   with_flows: bool, flow: str | None) -> None:
    syn, out = dirty
    flows = syn.flows if with_flows else None
    want = pandas_table(read_history(out), name, flows, flow if name != "rates" else None)
    got = dask_analytics.table(out, name, flows, flow=flow if name != "rates" else None, scheduler=dask_scheduler,
                               buckets=7)
    assert len(want) > 2
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_analytics_on_a_partitioned_export(syn: Synthetic, dask_scheduler: str, tmp_path: Path) -> None:
    spread = spread_over_days(syn.history)
    out = write_export(tmp_path / "hive", spread, syn.sessions, exported_at=syn.exported_at,
                       partition_by=("flow", "day"), rows_per_file=400)
    history = read_history(out)
    for name in ANALYTICS_TABLES:
        want = pandas_table(history, name, syn.flows, None)
        got = dask_analytics.table(out, name, syn.flows, scheduler=dask_scheduler, buckets=3)
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_tables_with_medians_are_refused_clearly(dirty: tuple[Synthetic, Path], dask_scheduler: str) -> None:
    _, out = dirty
    r = runner.invoke(app, ["analytics", str(out), "-t", "dwell", "--engine", "dask", "--scheduler", dask_scheduler])
    assert r.exit_code == 2
    assert "table 'dwell' is not available on the dask engine" in r.stderr and "use --engine pandas" in r.stderr


def test_cli_analyze_and_analytics_on_a_running_cluster(dirty: tuple[Synthetic, Path], dask_scheduler: str) -> None:
    _, out = dirty
    base = ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS), "-f", "json"]
    a = runner.invoke(app, base)
    b = runner.invoke(app, [*base, "--engine", "dask", "--scheduler", dask_scheduler])
    assert a.exit_code == b.exit_code == 1
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["summary"].pop("engine") == "pandas" and rb["summary"].pop("engine") == "dask"
    assert ra == rb and ra["summary"]["counts"]["STATE_MISMATCH"] > 0
    base = ["analytics", str(out), "--flows", str(EXAMPLE_FLOWS), "-t", "funnel", "-f", "json"]
    a = runner.invoke(app, base)
    b = runner.invoke(app, [*base, "--engine", "dask", "--scheduler", dask_scheduler])
    assert a.exit_code == b.exit_code == 0 and json.loads(a.stdout) == json.loads(b.stdout)


def test_cli_refuses_a_scheduler_without_dask_and_an_unreachable_one(dirty: tuple[Synthetic, Path]) -> None:
    _, out = dirty
    r = runner.invoke(app, ["analyze", str(out), "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "use --engine dask with --scheduler" in r.stderr
    r = runner.invoke(app, ["analytics", str(out), "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "--scheduler is for --engine dask" in r.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = runner.invoke(app, ["analyze", str(out), "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert r.exit_code == 2 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in r.stderr


def test_cli_starts_and_stops_a_local_cluster(dirty: tuple[Synthetic, Path]) -> None:
    """No --scheduler: the command starts a local cluster of worker processes and stops it on exit."""
    _, out = dirty
    flowkit = str(Path(sys.executable).with_name("flowkit"))
    r = subprocess.run([flowkit, "analyze", str(out), "--flows", str(EXAMPLE_FLOWS),
                        "-f", "json", "--engine", "dask"], capture_output=True, text=True, timeout=240,
                       env={**os.environ}, check=False)
    assert r.returncode == 1, (r.stdout[-500:], r.stderr[-2000:])
    report = json.loads(r.stdout)
    assert report["summary"]["engine"] == "dask" and report["summary"]["anomalies"] > 0
