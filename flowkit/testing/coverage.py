"""Model-based tests for flows: one conversation per uncovered edge of the flow graph,
found with the pure engine and then run against the real runtime on a real store.

Every edge of :func:`flowkit.flow.graph.edge_list` counts: ``next`` and ``if`` branches,
the retry self-edge of ``ask`` steps, ``on_fail``, ``on_error``, ``on_timeout`` and the
return from a sub-flow. The generator searches breadth first from each flow's start,
trying for every question the answers that can change the way (each option, both
yes/no, numbers at their bounds and around the constants the flow compares with, one
invalid answer, the question's deadline) and for every service call a value, an error
and no answer at all (the call's deadline passes). The conversations that covered
something new are then replayed through :class:`flowkit.runtime.Runtime`: messages go
in as a user's (triggers routed like any message), the test acts as the service
(:class:`ScriptedServices`: ok with a value, an error, or silence until the timeout
fires from the store's timeout index) on a controllable clock, and the stored history
must show the same moves, contiguous versions and a state that passes
:func:`flowkit.check.check_session`.

In a project's own test suite (``store`` is a :class:`flowkit.store.Store` on a test Redis)::

    from flowkit.flow import load_flows
    from flowkit.testing import run_edge_coverage

    def test_every_edge_of_our_flows(store):
        report = run_edge_coverage(load_flows("flows/"), store)
        assert report.ok, report.text()

``flowkit test FLOWS...`` does the same from the shell (exit 0 only at 100% edge coverage
with every conversation passing). Edges no conversation reaches are listed with a reason
(a condition never true for the answers tried, an ``on_timeout`` without ``timeout``, a
branch after an unconditional one, ...). Services that return structured values the flow
reads (``payment.amount``) can be given sample values: ``values={"payments.lookup":
[{"amount": 20.0}]}``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowkit.engine import CallService, Message, ServiceResult, Start, State, Timeout, step
from flowkit.engine.experiments import recorded
from flowkit.engine.locate import locate
from flowkit.engine.state import slot_problem
from flowkit.errors import EngineError, FlowkitError, StateValidationError, UnknownFlowError
from flowkit.flow.expr import Const, Node
from flowkit.flow.graph import edge_list, handoff_targets, reachable
from flowkit.flow.model import AskStep, CallStep, EndStep, Flow, FlowStep, SetStep, SlotSpec
from flowkit.runtime.registry import FlowRegistry
from flowkit.sim.answers import invalid_answer, valid_answer
from flowkit.testing.variants import replay_id, search_ids

TEST_EPOCH_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: conversations run on this virtual clock
THINK_MS = 1_000  # a user answers one (virtual) second after the question
FAULT_LABELS = ("retry", "on_fail", "on_error", "on_timeout")


# ---------------------------------------------------------------- values


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


@dataclass(frozen=True)
class Action:
    """One thing that happens to a session: the user says something (``say``; the first
    ``say`` of a flow with triggers is its trigger), a flow is started directly (``start``,
    for flows without triggers), the service answers (``result``: ok with ``value``, or
    ``error``), or nothing happens until the deadline (``timeout``)."""

    kind: Literal["start", "say", "result", "timeout"]
    at: int  # virtual time (epoch ms)
    message: Message | None = None
    flow: str | None = None
    ok: bool = True
    value: Any = None
    error: str | None = None

    def describe(self) -> str:
        if self.kind == "start":
            return f"start {self.flow}"
        if self.kind == "say":
            m = self.message
            assert m is not None
            if m.type == "text":
                return f"say {m.text!r}"
            return f"send {m.type}" + (f" {m.reply_id!r}" if m.reply_id else "")
        if self.kind == "result":
            return f"service ok {json.dumps(self.value, default=str)}" if self.ok else f"service error {self.error!r}"
        return "no answer until the deadline"


@dataclass(frozen=True)
class Conversation:
    """A scripted session: actions, the edges the engine said they traverse, and the end
    the runtime must reach (step, status and version of the last commit)."""

    name: str
    flow: str
    actions: tuple[Action, ...]
    covers: frozenset[Edge]
    step: str | None
    status: str
    version: int
    variants: tuple[tuple[str, str], ...] = ()  # (qualified split step, variant) taken; testing/variants.py

    def describe(self) -> list[str]:
        return [a.describe() for a in self.actions]


@dataclass
class ConversationResult:
    conversation: Conversation
    session_id: str
    covered: set[Edge] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        c = self.conversation
        return {"name": c.name, "flow": c.flow, "session_id": self.session_id, "passed": self.passed,
                "actions": c.describe(), "covers": sorted(str(e) for e in c.covers), "problems": self.problems}


@dataclass
class CoverageReport:
    """Edge coverage of a set of flows and how each generated conversation went."""

    edges: list[Edge] = field(default_factory=list)
    covered: set[Edge] = field(default_factory=set)
    uncovered: dict[Edge, str] = field(default_factory=dict)  # edge -> why no conversation takes it
    results: list[ConversationResult] = field(default_factory=list)
    engine_errors: list[str] = field(default_factory=list)  # answers that make the engine fail a session
    states_explored: int = 0

    @property
    def total(self) -> int:
        return len(self.edges)

    @property
    def ratio(self) -> float:
        return len(self.covered) / self.total if self.total else 1.0

    @property
    def failed(self) -> list[ConversationResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        """Every edge covered, every conversation passed, and no answer made the engine fail."""
        return not self.uncovered and not self.failed and not self.engine_errors and len(self.covered) == self.total

    def by_flow(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for e in self.edges:
            cov, tot = out.get(e.flow, (0, 0))
            out[e.flow] = (cov + (e in self.covered), tot + 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "covered": len(self.covered), "total": self.total, "ratio": round(self.ratio, 4),
            "flows": {f: {"covered": c, "total": t} for f, (c, t) in sorted(self.by_flow().items())},
            "uncovered": [{**e.to_dict(), "reason": why} for e, why in self.uncovered.items()],
            "conversations": len(self.results), "passed": sum(r.passed for r in self.results),
            "failed": [r.to_dict() for r in self.failed],
            "engine_errors": self.engine_errors, "states_explored": self.states_explored,
        }

    def text(self) -> str:
        lines = [f"edge coverage {len(self.covered)}/{self.total} ({self.ratio:.0%}); "
                 f"{len(self.results) - len(self.failed)}/{len(self.results)} conversations passed"]
        for flow, (c, t) in sorted(self.by_flow().items()):
            lines.append(f"  {flow}: {c}/{t}")
        return "\n".join(lines + self.findings())

    def findings(self) -> list[str]:
        """One line per uncovered edge, failed conversation (and its actions) and engine error."""
        lines = [f"uncovered {e}: {why}" for e, why in self.uncovered.items()]
        for r in self.failed:
            lines.append(f"FAILED {r.conversation.name} ({r.session_id}): " + "; ".join(r.problems))
            lines.append("  actions: " + " | ".join(r.conversation.describe()))
        return lines + [f"engine error: {msg}" for msg in self.engine_errors]


# ---------------------------------------------------------------- the graph's edges and the moves of a record


def flow_edges(flow: Flow) -> list[Edge]:
    """Every edge of ``flow`` (one per label; targets that do not exist left out)."""
    seen: dict[Edge, None] = {}
    for row in edge_list(flow):
        if row["target"] in flow.steps:
            seen[Edge(flow.name, row["source"], row["target"], row["label"])] = None
    return list(seen)


def _split(qualified: str) -> tuple[tuple[str, ...], str]:
    parts = qualified.split("/")
    return tuple(parts[:-1]), parts[-1]


def _owner(root: Flow, prefix: tuple[str, ...], registry: FlowRegistry) -> Flow:
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
        pa, la = _split(a)
        pb, lb = _split(b)
        try:
            if pb == (*pa, la):
                continue  # entering a sub-flow at its start: a call, not an edge
            if pa == pb:
                flow = _owner(root, pa, registry)
                labels = [lab for lab, t in [*flow.steps[la].targets(), *handoff_targets(flow, la)] if t == lb]
                label = _pick(labels, first=first, event=event, error=error, same=a == b)
                src = la
            elif len(pb) < len(pa) and pa[:len(pb)] == pb:
                flow = _owner(root, pb, registry)
                src = pa[len(pb)]
                child = _owner(root, pa, registry)
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


# ---------------------------------------------------------------- candidate answers and service values


def _constants(flows: Iterable[Flow]) -> dict[str, list[float]]:
    """Per slot, the numbers the flows compare it with or compute it from (``tries < 3``,
    ``urgency >= 4``): answers around them take both sides of a condition."""
    out: dict[str, set[float]] = {}

    def consts(node: Node, acc: set[float]) -> None:
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            for k in (v if isinstance(v, tuple) else (v,)):
                if isinstance(k, Const) and isinstance(k.value, (int, float)) and not isinstance(k.value, bool):
                    acc.add(float(k.value))
                elif isinstance(k, Node):
                    consts(k, acc)

    for flow in flows:
        for st in flow.steps.values():
            for e in st.expressions():
                found: set[float] = set()
                consts(e.tree, found)
                for name in e.names():
                    out.setdefault(name, set()).update(found)
    return {k: sorted(v) for k, v in out.items()}


def _numbers(lo: float | None, hi: float | None, consts: list[float], integer: bool) -> list[float]:
    lo_v = lo if lo is not None else (0 if hi is None or hi > 0 else hi - 100)
    hi_v = hi if hi is not None else lo_v + 100
    cands = [lo_v, hi_v, (lo_v + hi_v) / 2]
    for c in consts:
        cands += [c - 1, c, c + 1] if integer else [c - 0.5, c, c + 0.5]
    out: list[float] = []
    for c in cands:
        c = float(int(c)) if integer else round(c, 2)
        if (lo is None or c >= lo) and (hi is None or c <= hi) and c not in out:
            out.append(c)
    return out


def _fmt(x: float, integer: bool) -> str:
    return str(int(x)) if integer or float(x).is_integer() else f"{x:.2f}"


def answers(st: AskStep, slot: SlotSpec | None, consts: list[float], today: dt.date) -> list[Message]:
    """Valid answers worth trying at ``st``: every option, yes and no, numbers at the bounds
    and around the flow's constants; one drawn answer for free-form inputs."""
    spec = st.input
    t = spec.type
    if t == "choice":
        return [Message(text=o) for o in (spec.options or ())
                if slot is None or slot.options is None or o in slot.options]
    if t == "yes_no":
        return [Message(text="yes"), Message(text="no")]
    if t in ("int", "number"):
        lo = spec.min if isinstance(spec.min, (int, float)) else None
        hi = spec.max if isinstance(spec.max, (int, float)) else None
        if slot is not None:
            lo = max([x for x in (lo, slot.min) if x is not None], default=None)
            hi = min([x for x in (hi, slot.max) if x is not None], default=None)
        integer = t == "int" or (slot is not None and slot.type == "int")
        return [Message(text=_fmt(x, integer)) for x in _numbers(lo, hi, consts, integer)]
    return [valid_answer(st, slot, random.Random(f"{st.name}:{i}"), today) for i in range(1)]


