"""Experiments end to end on real parts: the simulator drives users through the real
runtime on a real Redis, personas behave differently per variant, the store is exported,
and the experiments table finds a real difference and does not find a null one.

Seeds and sizes are fixed, so the outcomes are deterministic (the simulator is seeded and
the engine assigns variants from a hash of the session id)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flowkit.history.columns import read_history
from flowkit.history.experiments import MIN_JOURNEYS, assignments, compare, experiment_results
from flowkit.history.export import export_store
from flowkit.history.flowset import FlowSet
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.sim import Persona, SimConfig, Simulator
from flowkit.store import Store, connect
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "examples" / "flows"


def calm(abandon_rate: float, variants: Mapping[str, Mapping[str, float]] | None = None) -> Persona:
    """A user who only ever answers validly, or leaves."""
    return Persona(invalid_rate=0.0, back_rate=0.0, cancel_rate=0.0, help_rate=0.0, abandon_rate=abandon_rate,
                   variants=variants or {})


def run_experiment(store: Store, out: Path, persona: Persona, users: int, seed: int) -> pd.DataFrame:
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES)
    res = Simulator(rt, SimConfig(users=users, seed=seed, flows=["feedback"], personas=(persona,))).run()
    assert res.users == users
    export_store(store, out)
    return read_history(out)


@dataclass(frozen=True)
class Run:
    export: Path
    recorded: dict[str, Any]  # session id -> its state's experiments slot, read right after the run


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Run:
    """Users abandon the long wording far more often (0.45) than the short one (0.05)."""
    client = connect(redis_url)
    try:
        client.flushall()
        store = Store(client)
        out = tmp_path_factory.mktemp("ab") / "export"
        run_experiment(store, out, calm(0.05, {"long": {"abandon_rate": 0.45}}), 400, 7)
        recorded = {sid: (store.load(sid) or {}).get("slots", {}).get("experiments") for sid in store.iter_session_ids()}
    finally:
        client.close()
    return Run(out, recorded)


@pytest.fixture
def real_difference(ab: Run) -> Path:
    return ab.export


def test_a_real_difference_is_detected(real_difference: Path) -> None:
    df = experiment_results(read_history(real_difference), FlowSet.load(FLOWS))
    assert list(df["variant"]) == ["short", "long"] and set(df["split"]) == {"wording"}
    short, long = df.iloc[0], df.iloc[1]
    assert short["journeys"] + long["journeys"] == 400 and min(short["journeys"], long["journeys"]) > 150
    assert short["metric"] == "completion" and pd.isna(short["p_value"])  # the control is what others compare with
    assert long["completion_rate"] < short["completion_rate"] - 0.2
    assert long["diff"] == pytest.approx(long["completion_rate"] - short["completion_rate"])
    assert long["p_value"] < 0.001 and long["ci_high"] < 0 and long["ci_low"] < long["diff"] < long["ci_high"]
    assert bool(long["significant"]) and long["warning"] == "" and short["warning"] == ""


def test_the_variant_read_from_history_is_the_one_the_engine_recorded(ab: Run) -> None:
    a = assignments(read_history(ab.export), FlowSet.load(FLOWS))
    assert len(a) == 400 and a["journey"].is_unique and len(ab.recorded) == 400
    for _, r in a.iterrows():
        assert ab.recorded[r["session_id"]] == {"wording": r["variant"]}
        assert ("ask_long" if r["variant"] == "long" else "ask_short") in r["steps"]


def test_the_variant_a_record_names_is_the_one_analytics_reads(ab: Run) -> None:
    # the split's record carries its variant (why.splits): analytics takes it from there, so an
    # A/A test with shared gotos or changed weights needs no re-computation of the assignment
    history = read_history(ab.export)
    told = history["why"].fillna("").str.contains('"splits"')
    assert told.sum() == 400
    sid = history.loc[told, "session_id"].iloc[0]
    before = assignments(history, FlowSet.load(FLOWS)).set_index("session_id").loc[sid, "variant"]
    other = "long" if before == "short" else "short"
    row = history.index[told & (history["session_id"] == sid)][0]
    history.loc[row, "why"] = history.loc[row, "why"].replace(f'"variant":"{before}"', f'"variant":"{other}"')
    assert assignments(history, FlowSet.load(FLOWS)).set_index("session_id").loc[sid, "variant"] == other


def test_a_null_difference_is_not_detected(store: Store, tmp_path: Path) -> None:
    """A/A: both variants behave alike (the persona has no per-variant change)."""
    history = run_experiment(store, tmp_path / "aa", calm(0.2), 400, 8)
    df = experiment_results(history, FlowSet.load(FLOWS))
    long = df.iloc[1]
    assert long["p_value"] > 0.05 and long["ci_low"] < 0 < long["ci_high"] and not bool(long["significant"])


def test_conversion_to_a_goal_step(real_difference: Path) -> None:
    df = experiment_results(read_history(real_difference), FlowSet.load(FLOWS), goal="follow_up")
    assert set(df["metric"]) == {"conversion to follow_up"} and set(df["goal"]) == {"follow_up"}
    assert (df["converted"] <= df["completed"]).all() and (df["converted"] > 0).all()
    assert df["conversion_rate"].tolist() == pytest.approx((df["converted"] / df["journeys"]).tolist())
    assert df.iloc[1]["diff"] == pytest.approx(df.iloc[1]["conversion_rate"] - df.iloc[0]["conversion_rate"])


def test_small_samples_are_flagged(real_difference: Path) -> None:
    history = read_history(real_difference)
    few = history[history["session_id"].isin(sorted(set(history["session_id"]))[:40])]
    df = experiment_results(few, FlowSet.load(FLOWS))
    assert all(n < MIN_JOURNEYS for n in df["journeys"])
    assert all(w.startswith("small sample") for w in df["warning"])


def test_comparisons_without_variation_or_journeys_say_so() -> None:
    same = compare(50, 50, 40, 40)
    assert same.diff == 0 and pd.isna(same.p_value) and "no variation" in same.warning
    empty = compare(0, 0, 3, 40)
    assert pd.isna(empty.diff) and empty.warning == "no journeys to compare"
    rare = compare(1, 40, 2, 40)
    assert "expected count below 5" in rare.warning and 0 < rare.p_value < 1


def test_the_cli_table_and_its_json(real_difference: Path) -> None:
    flowkit = str(Path(sys.executable).parent / "flowkit")
    r = subprocess.run([flowkit, "analytics", str(real_difference), "--flows", str(FLOWS), "-t", "experiments",
                        "--goal", "follow_up", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    assert [x["variant"] for x in rows] == ["short", "long"] and rows[0]["p_value"] is None
    assert rows[1]["metric"] == "conversion to follow_up" and 0 <= rows[1]["p_value"] <= 1
    text = subprocess.run([flowkit, "analytics", str(real_difference), "--flows", str(FLOWS), "-t", "experiments"],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "wording" in text.stdout and "p_value" in text.stdout


@pytest.mark.parametrize(("args", "message"), [
    ([], "needs the flow files"),
    (["--flows", str(FLOWS), "--goal", "nowhere"], "--goal 'nowhere' is not a step"),
    (["--flows", str(FLOWS), "--engine", "dask"], "runs on --engine pandas"),
])
def test_cli_mistakes_get_a_clear_error(real_difference: Path, args: list[str], message: str) -> None:
    r = subprocess.run([str(Path(sys.executable).parent / "flowkit"), "analytics", str(real_difference),
                        "-t", "experiments", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_a_history_without_splits_gives_an_empty_table_with_the_columns() -> None:
    from flowkit.history.columns import empty_frame
    from flowkit.history.experiments import COLUMNS

    df = experiment_results(empty_frame("history"), FlowSet.load(FLOWS))
    assert df.empty and tuple(df.columns) == COLUMNS
