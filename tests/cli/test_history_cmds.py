"""`flowkit export`, `analyze`, `analytics`, `whatif` and `impact` end to end (real Redis
for export): output formats and exit codes 0 (nothing found), 1 (findings), 2 (bad input)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.history.anomalies import CODES
from flowkit.history.columns import read_meta
from flowkit.history.synthetic import EXAMPLE_FLOWS, Synthetic, generate, load_into_store, pizza_v4
from flowkit.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthetic, Path]:
    syn = generate(sessions=250, seed=31, per_code=2)
    return syn, syn.write(tmp_path_factory.mktemp("dirty") / "export")


@pytest.fixture(scope="module")
def tidy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthetic, Path]:
    syn = generate(sessions=150, seed=32, per_code=0)
    return syn, syn.write(tmp_path_factory.mktemp("tidy") / "export", fmt="jsonl")


@pytest.fixture(scope="module")
def v4_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flowkit.flow import load_flow

    p = tmp_path_factory.mktemp("flows") / "order_pizza_v4.yaml"
    p.write_text(pizza_v4(load_flow(EXAMPLE_FLOWS / "order_pizza.yaml")).to_yaml())
    return p


def test_analyze_json_lists_every_anomaly_and_exits_1(dirty: tuple[Synthetic, Path], v4_file: Path) -> None:
    syn, out = dirty
    r = runner.invoke(app, ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS), str(v4_file), "--format", "json"])
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert set(data) == {"summary", "anomalies"}
    assert {(a["code"], a["session_id"], a["version"]) for a in data["anomalies"]} == set(syn.truth)
    assert all(set(a) == {"code", "session_id", "version", "detail"} for a in data["anomalies"])
    assert data["summary"]["counts"] == {c: 2 for c in CODES}


def test_analyze_text_and_csv(dirty: tuple[Synthetic, Path], v4_file: Path) -> None:
    syn, out = dirty
    r = runner.invoke(app, ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS), str(v4_file)])
    assert r.exit_code == 1
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(syn.truth) and all(line.split()[0] in CODES for line in lines)
    assert "anomalies" in r.stderr
    r = runner.invoke(app, ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS), str(v4_file), "-f", "csv",
                            "--code", "STUCK", "--code", "RETRY_LOOP"])
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.exit_code == 1 and list(rows[0]) == ["code", "session_id", "version", "detail"]
    assert {row["code"] for row in rows} == {"STUCK", "RETRY_LOOP"} and len(rows) == 4


def test_analyze_clean_export_exits_0(tidy: tuple[Synthetic, Path], v4_file: Path) -> None:
    _, out = tidy
    r = runner.invoke(app, ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS), str(v4_file), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["anomalies"] == []
    # Without the v4 file its sessions cannot be checked against a graph: said, not guessed.
    r = runner.invoke(app, ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS)])
    assert r.exit_code == 0 and "order_pizza version 4 is not loaded" in r.stderr


def test_analyze_options(dirty: tuple[Synthetic, Path]) -> None:
    syn, out = dirty
    # A later as_of makes more sessions stale; a larger threshold hides the loops.
    r = runner.invoke(app, ["analyze", str(out), "-f", "json", "--code", "STUCK", "--as-of",
                            (syn.exported_at + __import__("pandas").Timedelta(days=1)).isoformat()])
    assert len(json.loads(r.stdout)["anomalies"]) > 2
    r = runner.invoke(app, ["analyze", str(out), "-f", "json", "--code", "RETRY_LOOP", "--retry-threshold", "50"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["analyze", str(out), "-f", "json", "--code", "STUCK", "--stuck-after", "30d"])
    assert r.exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--stuck-after", "soon"], "bad duration 'soon'"),
    (["--code", "NOPE"], "unknown code(s) NOPE"),
    (["extra.yaml"], "flow files go after --flows"),
    (["--flows", "nowhere.yaml"], "no such flow file or folder: nowhere.yaml"),
])
def test_analyze_bad_options_exit_2(dirty: tuple[Synthetic, Path], args: list[str], message: str) -> None:
    r = runner.invoke(app, ["analyze", str(dirty[1]), *args])
    assert r.exit_code == 2 and message in r.stderr, r.output


def test_analyze_bad_input_exits_2_naming_the_column(dirty: tuple[Synthetic, Path], tmp_path: Path) -> None:
    syn, _ = dirty
    table = pa.Table.from_pandas(syn.history.drop(columns=["from_step"]), preserve_index=False)
    pq.write_table(table, tmp_path / "h.parquet")
    r = runner.invoke(app, ["analyze", str(tmp_path / "h.parquet")])
    assert r.exit_code == 2 and "missing column 'from_step'" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text(syn.history.head(3).assign(version=["1", "two", "3"]).to_csv(index=False))
    r = runner.invoke(app, ["analyze", str(bad)])
    assert r.exit_code == 2 and "column 'version' must be an integer (int64); got 'two'" in r.stderr
    r = runner.invoke(app, ["analyze", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no such file or folder" in r.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("flow: x\nstart: a\nsteps: {a: {say: hi, next: b}}\n")
    r = runner.invoke(app, ["analyze", str(dirty[1]), "--flows", str(broken)])
    assert r.exit_code == 2 and "broken.yaml" in r.stderr


def test_analytics_tables_and_heatmap(dirty: tuple[Synthetic, Path], tmp_path: Path) -> None:
    _, out = dirty
    r = runner.invoke(app, ["analytics", str(out), "--flows", str(EXAMPLE_FLOWS), "-t", "funnel", "--flow",
                            "book_appointment", "-f", "json", "--heatmap", str(tmp_path / "heat.svg")])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows[0]["step"] == "greet" and {"entered", "dropped", "drop_off_rate"} <= set(rows[0])
    assert (tmp_path / "heat.svg").read_text().startswith("<?xml")
    for table in ("drop_off", "dwell", "rates", "retries", "variants", "dfg"):
        r = runner.invoke(app, ["analytics", str(out), "-t", table, "-f", "csv"])
        assert r.exit_code == 0 and r.stdout.count("\n") > 1, table
    r = runner.invoke(app, ["analytics", str(out), "-t", "rates"])
    assert r.exit_code == 0 and "completion_rate" in r.stdout
    r = runner.invoke(app, ["analytics", str(out), "--heatmap", str(tmp_path / "x.svg")])
    assert r.exit_code == 2 and "--heatmap needs --flow" in r.stderr


def test_whatif_and_impact(tidy: tuple[Synthetic, Path], v4_file: Path) -> None:
    _, out = tidy
    r = runner.invoke(app, ["whatif", str(out), "--new", str(v4_file), "--flows", str(EXAMPLE_FLOWS), "-f", "json"])
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["summary"]["counts"]["different_step"] > 0 and data["journeys"][0]["diverged"] is True
    same = EXAMPLE_FLOWS / "refund.yaml"
    r = runner.invoke(app, ["whatif", str(out), "--new", str(same), "--flows", str(EXAMPLE_FLOWS)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["impact", str(out), "--new", str(v4_file), "--flows", str(EXAMPLE_FLOWS), "-f", "json"])
    assert r.exit_code in (0, 1), r.output
    data = json.loads(r.stdout)
    assert set(data) == {"summary", "mapping", "steps", "sessions"}
    r = runner.invoke(app, ["impact", str(out), "--new", "nope.yaml"])
    assert r.exit_code == 2 and "no such flow file" in r.stderr


def test_export_command(store: Store, redis_url: str, tmp_path: Path) -> None:
    syn = generate(sessions=40, seed=33, per_code=0, keep_states=True)
    load_into_store(store, syn)
    r = runner.invoke(app, ["export", str(tmp_path / "o"), "--redis", redis_url, "--format", "csv", "-q"])
    assert r.exit_code == 0, r.output
    assert f"exported {len(syn.sessions)} sessions, {len(syn.history)} records" in r.stderr
    assert read_meta(tmp_path / "o")["format"] == "csv" and (tmp_path / "o" / "history.csv").exists()
    r = runner.invoke(app, ["export", str(tmp_path / "p"), "--redis", redis_url, "--flow", "refund",
                            "--since", "2026-10-01T03:00:00+00:00"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export", str(tmp_path / "q"), "--redis", redis_url, "--since", "whenever"])
    assert r.exit_code == 2 and "--since" in r.stderr


def test_analyze_engines_give_the_same_report(dirty: tuple[Synthetic, Path], v4_file: Path) -> None:
    syn, out = dirty
    reports = {}
    for engine in ("pandas", "duckdb", "auto"):
        r = runner.invoke(app, ["analyze", str(out), "--flows", str(EXAMPLE_FLOWS), str(v4_file), "-f", "json",
                                "--engine", engine])
        assert r.exit_code == 1, r.output
        reports[engine] = json.loads(r.stdout)
    assert [reports[e]["summary"].pop("engine") for e in reports] == ["pandas", "duckdb", "duckdb"]
    assert reports["pandas"] == reports["duckdb"] == reports["auto"]
    assert {(a["code"], a["session_id"], a["version"]) for a in reports["duckdb"]["anomalies"]} == set(syn.truth)
    r = runner.invoke(app, ["analyze", str(out), "--engine", "spark"])
    assert r.exit_code == 2 and "spark" in r.stderr