def invalid_answers(st: AskStep) -> list[Message]:
    """Answers ``st`` should reject (the engine decides; rejected ones cover the retry edge)."""
    out = [invalid_answer(st, random.Random(st.name)), Message(type="unsupported")]
    if st.input.type not in ("location", "media"):
        out.append(Message(type="location", location={"latitude": 0.0, "longitude": 0.0}))
    return out


def service_values(st: CallStep, slot: SlotSpec | None, consts: list[float], given: Sequence[Any] | None) -> list[Any]:
    """Values a scripted service answers ``st`` with (``given`` wins when the caller gave some)."""
    if given:
        return list(given)
    vals = _service_values(st, slot, consts)
    fitting = [v for v in vals if slot is None or slot_problem(slot, v) is None]
    return fitting or vals


def _service_values(st: CallStep, slot: SlotSpec | None, consts: list[float]) -> list[Any]:
    if slot is None or slot.type == "any":
        return [{"id": "TEST-1", "amount": 100.0, "ok": True, "value": 1}]
    t = slot.type
    if t == "bool":
        return [True, False]
    if t == "choice" and slot.options:
        return list(slot.options)
    if t in ("int", "number"):
        vals = _numbers(slot.min, slot.max, consts, t == "int")
        return [int(v) if t == "int" else v for v in vals]
    rng = random.Random(st.name)
    samples = {"email": "test@example.com", "phone": "+31612345678", "date": "2026-12-01",
               "location": {"latitude": 52.37, "longitude": 4.9}, "media": {"id": "media.1", "kind": "image"}}
    if t in samples:
        return [samples[t]]
    if slot.pattern:
        from flowkit.sim.answers import _regex_sample

        return [_regex_sample(slot.pattern, rng)]
    n = max(slot.min_length or 1, min(slot.max_length or 12, 12))
    return [("TEST-" + "X" * n)[:max(n, 1)]]


