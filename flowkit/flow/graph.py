"""A flow as a graph (networkx), and the questions analysts ask of it.

The graph is a *view* of the model, never a second source of truth: edges come only
from ``next``, ``on_fail``, ``on_error``, ``on_timeout``, sub-flow return and the retry
self-edge of ``ask`` steps (docs/design.md, "Flow files").
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import networkx as nx

from flowkit.flow.model import AskStep, CallStep, EndStep, Flow, FlowStep, SayStep, SplitStep, Step

EDGE_KINDS = ("next", "branch", "retry", "on_fail", "on_error", "on_timeout", "return", "on_undeliverable", "variant")


def _summary(step: Step) -> str:
    if isinstance(step, SayStep) and step.say.text is not None:
        return step.say.text.source
    if isinstance(step, AskStep) and step.ask.text is not None:
        return step.ask.text.source
    if isinstance(step, CallStep):
        return step.call
    if isinstance(step, FlowStep):
        return f"sub-flow {step.flow}"
    if isinstance(step, EndStep):
        return step.end
    if isinstance(step, SplitStep):
        return " / ".join(f"{v.name} {v.weight}" for v in step.split)
    return ""


def _edge_kind(label: str) -> str:
    if label.startswith("variant "):  # a split's arm (SplitStep.targets)
        return "variant"
    return "branch" if label.startswith("if ") else label


def to_networkx(flow: Flow) -> nx.DiGraph:
    """The flow as a DiGraph.

    Nodes carry ``kind`` (say, ask, set, branch, call, flow, end), ``start``, ``end``
    (the end status or None), ``waits`` and ``text``. Edges carry ``labels`` (every label of
    that pair, e.g. ``["on_error", "on_timeout"]``), ``label`` (joined) and ``kinds``.
    Targets that do not exist are left out (validation reports them).
    """
    g = nx.DiGraph(name=flow.name, version=flow.version_id)
    for name, step in flow.steps.items():
        g.add_node(
            name,
            kind=step.kind,
            start=name == flow.start,
            end=step.end if isinstance(step, EndStep) else None,
            waits=step.waits,
            text=_summary(step),
        )
    for name, step in flow.steps.items():
        for label, target in step.targets():
            if target not in flow.steps:
                continue
            if g.has_edge(name, target):
                data = g.edges[name, target]
                if label not in data["labels"]:
                    data["labels"].append(label)
                    data["kinds"].append(_edge_kind(label))
                    data["label"] = " | ".join(data["labels"])
            else:
                g.add_edge(name, target, labels=[label], kinds=[_edge_kind(label)], label=label)
    for name in flow.steps:
        for label, target in handoff_targets(flow, name):
            if not g.has_edge(name, target):
                g.add_edge(name, target, labels=[label], kinds=[label], label=label)
    return g


def handoff_targets(flow: Flow, name: str) -> list[tuple[str, str]]:
    """The flow-level edges of step ``name``: an idle hand-off (an ``end: handoff`` step) comes
    back to the bot at ``handoff.on_timeout`` (docs/handoff.md). So may a sub-flow step: a
    hand-off inside the sub-flow is held at the root, whose policy then applies."""
    step = flow.steps.get(name)
    if flow.handoff is None or flow.handoff.on_timeout not in flow.steps:
        return []
    if (isinstance(step, EndStep) and step.end == "handoff") or isinstance(step, FlowStep):
        return [("on_timeout", flow.handoff.on_timeout)]
    return []


def edge_set(flow: Flow) -> frozenset[tuple[str, str]]:
    """Every (from, to) step pair the flow allows, retry self-edges included."""
    return frozenset((a, b) for a, b in to_networkx(flow).edges)


def end_steps(flow: Flow) -> list[str]:
    return [n for n, s in flow.steps.items() if isinstance(s, EndStep)]


def reachable(flow: Flow) -> set[str]:
    """Steps reachable from the start step (the start included)."""
    g = to_networkx(flow)
    if flow.start not in g:
        return set()
    return {flow.start} | set(nx.descendants(g, flow.start))


def unreachable(flow: Flow) -> list[str]:
    seen = reachable(flow)
    return [n for n in flow.steps if n not in seen]


def _progress_graph(flow: Flow) -> nx.DiGraph:
    """The graph without retry self-edges: the moves that make progress."""
    g = to_networkx(flow)
    g.remove_edges_from([(a, b) for a, b, d in g.edges(data=True) if a == b and d["labels"] == ["retry"]])
    return g


def dead_ends(flow: Flow) -> list[str]:
    """Steps from which no end step can be reached (the session would be stuck forever)."""
    g = _progress_graph(flow)
    ends = set(end_steps(flow))
    can_finish: set[str] = set(ends)
    for e in ends:
        can_finish |= nx.ancestors(g, e)
    return [n for n in flow.steps if n not in can_finish]


def loops_without_exit(flow: Flow) -> list[list[str]]:
    """Cycles (strongly connected groups) from which no end step can be reached."""
    g = _progress_graph(flow)
    stuck = set(dead_ends(flow))
    out = []
    for comp in nx.strongly_connected_components(g):
        if not comp <= stuck:
            continue
        if len(comp) > 1 or any(g.has_edge(n, n) for n in comp):
            out.append([n for n in flow.steps if n in comp])
    return out


def simple_paths(flow: Flow, *, limit: int = 1000, cutoff: int | None = None) -> list[list[str]]:
    """Up to ``limit`` simple paths from the start step to any end step, shortest first.

    Retry self-edges are left out (a path never repeats a step). ``cutoff`` keeps only
    paths of at most that many moves (steps minus one).
    """
    g = _progress_graph(flow)
    ends = end_steps(flow)
    if flow.start not in g or not ends:
        return []
    sink = ("__end__",)
    h = g.copy()
    h.add_edges_from((e, sink) for e in ends)

    def paths() -> Iterator[list[str]]:
        # shortest first; with a cutoff, stop at the first path with more than `cutoff` moves
        try:
            for p in nx.shortest_simple_paths(h, flow.start, sink):
                if cutoff is not None and len(p) - 2 > cutoff:
                    return
                yield p
        except nx.NetworkXNoPath:
            return

    return [p[:-1] for p in islice(paths(), limit)]


def shortest_path_to_end(flow: Flow, source: str | None = None) -> list[str] | None:
    """The fewest steps from ``source`` (default: start) to an end step, or None."""
    paths = simple_paths(flow, limit=1) if source in (None, flow.start) else None
    if paths is not None:
        return paths[0] if paths else None
    g = _progress_graph(flow)
    best: list[str] | None = None
    for e in end_steps(flow):
        try:
            p = nx.shortest_path(g, source, e)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            continue
        if best is None or len(p) < len(best):
            best = p
    return best


def edge_list(flow: Flow) -> list[dict[str, Any]]:
    """One row per (edge, label): ``{source, target, label, kind}``, in definition order."""
    rows = []
    for name, step in flow.steps.items():
        for label, target in [*step.targets(), *handoff_targets(flow, name)]:
            rows.append({"source": name, "target": target, "label": label, "kind": _edge_kind(label)})
    return rows


def graph_json(flow: Flow) -> dict[str, Any]:
    """Nodes and edges as plain data (``flowkit graph --format json``)."""
    g = to_networkx(flow)
    return {
        "flow": flow.name,
        "version": flow.version_id,
        "content_hash": flow.content_hash,
        "start": flow.start,
        "nodes": [{"id": n, **{k: v for k, v in d.items()}} for n, d in g.nodes(data=True)],
        "edges": [e for e in edge_list(flow) if e["target"] in flow.steps],
    }
