"""Draw a flow with graphviz. The drawing is a view of the model (``to_networkx``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import graphviz

from flowkit.flow.graph import to_networkx
from flowkit.flow.model import Flow

if TYPE_CHECKING:
    import networkx as nx

# Colours per step kind: calm for talking, warm for waiting on the outside world.
KIND_STYLE: Mapping[str, dict[str, str]] = {
    "say": {"shape": "box", "fillcolor": "#e8f1fb"},
    "ask": {"shape": "box", "fillcolor": "#fff4d6", "style": "rounded,filled"},
    "set": {"shape": "box", "fillcolor": "#eeeeee"},
    "branch": {"shape": "diamond", "fillcolor": "#f3e8fb"},
    "call": {"shape": "component", "fillcolor": "#ffe3d6"},
    "flow": {"shape": "box3d", "fillcolor": "#e0f5ee"},
    "end": {"shape": "doubleoctagon", "fillcolor": "#d9f2d9"},
    "split": {"shape": "trapezium", "fillcolor": "#dbe9ff"},
}
END_COLOURS = {"completed": "#c8ecc8", "failed": "#f8c9c9", "cancelled": "#e6e6e6", "handoff": "#fde3b0"}
EDGE_STYLE = {
    "retry": {"style": "dashed", "color": "#999999"},
    "on_fail": {"color": "#c0392b"},
    "on_error": {"color": "#c0392b"},
    "on_timeout": {"color": "#d68910", "style": "dashed"},
    "return": {"color": "#16a085"},
    "variant": {"color": "#2e6fd8", "style": "bold"},
}


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _label(*lines: str) -> str:
    """A DOT label from lines of plain text: backslashes and quotes in flow texts are
    text (not DOT escapes like \\N or \\l), lines break with DOT's ``\\n``, and a text
    that looks like ``<html>`` stays text."""
    parts = [part for line in lines for part in str(line).split("\n")]
    label: str = graphviz.nohtml("\\n".join(p.replace("\\", "\\\\").replace('"', '\\"') for p in parts))
    return label  # (a NoHtml str: graphviz then leaves a text like "<b>" alone)


def render(flow: Flow, *, node_labels: Mapping[str, str] | None = None, node_colours: Mapping[str, str] | None = None,
           edge_labels: Mapping[tuple[str, str], str] | None = None, edge_widths: Mapping[tuple[str, str], float] | None = None) -> graphviz.Digraph:
    """The flow as a ``graphviz.Digraph`` (shows inline in Jupyter).

    The optional mappings let analyses draw on top of the flow: extra node text (traffic,
    drop-off), node fill colours (a heatmap), edge labels and pen widths.
    """
    g = to_networkx(flow)
    dot = graphviz.Digraph(name=flow.name, comment=f"{flow.name} {flow.version_id}")
    dot.attr(rankdir="TB", fontname="Helvetica", label=_label(f"{flow.name} (version {flow.version_id})"), labelloc="t")
    dot.attr("node", fontname="Helvetica", fontsize="11", style="filled")
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    dot.node("__start__", "", shape="circle", width="0.2", fillcolor="black")
    dot.edge("__start__", flow.start)
    _add_nodes(dot, g, node_labels, node_colours)
    _add_edges(dot, g, edge_labels, edge_widths)
    return dot


def _add_nodes(dot: graphviz.Digraph, g: nx.DiGraph, node_labels: Mapping[str, str] | None,
               node_colours: Mapping[str, str] | None) -> None:
    """One box per step: its name, kind and text, styled by kind (an end by how it ends)."""
    for name, data in g.nodes(data=True):
        style = dict(KIND_STYLE.get(data["kind"], {}))
        if data["kind"] == "end" and data["end"] in END_COLOURS:
            style["fillcolor"] = END_COLOURS[data["end"]]
        if node_colours and name in node_colours:
            style["fillcolor"] = node_colours[name]
        lines = [name, f"[{data['kind']}{': ' + data['end'] if data['end'] else ''}]"]
        if data["text"] and data["kind"] != "end":
            lines.append(_short(data["text"]))
        if node_labels and name in node_labels:
            lines.append(str(node_labels[name]))
        dot.node(name, _label(*lines), **style)


def _add_edges(dot: graphviz.Digraph, g: nx.DiGraph, edge_labels: Mapping[tuple[str, str], str] | None,
               edge_widths: Mapping[tuple[str, str], float] | None) -> None:
    """One arrow per pair of steps, styled by its kinds, with the analysis' labels and widths."""
    for a, b, data in g.edges(data=True):
        attrs: dict[str, str] = {}
        for kind in data["kinds"]:
            attrs.update(EDGE_STYLE.get(kind, {}))
        label = data["label"]
        if edge_labels and (a, b) in edge_labels:
            label = f"{label}\n{edge_labels[(a, b)]}" if label not in ("next", "retry") else edge_labels[(a, b)]
        elif label == "next":
            label = ""
        if edge_widths and (a, b) in edge_widths:
            attrs["penwidth"] = f"{edge_widths[(a, b)]:.2f}"
        dot.edge(a, b, label=_label(_short(label, 60)), **attrs)


def render_to_file(flow: Flow, out: str | Path, **kwargs: object) -> Path:
    """Write the drawing to ``out``; the format comes from the suffix (svg, png, pdf, dot)."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "svg"
    dot = render(flow, **kwargs)  # type: ignore[arg-type]  # (options are passed through as given)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        out.write_text(dot.source, encoding="utf-8")
        return out
    out.write_bytes(dot.pipe(format=fmt))
    return out