# ---------------------------------------------------------------- the search


@dataclass
class _Node:
    state: State
    actions: tuple[Action, ...]
    edges: frozenset[Edge]
    now: int


def _relevant_names(flows: Iterable[Flow]) -> frozenset[str]:
    """Slots that can change where a session goes: read by a condition or a ``set``."""
    names: set[str] = set()
    for flow in flows:
        for st in flow.steps.values():
            for b in st.next:
                if b.when is not None:
                    names |= b.when.names()
            if isinstance(st, SetStep):
                for slot, expr in st.assign:
                    names.add(slot)
                    names |= expr.names()
    return frozenset(names)


def _key(state: State, relevant: frozenset[str]) -> str:
    return json.dumps([state.step, state.status, state.attempts, [f.get("at") for f in state.stack],
                       {k: v for k, v in sorted(state.slots.items()) if k in relevant},
                       [{k: v for k, v in sorted(f.get("slots", {}).items()) if k in relevant} for f in state.stack]],
                      sort_keys=True, default=str)


class _Search:
    def __init__(self, registry: FlowRegistry, *, values: Mapping[str, Sequence[Any]], max_states: int,
                 max_depth: int) -> None:
        self.registry = registry
        self.flows = registry.flows()
        self.values = values
        self.max_states = max_states
        self.max_depth = max_depth
        self.consts = _constants(self.flows)
        self.relevant = _relevant_names(self.flows)
        self.covered: set[Edge] = set()
        self.reached: set[tuple[str, str]] = set()  # (flow, local step) entered
        self.engine_errors: list[str] = []
        self.states = 0
        self.truncated = False
        self.conversations: list[Conversation] = []

    def entries(self) -> list[Flow]:
        """Flows a session can start in: those with triggers, and any flow no other flow calls."""
        called = {st.flow for f in self.flows for st in f.steps.values() if isinstance(st, FlowStep)}
        return [f for f in self.flows if f.triggers or f.name not in called]

    def _apply(self, root: Flow, state: State | None, event: Any, now: int, sid: str,
               trail: tuple[Action, ...]) -> State | None | tuple[State, list[Edge]]:
        try:
            t = step(root, state, event, now, flows=self.registry, session_id=sid)
        except (EngineError, StateValidationError, UnknownFlowError) as exc:
            where = " | ".join(a.describe() for a in trail)
            msg = f"{root.name}: {where}: {exc}"
            if msg not in self.engine_errors and len(self.engine_errors) < 50:
                self.engine_errors.append(msg)
            return None
        if not t.changed or t.record is None:
            return None
        edges, _ = record_moves(root, t.record.to_dict(), self.registry)
        for qualified in t.record.path:
            prefix, local = _split(qualified)
            try:
                self.reached.add((_owner(root, prefix, self.registry).name, local))
            except (EngineError, UnknownFlowError):
                pass
        return t.state, edges

    def run(self, root: Flow) -> None:
        for sid in search_ids(root, self.registry, f"search.{root.name}"):  # one id per variant to meet
            self.run_as(root, sid)

    def run_as(self, root: Flow, sid: str) -> None:
        trigger = next((t for t in root.triggers if (m := self.registry.match_trigger(t)) is not None
                        and m.name == root.name), None)
        now = TEST_EPOCH_MS
        first = (Action("say", now, message=Message(text=trigger), flow=root.name) if trigger
                 else Action("start", now, flow=root.name))
        out = self._apply(root, None, Start(flow=root.name, text=trigger), now, sid, (first,))
        if not isinstance(out, tuple):
            return
        state, edges = out
        budget = self.states + self.max_states  # each entry flow gets its own share of states
        start = _Node(state, (first,), frozenset(edges), now)
        self._keep(root, start, edges)
        queue: deque[_Node] = deque([start])
        seen = {_key(state, self.relevant)}
        while queue:
            node = queue.popleft()
            if len(node.actions) >= self.max_depth:
                continue
            rejected = False
            for action, event, invalid in self._actions(root, node):
                if invalid and rejected:
                    continue  # one rejected answer per question is enough
                if self.states >= budget:
                    self.truncated = True
                    return
                self.states += 1
                trail = (*node.actions, action)
                out = self._apply(root, node.state, event, action.at, sid, trail)
                if not isinstance(out, tuple):
                    continue
                state, edges = out
                if invalid and any(e.label in ("retry", "on_fail") for e in edges):
                    rejected = True
                child = _Node(state, trail, node.edges | set(edges), action.at)
                self._keep(root, child, edges)
                key = _key(state, self.relevant)
                if state.terminal or key in seen:
                    continue
                seen.add(key)
                queue.append(child)

    def _keep(self, root: Flow, node: _Node, edges: list[Edge]) -> None:
        new = [e for e in edges if e not in self.covered]
        if not new:
            return
        self.covered.update(new)
        s = node.state
        self.conversations.append(Conversation(f"{root.name}#{len(self.conversations) + 1}", root.name, node.actions,
                                               node.edges, s.step, s.status, s.version,
                                               tuple(sorted(recorded(s.slots).items()))))

    def _actions(self, root: Flow, node: _Node) -> list[tuple[Action, Any, bool]]:
        """(action, event, is_invalid_answer) worth trying at the node's waiting step."""
        s = node.state
        if s.terminal or not s.pending or not s.step:
            return []
        owner, st = locate(root, s.step, self.registry, [f["flow_version"] for f in s.stack])
        at = node.now + THINK_MS
        out: list[tuple[Action, Any, bool]] = []
        deadline = s.pending.get("deadline")
        if isinstance(st, AskStep) and s.pending.get("wait") == "input":
            slot = owner.slots.get(st.save) if st.save else None
            today = dt.datetime.fromtimestamp(at / 1000, dt.UTC).date()
            cands = answers(st, slot, self.consts.get(st.save or "", []), today)
            if not st.save or st.save not in self.relevant:
                cands = cands[:1]  # where the answer is not read by a condition, one valid answer does
            out += [(Action("say", at, message=m), m, False) for m in cands]
            out += [(Action("say", at, message=m), m, True) for m in invalid_answers(st)]
        elif isinstance(st, CallStep) and s.pending.get("wait") == "service":
            call_id = str(s.pending.get("call_id"))
            slot = owner.slots.get(st.save) if st.save else None
            vals = service_values(st, slot, self.consts.get(st.save or "", []), self.values.get(st.call))
            if not st.save or st.save not in self.relevant:
                vals = vals[:1]
            out += [(Action("result", at, ok=True, value=v), ServiceResult(call_id=call_id, ok=True, value=v), False)
                    for v in vals]
            out.append((Action("result", at, ok=False, error="scripted_error"),
                        ServiceResult(call_id=call_id, ok=False, error="scripted_error"), False))
        if deadline is not None:
            out.append((Action("timeout", int(deadline)), Timeout(), False))
        return out

    def reasons(self, edges: list[Edge]) -> dict[Edge, str]:
        """Why each edge no conversation took is uncovered."""
        out: dict[Edge, str] = {}
        flows = {f.name: f for f in self.flows}
        started = {f.name for f in self.entries()} | {st.flow for f in self.flows for st in f.steps.values()
                                                       if isinstance(st, FlowStep) and (f.name, st.name) in self.reached}
        limit = (f" (the search of some flow stopped at max_states={self.max_states}; raise it)"
                 if self.truncated else "")
        for e in edges:
            if e in self.covered:
                continue
            flow = flows[e.flow]
            st = flow.steps[e.source]
            if e.flow not in started:
                why = f"flow {e.flow!r} is never started (no trigger reached it and no reached step calls it)"
            elif e.source not in reachable(flow):
                why = f"step {e.source!r} cannot be reached from the start step"
            elif (e.flow, e.source) not in self.reached:
                why = f"step {e.source!r} was never reached by any generated conversation"
            elif e.label == "on_timeout" and isinstance(st, AskStep) and st.timeout is None:
                why = "the ask step has `on_timeout` but no `timeout`, so no deadline ever fires"
            elif e.label == "retry" and isinstance(st, AskStep) and st.retries == 0 and st.on_fail:
                why = "`retries: 0` with `on_fail`: the first invalid answer goes straight to on_fail"
            elif e.label == "retry":
                why = "no generated answer was rejected by the step's input check"
            elif e.label == "on_fail" and isinstance(st, FlowStep):
                why = f"sub-flow {st.flow!r} never ended other than completed"
            elif e.label.startswith("if ") or e.label in ("next", "return"):
                why = _branch_reason(st, e)
            else:
                why = f"no generated answer, service result or deadline led from {e.source!r} to {e.target!r}"
            out[e] = why + limit
        return out


