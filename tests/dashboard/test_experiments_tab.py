"""The dashboard's Experiments tab on a real Redis: the table from live states, in
Streamlit's AppTest, and in the served page read by a headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flowkit.dashboard_experiments import live_experiments
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.sim import Persona, SimConfig, Simulator
from flowkit.store import Store
from tests.dashboard.browser import ROOT, browse, dashboard
from tests.dashboard.conftest import registered
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES

APP = str(ROOT / "dashboards" / "app.py")


def feedback_traffic(store: Store, users: int = 120) -> None:
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES)
    persona = Persona(invalid_rate=0.0, back_rate=0.0, cancel_rate=0.0, help_rate=0.0, abandon_rate=0.05,
                      variants={"long": {"abandon_rate": 0.5}})
    Simulator(rt, SimConfig(users=users, seed=3, flows=["feedback"], personas=(persona,))).run()
    registered(store.client)


def test_the_table_counts_the_states_per_variant(store: Store) -> None:
    feedback_traffic(store)
    states = list(store.iter_sessions())
    table = live_experiments(states, EXAMPLE_FLOWS)
    assert list(table["variant"]) == ["short", "long"] and set(table["split"]) == {"wording"}
    assert table["sessions"].sum() == 120
    for _, row in table.iterrows():
        mine = [s for s in states if s["slots"]["experiments"] == {"wording": row["variant"]}]
        assert row["sessions"] == len(mine)
        assert row["completed"] == sum(s["status"] == "completed" for s in mine)
    assert table.iloc[1]["completion_rate"] < table.iloc[0]["completion_rate"]
    assert table.iloc[1]["ci_low"] < table.iloc[1]["diff"] < table.iloc[1]["ci_high"]
    assert live_experiments(states, EXAMPLE_FLOWS, limit=10)["sessions"].sum() == 10
    assert live_experiments([], EXAMPLE_FLOWS).empty


def test_the_tab_renders_the_table(store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    feedback_traffic(store)
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [table] = at.table
    frame = table.value
    assert ("feedback", "wording", "long") in frame.index and frame.loc[("feedback", "wording", "short"), "sessions"] > 30
    at.button(key="experiments_refresh").click().run()
    assert not at.exception and len(at.table) == 1


def test_the_tab_without_experiments_says_so(redis_client: object, redis_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and not at.table


def test_the_served_tab_shows_the_variants_in_chromium(store: Store, redis_url: str, tmp_path: Path) -> None:
    feedback_traffic(store)
    with dashboard(redis_url, tmp_path / "dashboard.log") as (_, port), browse(f"http://127.0.0.1:{port}/") as page:
        text = page.text_until(lambda t: "wording" in t, timeout=60, tab="Experiments")
        page.screenshot(tmp_path / "experiments.png")
        assert "short" in text and "long" in text and "completion_rate" in text and "Traceback" not in text
