"""Flow analytics: exact numbers on a hand-made history, and numbers that add up on
synthetic ones (no negative drop-off, every journey ends at exactly one step)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from flowkit.history import analytics as an  # noqa: E402
from flowkit.history import plots  # noqa: E402
from flowkit.history._prep import prepare  # noqa: E402
from flowkit.history.flowset import FlowSet  # noqa: E402
from flowkit.history.synthetic import Synthetic  # noqa: E402
from tests.history.helpers import T0, frame, pizza_ok, rec  # noqa: E402

MIN = 60_000


@pytest.fixture
def small() -> pd.DataFrame:
    """Four order_pizza journeys: completed, expired at ask_size, still at ask_qty, cancelled."""
    a = pizza_ok("s1")  # v1..v5, completed
    b = [rec("s2", 1, None, ["welcome", "ask_size"], event="start"),
         rec("s2", 2, "ask_size", ["ask_size"], error="invalid_input:not_an_option"),
         rec("s2", 3, "ask_size", [], event="expire", status="expired", ts=T0 + 40 * MIN, message_id=None)]
    c = [rec("s3", 1, None, ["welcome", "ask_size"], event="start"), rec("s3", 2, "ask_size", ["upsell"]),
         rec("s3", 3, "upsell", ["ask_qty"])]
    d = [rec("s1", 6, None, ["welcome", "ask_size"], event="start", ts=T0 + 60 * MIN),
         rec("s1", 7, "ask_size", [], event="command", status="cancelled", ts=T0 + 61 * MIN)]
    return frame(a + d + b + c)


def test_funnel_exact(small: pd.DataFrame, flows: FlowSet) -> None:
    f = an.funnel(small, flows).set_index("step")
    assert f.loc["welcome", ["entered", "continued", "ended_here"]].tolist() == [4, 4, 0]
    assert f.loc["ask_size", ["entered", "continued", "dropped", "active_here"]].tolist() == [4, 2, 2, 0]
    assert f.loc["ask_size", "drop_off_rate"] == 0.5
    assert f.loc["ask_qty", ["entered", "continued", "ended_here", "active_here", "dropped"]].tolist() == [2, 1, 1, 1, 0]
    assert f.loc["done", ["entered", "completed_here"]].tolist() == [1, 1]
    assert f.loc["handoff", "entered"] == 0  # listed because the flow has it
    assert f.loc["upsell", "reach"] == 0.25
    assert list(f.index[:2]) == ["welcome", "ask_size"] and f.loc["done", "kind"] == "end"
    d = an.drop_off(small, flows)
    assert d[["step", "dropped"]].values.tolist() == [["ask_size", 2]]


def test_dwell_rates_retries_exact(small: pd.DataFrame, flows: FlowSet) -> None:
    dw = an.dwell(small).set_index("step")
    # ask_size: 1 min in each of s1's journeys (the second ends with "cancel"), 39 minutes
    # for s2 until the expiry (the re-prompt stays in the visit), 1 min for s3.
    assert dw.loc["ask_size", "visits"] == 4
    assert dw.loc["ask_size", "median_s"] == 60.0
    assert dw.loc["ask_size", "max_s"] == 39 * 60.0
    assert "upsell" in dw.index and "ask_qty" in dw.index  # s3 still waits at ask_qty: left out
    assert dw.loc["ask_qty", "visits"] == 1
    r = an.rates(small).set_index("flow")
    assert r.loc["order_pizza", ["journeys", "completed", "cancelled", "expired", "active"]].tolist() == [4, 1, 1, 1, 1]
    assert r.loc["order_pizza", "completion_rate"] == 0.25
    assert r.loc["order_pizza", "invalid_input_rate"] == pytest.approx(1 / 6)  # 6 answers, 1 invalid
    rt = an.retries(small, flows).set_index("step")
    assert rt.loc["ask_size", ["answers", "invalid", "journeys_with_retry", "max_in_row"]].tolist() == [3, 1, 1, 1]


def test_variants_and_dfg_exact(small: pd.DataFrame) -> None:
    v = an.variants(small)
    assert v["journeys"].sum() == 4 and v["share"].sum() == pytest.approx(1.0)
    top = v.iloc[0]
    assert top["variant"] == "welcome > ask_size" and top["journeys"] == 2
    g = an.dfg(small).set_index(["source", "target"])
    assert g.loc[("(start)", "welcome"), "count"] == 4
    assert g.loc[("ask_size", "ask_size"), "count"] == 1  # the retry
    assert g.loc[("ask_size", "(end: expired)"), "count"] == 1
    assert g.loc[("ask_qty", "(active)"), "count"] == 1
    assert an.dfg(small, collapse_retries=True).set_index(["source", "target"]).index.isin([("ask_size", "ask_size")]).sum() == 0
    j = an.journeys(small)
    assert len(j) == 4 and j["status"].astype(str).tolist().count("completed") == 1
    assert str(j["started"].dtype) == "datetime64[ms, UTC]"


def test_numbers_add_up_on_synthetic_histories(syn: Synthetic) -> None:
    p = prepare(syn.history)
    f = an.funnel(p, syn.flows)
    assert (f[["entered", "continued", "ended_here", "completed_here", "dropped", "active_here"]] >= 0).all().all()
    assert (f["entered"] == f["continued"] + f["ended_here"]).all()
    assert (f["ended_here"] == f["completed_here"] + f["dropped"] + f["active_here"]).all()
    assert f["reach"].between(0, 1).all() and f["drop_off_rate"].between(0, 1).all()
    j = an.journeys(p)
    per_flow = j.groupby("flow", observed=True).size()
    assert (f.groupby("flow")["ended_here"].sum() == per_flow.reindex(f["flow"].unique())).all()
    r = an.rates(p).set_index("flow")
    assert (r["journeys"] == per_flow.reindex(r.index)).all()
    statuses = ["completed", "failed", "cancelled", "handoff", "expired", "active"]
    assert (r[statuses].sum(axis=1) == r["journeys"]).all()
    v = an.variants(p, top=None)
    assert (v.groupby("flow")["journeys"].sum() == per_flow.reindex(v["flow"].unique())).all()
    g = an.dfg(p)
    starts = g[g["source"] == "(start)"].groupby("flow")["count"].sum()
    assert (starts == per_flow.reindex(starts.index)).all()
    ends = g[g["target"].str.startswith("(")].groupby("flow")["count"].sum()
    assert (ends == per_flow.reindex(ends.index)).all()
    d = an.dwell(p)
    assert (d["median_s"] >= 0).all() and (d["p90_s"] >= d["median_s"]).all()
    rt = an.retries(p, syn.flows)
    assert (rt["invalid"] <= rt["answers"]).all() and rt["retry_rate"].between(0, 1).all()
    assert set(an.summary(p, syn.flows)) == set(an.TABLES)


def test_empty_history_gives_empty_tables(flows: FlowSet) -> None:
    empty = frame([])
    for name in an.TABLES:
        fn = getattr(an, name)
        out = fn(empty, flows) if name in ("funnel", "drop_off", "retries") else fn(empty)
        assert len(out) == 0, name
    assert len(an.journeys(empty)) == 0


def test_heatmap_draws_traffic_and_drop_off(syn: Synthetic) -> None:
    flow = syn.flows.get("book_appointment")
    data = plots.heatmap_data(syn.history, flow, syn.flows)
    f = an.funnel(syn.history, syn.flows, flow="book_appointment").set_index("step")
    # Sub-flow steps are summed into the calling step.
    inner = f[f.index.str.startswith("contact/")]["dropped"].sum()
    assert data["nodes"]["contact"]["dropped"] == inner + f.loc["contact", "dropped"]
    assert data["nodes"]["greet"]["entered"] == f.loc["greet", "entered"]
    assert data["edges"][("greet", "ask_service")] >= f.loc["ask_service", "entered"]
    dot = plots.heatmap(syn.history, flow, syn.flows)
    src = dot.source
    assert f"in {int(f.loc['greet', 'entered']):,}" in src and "penwidth" in src and "lost" in src
    assert dot.pipe(format="svg").startswith(b"<?xml")
    assert plots.heat_colour(0) == "#ffffff" and plots.heat_colour(1) == "#d63031"


def test_plots_build(syn: Synthetic) -> None:
    import matplotlib.pyplot as plt

    for fn in (plots.plot_funnel, plots.plot_dropoff):
        ax = fn(syn.history, "order_pizza", syn.flows)
        assert ax.get_title().startswith("order_pizza")
        plt.close(ax.figure)
    ax = plots.plot_dwell(syn.history, "order_pizza")
    assert len(ax.patches) > 0
    plt.close(ax.figure)
    fig = plots.funnel_figure(syn.history, "order_pizza", syn.flows)
    assert list(fig.data[0].x)[0] == an.funnel(syn.history, syn.flows, flow="order_pizza")["entered"].iloc[0]
    s = plots.sankey(syn.history, "order_pizza")
    assert np.sum(s.data[0].link.value) > 0