def _branch_reason(st: Any, e: Edge) -> str:
    before = []
    for b in st.next:
        label = f"if {b.when.source}" if b.when is not None else ("return" if isinstance(st, FlowStep) else "next")
        if label == e.label and b.goto == e.target:
            break
        before.append(b)
    if any(b.when is None for b in before):
        return "an earlier branch without `if` always wins, so this branch is dead"
    if e.label.startswith("if "):
        return f"condition `{e.label[3:]}` was never true when {e.source!r} was left with the answers and service values tried"
    conds = ", ".join(f"`{b.when.source}`" for b in before if b.when is not None)
    return f"an earlier condition ({conds}) was true every time {e.source!r} was left"


# ---------------------------------------------------------------- public API


def _registry(flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow]) -> FlowRegistry:
    return flows if isinstance(flows, FlowRegistry) else FlowRegistry(flows)


def _search(registry: FlowRegistry, values: Mapping[str, Sequence[Any]] | None, max_states: int,
            max_depth: int, only: str | None = None) -> _Search:
    search = _Search(registry, values=values or {}, max_states=max_states, max_depth=max_depth)
    for root in ([registry.latest(only)] if only else search.entries()):
        search.run(root)
    return search


def generate_conversations(flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], flow: str | None = None, *,
                           values: Mapping[str, Sequence[Any]] | None = None, max_states: int = 20_000,
                           max_depth: int = 60) -> list[Conversation]:
    """Conversations that together take every edge of ``flows`` the search can reach
    (found with the pure engine; :func:`run_edge_coverage` says why the others are not).
    ``flow``: only conversations that start in that flow (its sub-flows are covered through
    it). ``values``: sample results per service name for ``call`` steps (default: values
    that fit the step's ``save`` slot)."""
    return _minimal(_search(_registry(flows), values, max_states, max_depth, flow).conversations)


