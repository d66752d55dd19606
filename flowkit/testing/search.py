"""The breadth-first search for conversations that take every edge, on the pure engine.

From each entry flow's start it tries, at every waiting step, the answers, service values
and deadlines of :mod:`flowkit.testing.candidates`, keeps a conversation whenever one takes
an edge no earlier one took, and says why each edge it never took stays uncovered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowkit.engine import ServiceResult, Start, State, Timeout, UserMessage, step
from flowkit.engine.experiments import recorded
from flowkit.engine.locate import locate
from flowkit.errors import EngineError, StateValidationError, UnknownFlowError
from flowkit.flow.graph import reachable
from flowkit.flow.model import AskStep, CallStep, Flow, FlowStep, SetStep
from flowkit.runtime.registry import FlowRegistry
from flowkit.testing.candidates import answers, constants, invalid_answers, service_values
from flowkit.testing.clock import TEST_EPOCH_MS, THINK_MS
from flowkit.testing.conversation import Action, Conversation
from flowkit.testing.edges import Edge, owner_flow, record_moves, split_step
from flowkit.testing.variants import search_ids


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


class EdgeSearch:
    def __init__(self, registry: FlowRegistry, *, values: Mapping[str, Sequence[Any]], max_states: int,
                 max_depth: int) -> None:
        self.registry = registry
        self.flows = registry.flows()
        self.values = values
        self.max_states = max_states
        self.max_depth = max_depth
        self.consts = constants(self.flows)
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
            prefix, local = split_step(qualified)
            try:
                self.reached.add((owner_flow(root, prefix, self.registry).name, local))
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
        first = (Action("say", now, message=UserMessage(text=trigger), flow=root.name) if trigger
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
            if e not in self.covered:
                out[e] = self._why(e, flows[e.flow], started) + limit
        return out

    def _why(self, e: Edge, flow: Flow, started: set[str]) -> str:
        """The first reason, from the coarsest (flow never started) to the finest, that ``e`` stays uncovered."""
        st = flow.steps[e.source]
        if e.flow not in started:
            return f"flow {e.flow!r} is never started (no trigger reached it and no reached step calls it)"
        if e.source not in reachable(flow):
            return f"step {e.source!r} cannot be reached from the start step"
        if (e.flow, e.source) not in self.reached:
            return f"step {e.source!r} was never reached by any generated conversation"
        if e.label in ("on_timeout", "retry") and isinstance(st, AskStep):
            return _ask_reason(st, e)
        if e.label == "on_fail" and isinstance(st, FlowStep):
            return f"sub-flow {st.flow!r} never ended other than completed"
        if e.label.startswith("if ") or e.label in ("next", "return"):
            return _branch_reason(st, e)
        return f"no generated answer, service result or deadline led from {e.source!r} to {e.target!r}"


def _ask_reason(st: AskStep, e: Edge) -> str:
    if e.label == "on_timeout" and st.timeout is None:
        return "the ask step has `on_timeout` but no `timeout`, so no deadline ever fires"
    if e.label == "retry" and st.retries == 0 and st.on_fail:
        return "`retries: 0` with `on_fail`: the first invalid answer goes straight to on_fail"
    if e.label == "retry":
        return "no generated answer was rejected by the step's input check"
    return f"no generated answer, service result or deadline led from {e.source!r} to {e.target!r}"


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



def as_registry(flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow]) -> FlowRegistry:
    return flows if isinstance(flows, FlowRegistry) else FlowRegistry(flows)


def run_search(registry: FlowRegistry, values: Mapping[str, Sequence[Any]] | None, max_states: int,
            max_depth: int, only: str | None = None) -> EdgeSearch:
    search = EdgeSearch(registry, values=values or {}, max_states=max_states, max_depth=max_depth)
    for root in ([registry.latest(only)] if only else search.entries()):
        search.run(root)
    return search



def minimal(convs: list[Conversation]) -> list[Conversation]:
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

