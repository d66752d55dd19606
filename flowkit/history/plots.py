"""Pictures of flow analytics: matplotlib charts, plotly figures, and the flow drawn as a
heatmap of traffic and drop-off with graphviz.

The heatmap is the flow's own drawing (:func:`flowkit.flow.render.render`) with the
numbers on top: each step shows how many journeys entered it and how many were lost
there, its fill goes from white to red with the drop-off rate, and each edge is labelled
with and drawn as thick as the traffic along it. Steps inside a sub-flow are summed into
the calling step, because the drawing shows the root flow.

matplotlib and plotly are imported when a function needs them (they are the
``dashboard`` extra), so ``flowkit.history`` imports without them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from flowkit.flow.model import Flow
from flowkit.flow.render import render
from flowkit.history._prep import Prepared
from flowkit.history.analytics import START_NODE, dfg, dwell, funnel

HEAT_LOW = (255, 255, 255)
HEAT_HIGH = (214, 48, 49)


def heat_colour(rate: float, low: tuple[int, int, int] = HEAT_LOW, high: tuple[int, int, int] = HEAT_HIGH) -> str:
    """``#rrggbb`` between ``low`` (rate 0) and ``high`` (rate 1)."""
    r = min(max(float(rate), 0.0), 1.0)
    return "#" + "".join(f"{round(a + (b - a) * r):02x}" for a, b in zip(low, high, strict=True))


def _root(step: str) -> str:
    return step.split("/", 1)[0]


def heatmap_data(history: pd.DataFrame | Prepared, flow: Flow, flows: Any = None) -> dict[str, Any]:
    """The numbers :func:`heatmap` draws: per root step entered/dropped/rate, per edge traffic."""
    f = funnel(history, flows if flows is not None else [flow], flow=flow.name)
    f = f.assign(root=f["step"].map(_root))
    # A journey inside a sub-flow entered its calling step; drops inside it count there.
    entered = f[f["step"] == f["root"]].set_index("root")["entered"]
    dropped = f.groupby("root")["dropped"].sum()
    d = dfg(history, flow=flow.name)
    edges: dict[tuple[str, str], int] = {}
    for r in d.itertuples(index=False):
        a, b = str(r.source), str(r.target)
        if a == START_NODE or b.startswith("("):
            continue
        ra, rb = _root(a), _root(b)
        if ra == rb and not (a == b and "/" not in a):
            continue  # moves inside a sub-flow; only true retries stay as self-edges
        edges[(ra, rb)] = edges.get((ra, rb), 0) + int(r.count)
    nodes = {}
    for step in flow.steps:
        e = int(entered.get(step, 0))
        dr = int(dropped.get(step, 0))
        nodes[step] = {"entered": e, "dropped": dr, "drop_off_rate": dr / e if e else 0.0}
    return {"nodes": nodes, "edges": edges, "journeys": int(f.loc[f["step"] == flow.start, "entered"].sum())}


def heatmap(history: pd.DataFrame | Prepared, flow: Flow, flows: Any = None, *, max_width: float = 8.0) -> Any:
    """The flow as a ``graphviz.Digraph`` with traffic and drop-off drawn on it (shows inline
    in Jupyter; ``.pipe(format="svg")`` or ``.render()`` to save)."""
    data = heatmap_data(history, flow, flows)
    nodes, edges = data["nodes"], data["edges"]
    labels = {}
    colours = {}
    for step, n in nodes.items():
        if n["entered"] == 0:
            labels[step] = "no traffic"
            colours[step] = "#f4f4f4"
            continue
        labels[step] = f"in {n['entered']:,}" + (f" · lost {n['dropped']:,} ({n['drop_off_rate']:.0%})" if n["dropped"] else "")
        if flow.steps[step].kind != "end":
            colours[step] = heat_colour(n["drop_off_rate"] * 2)  # 50% lost is already deep red
    top = max(edges.values(), default=0)
    edge_labels = {k: f"{v:,}" for k, v in edges.items()}
    widths = {k: 1.0 + (max_width - 1.0) * v / top for k, v in edges.items()} if top else {}
    return render(flow, node_labels=labels, node_colours=colours, edge_labels=edge_labels, edge_widths=widths)


# ---------------------------------------------------------------- matplotlib


def _plt() -> Any:
    import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

    return plt


def plot_funnel(history: pd.DataFrame | Prepared, flow: str, flows: Any = None, *, ax: Any = None) -> Any:
    """Horizontal bars per step: journeys that entered it, with the part lost there in red.
    Returns the matplotlib Axes."""
    plt = _plt()
    f = funnel(history, flows, flow=flow)
    f = f[f["entered"] > 0].iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(f) + 1)))
    ax.barh(f["step"], f["entered"], color="#74a9cf", label="entered")
    ax.barh(f["step"], f["dropped"], color="#d63031", label="lost here")
    ax.set_xlabel("journeys")
    ax.set_title(f"{flow}: funnel")
    ax.legend(loc="lower right")
    return ax


def plot_dropoff(history: pd.DataFrame | Prepared, flow: str, flows: Any = None, *, ax: Any = None) -> Any:
    """Drop-off rate per step (matplotlib Axes)."""
    plt = _plt()
    f = funnel(history, flows, flow=flow)
    f = f[(f["entered"] > 0) & (f["kind"] != "end")]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(f["step"], f["drop_off_rate"] * 100, color=[heat_colour(r * 2) for r in f["drop_off_rate"]], edgecolor="#555")
    ax.set_ylabel("% of journeys lost")
    ax.set_title(f"{flow}: drop-off per step")
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def plot_dwell(history: pd.DataFrame | Prepared, flow: str, *, ax: Any = None) -> Any:
    """Median and p90 seconds at each waiting step (matplotlib Axes, log scale)."""
    plt = _plt()
    d = dwell(history, flow=flow).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(d) + 1)))
    ax.barh(d["step"], d["p90_s"], color="#fdcb6e", label="p90")
    ax.barh(d["step"], d["median_s"], color="#e17055", label="median")
    if len(d) and (d["p90_s"] > 0).any():
        ax.set_xscale("log")
    ax.set_xlabel("seconds at the step")
    ax.set_title(f"{flow}: dwell time")
    ax.legend(loc="lower right")
    return ax


# ---------------------------------------------------------------- plotly


def funnel_figure(history: pd.DataFrame | Prepared, flow: str, flows: Any = None) -> Any:
    """A plotly funnel of the steps journeys entered (graph order)."""
    import plotly.graph_objects as go

    f = funnel(history, flows, flow=flow)
    f = f[(f["entered"] > 0) & (f["kind"] != "end")]
    fig = go.Figure(go.Funnel(y=list(f["step"]), x=list(f["entered"]), textinfo="value+percent initial"))
    fig.update_layout(title=f"{flow}: funnel")
    return fig


def sankey(history: pd.DataFrame | Prepared, flow: str, *, min_count: int = 1) -> Any:
    """The directly-follows graph as a plotly Sankey diagram (retries left out: a Sankey
    cannot draw a step flowing into itself)."""
    import plotly.graph_objects as go

    d = dfg(history, flow=flow, collapse_retries=True)
    d = d[(d["source"] != d["target"]) & (d["count"] >= min_count)]
    labels = sorted(set(d["source"]) | set(d["target"]))
    index = {n: i for i, n in enumerate(labels)}
    fig = go.Figure(go.Sankey(
        node={"label": labels, "pad": 12},
        link={"source": [index[s] for s in d["source"]], "target": [index[t] for t in d["target"]],
              "value": [int(c) for c in d["count"]]},
    ))
    fig.update_layout(title=f"{flow}: paths")
    return fig