def _minimal(convs: list[Conversation]) -> list[Conversation]:
    """Leave out conversations that are a prefix of another (the longer one takes their edges too)."""
    out = []
    for c in convs:
        if any(o is not c and o.flow == c.flow and o.variants == c.variants and len(o.actions) > len(c.actions)
               and o.actions[:len(c.actions)] == c.actions for o in convs):
            continue
        out.append(c)
    for i, c in enumerate(out, 1):
        out[i - 1] = dataclasses.replace(c, name=f"{c.flow}#{i}")
    return out


class _Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class ScriptedServices:
    """The test's stand-in for the registered services: the runtime leaves calls to it
    (``run_services=False``), and it answers each one as the conversation says: a value,
    an error, or nothing (the call step's deadline then fires from the timeout index)."""

    def __init__(self, runtime: Any, clock: _Clock) -> None:
        self.rt = runtime
        self.clock = clock

    def answer(self, sid: str, action: Action) -> tuple[Any, str | None]:
        raw = self.rt.store.load(sid)
        pending = (raw or {}).get("pending") or {}
        if pending.get("wait") != "service":
            return None, f"expected the session to wait for a service before '{action.describe()}'"
        call_id = str(pending["call_id"])
        result = (ServiceResult(call_id=call_id, ok=True, value=action.value) if action.ok
                  else ServiceResult(call_id=call_id, ok=False, error=action.error))
        self.clock.now = action.at
        return self.rt.handle(sid, result), None


