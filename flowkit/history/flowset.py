"""The flows an analysis reads histories against: every version of every flow, and each
root flow version's graph with its sub-flows expanded.

History names steps inside sub-flows ``callingstep/childstep`` and pins ``flow`` /
``flow_version`` to the root flow (docs/decisions.md), so one session's records read
against one *expanded* graph per root flow version:

- the root flow's own edges, except those out of ``flow`` steps (a session never moves
  from a flow step straight to its target: it goes through the sub-flow);
- ``flowstep -> flowstep/childstart``;
- the child's edges, qualified with ``flowstep/`` (recursively for nested sub-flows);
- ``flowstep/childend -> target`` for each target of the flow step: its ``next`` targets
  after a ``completed`` end, its ``on_fail`` after any other end (what the engine does in
  ``return_from_subflow``).

A sub-flow is expanded at its latest loaded version, as the engine resolves it when a
session enters the flow step (the history does not record the child's version).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from flowkit.errors import FlowError, Problem, UnknownFlowError
from flowkit.flow.graph import handoff_targets
from flowkit.flow.loader import flow_files, load_flow
from flowkit.flow.model import AskStep, EndStep, Flow, FlowStep, Step

MAX_DEPTH = 8  # sub-flows calling sub-flows; deeper means a cycle the loader should have refused


@dataclass(frozen=True)
class FlowGraph:
    """One root flow version with sub-flows expanded: qualified step names and the allowed moves."""

    flow: str
    version: str
    start: str
    steps: Mapping[str, Step]  # qualified name -> step (of whichever flow it belongs to)
    edges: frozenset[tuple[str, str]]

    @cached_property
    def nodes(self) -> frozenset[str]:
        return frozenset(self.steps)

    @cached_property
    def ask_steps(self) -> frozenset[str]:
        return frozenset(n for n, s in self.steps.items() if isinstance(s, AskStep))

    def kind(self, step: str) -> str | None:
        s = self.steps.get(step)
        return s.kind if s is not None else None

    def root_step(self, step: str) -> str:
        """The root-level step a qualified step belongs to (``contact/ask_email`` -> ``contact``)."""
        return step.split("/", 1)[0]


def _expand(flow: Flow, resolve: Any, prefix: str, depth: int,
            steps: dict[str, Step], edges: set[tuple[str, str]], held_timeout: str | None = None) -> None:
    """``held_timeout``: where the root's hand-off policy sends an idle hand-off (qualified):
    a hand-off anywhere below is held at the root, so its timeout goes there."""
    if depth > MAX_DEPTH:
        raise FlowError(Problem(flow.source, flow.loc.line, flow.loc.column, "subflow-depth",
                                f"sub-flows nest deeper than {MAX_DEPTH} levels under {prefix!r}; is there a cycle?"))

    def q(name: str) -> str:
        return f"{prefix}{name}"

    for name, st in flow.steps.items():
        steps[q(name)] = st
    for name, st in flow.steps.items():
        if isinstance(st, FlowStep):
            _expand_subflow(flow, name, st, resolve, prefix, depth, steps, edges, held_timeout)
            continue
        for _label, target in [*st.targets(), *handoff_targets(flow, name)]:
            if target in flow.steps:
                edges.add((q(name), q(target)))


def _expand_subflow(flow: Flow, name: str, st: FlowStep, resolve: Any, prefix: str, depth: int,
                    steps: dict[str, Step], edges: set[tuple[str, str]], held_timeout: str | None) -> None:
    """The sub-flow step ``name`` of ``flow``: the child's steps under ``name/``, the edge into
    its start, and each of its ends back to where the parent goes on (or fails, or is held)."""
    def q(n: str) -> str:
        return f"{prefix}{n}"

    child: Flow = resolve(st.flow, None)
    root_timeout = held_timeout
    if depth == 0 and flow.handoff is not None and flow.handoff.on_timeout in flow.steps:
        root_timeout = q(flow.handoff.on_timeout)
    _expand(child, resolve, f"{q(name)}/", depth + 1, steps, edges, root_timeout)
    edges.add((q(name), f"{q(name)}/{child.start}"))
    returns = [t for label, t in st.targets() if label != "on_fail" and t in flow.steps]
    fails = [st.on_fail] if st.on_fail and st.on_fail in flow.steps else []
    for end_name, end in child.steps.items():
        if isinstance(end, EndStep):
            for t in (returns if end.end == "completed" else fails):
                edges.add((f"{q(name)}/{end_name}", q(t)))
            if end.end == "handoff" and root_timeout is not None:
                edges.add((f"{q(name)}/{end_name}", root_timeout))


def expanded_graph(flow: Flow, resolve: Any) -> FlowGraph:
    """``flow`` with its sub-flows expanded; ``resolve(name, version)`` finds sub-flows."""
    steps: dict[str, Step] = {}
    edges: set[tuple[str, str]] = set()
    _expand(flow, resolve, "", 0, steps, edges)
    return FlowGraph(flow.name, flow.version_id, flow.start, steps, frozenset(edges))


def _version_key(label: str) -> tuple[int, Any]:
    # Numeric labels compare as numbers ("10" after "9"); others keep their load order.
    return (1, int(label)) if label.isdigit() else (0, 0)


class FlowSet:
    """Flows by (name, version). Callable as ``flows(name, version)`` like the engine wants.

    The latest version of a name is the highest numeric label, else the last one added.
    """

    def __init__(self, flows: Iterable[Flow] | Mapping[str, Flow] | FlowSet | None = None) -> None:
        self._versions: dict[tuple[str, str], Flow] = {}
        self._latest: dict[str, Flow] = {}
        self._graphs: dict[tuple[str, str], FlowGraph] = {}
        if isinstance(flows, FlowSet):
            for f in flows.all():
                self.add(f)
        elif isinstance(flows, Mapping):
            for f in flows.values():
                self.add(f)
        elif flows is not None:
            for f in flows:
                self.add(f)

    @classmethod
    def load(cls, paths: Iterable[str | Path] | str | Path) -> FlowSet:
        """Load flow files and folders; several versions of one flow may be given."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        out = cls()
        problems: list[Problem] = []
        for f in flow_files(paths):
            try:
                out.add(load_flow(f))
            except FlowError as exc:
                problems.extend(exc.problems)
        if problems:
            raise FlowError(problems)
        return out

    @classmethod
    def of(cls, flows: Any) -> FlowSet:
        """Whatever callers hand in (a FlowSet, flows, a mapping, a FlowRegistry, paths) as a FlowSet."""
        if isinstance(flows, FlowSet):
            return flows
        if isinstance(flows, Flow):
            return cls([flows])
        if isinstance(flows, (str, Path)):
            return cls.load(flows)
        if hasattr(flows, "flows") and hasattr(flows, "versions") and hasattr(flows, "get"):  # a FlowRegistry
            out = cls()
            for latest in flows.flows():
                for v in flows.versions(latest.name):
                    if v != latest.version_id:
                        out.add(flows.get(latest.name, v))
                out.add(latest)
            return out
        items = list(flows.values()) if isinstance(flows, Mapping) else list(flows)
        if items and all(isinstance(i, (str, Path)) for i in items):
            return cls.load(items)
        return cls(items)

    def add(self, flow: Flow) -> None:
        key = (flow.name, flow.version_id)
        known = self._versions.get(key)
        if known is not None and known.content_hash != flow.content_hash:
            raise FlowError(Problem(flow.source, flow.loc.line, 1, "version-clash",
                                    f"flow {flow.name!r} version {flow.version_id!r} is also defined, with other "
                                    f"content, in {known.source}; give each version its own `version:`"))
        self._versions[key] = flow
        cur = self._latest.get(flow.name)
        if cur is None or _version_key(flow.version_id) >= _version_key(cur.version_id):
            self._latest[flow.name] = flow
        self._graphs.clear()

    def get(self, name: str, version: str | None = None) -> Flow:
        if version is None:
            flow = self._latest.get(name)
            if flow is None:
                raise UnknownFlowError(f"no flow named {name!r} is loaded (loaded: {', '.join(self.names()) or 'none'})")
            return flow
        flow = self._versions.get((name, version))
        if flow is None:
            have = ", ".join(self.versions(name)) or "none"
            raise UnknownFlowError(f"flow {name!r} version {version!r} is not loaded (loaded versions: {have}); "
                                   "give its file with --flows")
        return flow

    __call__ = get

    def has(self, name: str, version: str | None = None) -> bool:
        return (name in self._latest) if version is None else ((name, version) in self._versions)

    def names(self) -> list[str]:
        return sorted(self._latest)

    def versions(self, name: str) -> list[str]:
        return sorted((v for n, v in self._versions if n == name), key=lambda v: (_version_key(v), v))

    def all(self) -> list[Flow]:
        return list(self._versions.values())

    def latest(self) -> dict[str, Flow]:
        return dict(self._latest)

    def graph(self, name: str, version: str | None = None) -> FlowGraph:
        flow = self.get(name, version)
        key = (flow.name, flow.version_id)
        g = self._graphs.get(key)
        if g is None:
            g = self._graphs[key] = expanded_graph(flow, self.get)
        return g

    def __len__(self) -> int:
        return len(self._versions)

    def __repr__(self) -> str:
        return f"FlowSet({', '.join(f'{n}@{v}' for n, v in sorted(self._versions))})"
