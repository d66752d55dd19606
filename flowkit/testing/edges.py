"""The edges of a flow graph, and which of them one stored history record traverses.

:func:`flow_edges` lists the edges coverage counts; :func:`record_moves` reads a record's
``from_step`` and ``path`` back into edges (and the moves that are no edge at all), so the
stored history, not the engine's word, says what a conversation covered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowkit.errors import EngineError, UnknownFlowError
from flowkit.flow.graph import edge_list, handoff_targets
from flowkit.flow.model import EndStep, Flow, FlowStep
from flowkit.runtime.registry import FlowRegistry

FAULT_LABELS = ("retry", "on_fail", "on_error", "on_timeout")


@dataclass(frozen=True)
class Edge:
    """One edge of a flow graph: ``label`` is ``next``, ``if <cond>``, ``retry``, ``on_fail``,
    ``on_error``, ``on_timeout`` or ``return`` (as in :func:`flowkit.flow.graph.edge_list`)."""

    flow: str
    source: str
    target: str
    label: str

    def __str__(self) -> str:
        return f"{self.flow}: {self.source} -> {self.target} [{self.label}]"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)




def flow_edges(flow: Flow) -> list[Edge]:
    """Every edge of ``flow`` (one per label; targets that do not exist left out)."""
    seen: dict[Edge, None] = {}
    for row in edge_list(flow):
        if row["target"] in flow.steps:
            seen[Edge(flow.name, row["source"], row["target"], row["label"])] = None
    return list(seen)


def split_step(qualified: str) -> tuple[tuple[str, ...], str]:
    parts = qualified.split("/")
    return tuple(parts[:-1]), parts[-1]


def owner_flow(root: Flow, prefix: tuple[str, ...], registry: FlowRegistry) -> Flow:
    flow = root
    for part in prefix:
        st = flow.steps.get(part)
        if not isinstance(st, FlowStep):
            raise EngineError(f"{part!r} is not a sub-flow step of flow {flow.name!r}")
        flow = registry.latest(st.flow)
    return flow


def record_moves(root: Flow, record: Mapping[str, Any], registry: FlowRegistry) -> tuple[list[Edge], list[str]]:
    """The graph edges one history record traverses, and the moves that are no edge at all.

    (Where two conditional branches of one step lead to the same target, the move is
    counted for the first of them: a record does not say which condition held.)

    Pairs of ``[from_step] + path`` are read with the record's event and error: a
    re-entered ask step after invalid input is ``retry``, the first move after a deadline
    is ``on_timeout`` (``on_error`` for a call step without one), after a service error
    ``on_error``, after too many invalid answers ``on_fail``; leaving a sub-flow through an
    end step is the calling step's ``return`` (completed) or ``on_fail``.
    """
    if record.get("event") not in ("start", "message", "service_result", "timeout"):
        return [], []  # commands (back, restart), admin and recovery moves are not graph edges
    seq = ([record["from_step"]] if record.get("from_step") else []) + list(record.get("path") or [])
    error = str(record.get("error") or "")
    event = record.get("event")
    edges: list[Edge] = []
    illegal: list[str] = []
    for i, (a, b) in enumerate(zip(seq, seq[1:], strict=False)):
        first = i == 0 and bool(record.get("from_step"))
        pa, la = split_step(a)
        pb, lb = split_step(b)
        try:
            if pb == (*pa, la):
                continue  # entering a sub-flow at its start: a call, not an edge
            if pa == pb:
                flow = owner_flow(root, pa, registry)
                labels = [lab for lab, t in [*flow.steps[la].targets(), *handoff_targets(flow, la)] if t == lb]
                label = _pick(labels, first=first, event=event, error=error, same=a == b)
                src = la
            elif len(pb) < len(pa) and pa[:len(pb)] == pb:
                flow = owner_flow(root, pb, registry)
                src = pa[len(pb)]
                child = owner_flow(root, pa, registry)
                end = child.steps.get(la)
                completed = isinstance(end, EndStep) and end.end == "completed"
                labels = [lab for lab, t in flow.steps[src].targets() if t == lb]
                label = (next((x for x in labels if x != "on_fail"), None) if completed
                         else ("on_fail" if "on_fail" in labels else None))
            else:
                label, flow, src = None, root, a
        except (EngineError, UnknownFlowError, KeyError):
            label, flow, src = None, root, a
        if label is None:
            illegal.append(f"{a} -> {b}")
        else:
            edges.append(Edge(flow.name, src, lb, label))
    return edges, illegal


def _pick(labels: list[str], *, first: bool, event: Any, error: str, same: bool) -> str | None:
    if not labels:
        return None
    if first and event == "timeout":
        for lab in ("on_timeout", "on_error"):
            if lab in labels:
                return lab
    if first and error.startswith("service_error") and "on_error" in labels:
        return "on_error"
    if first and error.startswith("invalid_input"):
        if same and "retry" in labels:
            return "retry"
        if "on_fail" in labels:
            return "on_fail"
    plain = [lab for lab in labels if lab not in FAULT_LABELS]
    return plain[0] if plain else None