def run_conversation(conv: Conversation, runtime: Any, session_id: str, clock: _Clock | None = None) -> ConversationResult:
    """Play ``conv`` through ``runtime`` (a :class:`flowkit.runtime.Runtime` whose clock is
    ``clock`` and whose ``run_services`` is off) as session ``session_id``, then check the
    stored history and state."""
    from flowkit.check import check_session

    clock = clock or runtime.clock
    res = ConversationResult(conv, session_id)
    services = ScriptedServices(runtime, clock)
    registry: FlowRegistry = runtime.registry
    for i, action in enumerate(conv.actions, 1):
        what = f"action {i} ({action.describe()})"
        try:
            if action.kind == "result":
                out, problem = services.answer(session_id, action)
                if problem:
                    res.problems.append(f"{what}: {problem}")
                    break
            elif action.kind == "timeout":
                clock.now = action.at
                if session_id not in runtime.store.due_timeouts(action.at, 10_000):
                    res.problems.append(f"{what}: no timeout of the session is due at its deadline in the store's index")
                    break
                out = runtime.handle(session_id, Timeout())
            else:
                clock.now = action.at
                if action.kind == "start":
                    out = runtime.handle(session_id, Start(flow=action.flow or conv.flow))
                else:
                    assert action.message is not None
                    out = runtime.handle(session_id, dataclasses.replace(action.message,
                                                                          message_id=f"wamid.test.{session_id}.{i}"))
        except FlowkitError as exc:
            res.problems.append(f"{what}: the runtime raised {type(exc).__name__}: {exc}")
            break
        if out is None or out.status != "applied":
            res.problems.append(f"{what}: expected a commit, the runtime answered {getattr(out, 'status', None)!r}")
            break
        if any(isinstance(e, CallService) for e in out.effects):
            # The runtime sent the replies and left the entry open for whoever runs the call:
            # this test does (the next action answers it), so the entry is done.
            runtime.store.ack_effects(session_id, out.version or 0)
    state = runtime.store.load(session_id)
    records = runtime.store.history(session_id)
    root = registry.latest(conv.flow)
    for r in records:
        edges, illegal = record_moves(root, r, registry)
        res.covered.update(edges)
        for m in illegal:
            res.problems.append(f"v{r['version']}: move {m} is not an edge of the flow graph")
    if not res.problems:
        got = (state or {}).get("step"), (state or {}).get("status"), (state or {}).get("version")
        if got != (conv.step, conv.status, conv.version):
            res.problems.append(f"ended at step {got[0]!r} ({got[1]}, v{got[2]}); the engine's model says "
                                f"{conv.step!r} ({conv.status}, v{conv.version})")
        missing = conv.covers - res.covered
        if missing:
            res.problems.append("the stored history does not take " + ", ".join(sorted(map(str, missing))))
    for v in check_session(session_id, records, state, registry):
        res.problems.append(str(v))
    flush = getattr(runtime.store, "flush", None)
    if flush is not None:
        flush()  # acknowledgements the runtime deferred
    left = runtime.store.pending_effects(session_id)
    if left:
        res.problems.append(f"effects of version(s) {sorted(left)} were never finished (outbox not acknowledged)")
    return res


def run_edge_coverage(flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], store: Any, *,
                      values: Mapping[str, Sequence[Any]] | None = None, prefix: str | None = None,
                      max_states: int = 20_000, max_depth: int = 60, keep: bool = False) -> CoverageReport:
    """Generate conversations for every edge of ``flows``, run each through a real
    :class:`flowkit.runtime.Runtime` on ``store`` (a :class:`flowkit.store.Store`) and
    report edge coverage. Session ids are ``<prefix><flow>.<n>`` (default prefix
    ``fktest.<random>.``, so runs never meet sessions of an earlier run). The test sessions
    are deleted afterwards (with their indexes and counters), so a run against a live
    Redis leaves nothing behind for the dashboard or an export; ``keep=True`` leaves them
    to inspect (``flowkit session history``)."""
    from flowkit.runtime import RecordingChannel, Runtime

    registry = _registry(flows)
    search = _search(registry, values, max_states, max_depth)
    clock = _Clock(TEST_EPOCH_MS)
    rt = Runtime(store, registry, channel=RecordingChannel(), clock=clock, run_services=False)
    prefix = prefix if prefix is not None else f"fktest.{uuid.uuid4().hex[:8]}."
    report = CoverageReport(edges=[e for f in registry.flows() for e in flow_edges(f)],
                            engine_errors=list(search.engine_errors), states_explored=search.states)
    sids = []
    try:
        for n, conv in enumerate(_minimal(search.conversations), 1):
            sids.append(replay_id(f"{prefix}{conv.flow}.{n}", dict(conv.variants), registry.latest(conv.flow), registry))
            result = run_conversation(conv, rt, sids[-1], clock)
            report.results.append(result)
            report.covered |= result.covered
    finally:
        if not keep:
            for sid in sids:
                store.delete_session(sid)
    report.covered &= set(report.edges)
    reasons = search.reasons(report.edges)
    for e in report.edges:
        if e not in report.covered:
            report.uncovered[e] = reasons.get(e) or ("the engine's search took it but the runtime's run did not "
                                                     "(see the failed conversations)")
    return report


__all__ = ["Action", "Conversation", "ConversationResult", "CoverageReport", "Edge", "ScriptedServices", "answers",
           "flow_edges", "generate_conversations", "invalid_answers", "record_moves", "run_conversation",
           "run_edge_coverage", "service_values"]
