"""Which slots each step reads and writes, and which answers a session must already have
to be placed at a step (the safety check of ``flowkit migrate`` and ``flowkit impact``).

A slot is *assured* at a step when every route from the start step to it passes a step
that sets it, by a route that carries the write: ``next``, a branch or a sub-flow's
return. ``on_fail``, ``on_error``, ``on_timeout`` and the retry self-edge leave a step
without its answer (the question failed, the call did not return), so they carry
nothing. The flow's own steps may rely on assured slots; nothing else is promised (an
optional answer, such as a drink asked only for large pizzas, is read as ``None``).

A session moved to step ``S`` *needs* slot ``x`` when ``x`` is assured at ``S`` and a step
reachable from ``S`` reads ``x`` before any step on the way sets it. Moving a session that
lacks ``x`` there skips the question the new version asks for it: the later step would
run with ``x`` unset (a service called without an argument, a message with a hole).
The analysis walks :func:`flowkit.flow.graph.to_networkx`; it is pure and cached per flow.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import networkx as nx

from flowkit.flow.graph import to_networkx
from flowkit.flow.model import AskStep, CallStep, EndStep, Flow, FlowStep, SetStep, Step

# Edge kinds along which the step's writes have happened.
_CARRY = frozenset({"next", "branch", "return"})


def writes(step: Step) -> frozenset[str]:
    """Slots the step sets when it moves on by ``next`` (or a sub-flow's return)."""
    if isinstance(step, (AskStep, CallStep)):
        return frozenset([step.save]) if step.save else frozenset()
    if isinstance(step, SetStep):
        return frozenset(k for k, _ in step.assign)
    if isinstance(step, FlowStep):
        return frozenset(mine for mine, _ in step.save)
    return frozenset()


def reads(step: Step) -> frozenset[str]:
    """Names the step reads before it sets anything: its texts, call/sub-flow arguments and
    ``set`` expressions (``profile``, ``now``... included; callers keep the slots)."""
    conds = {id(b.when) for b in step.next if b.when is not None}
    out: set[str] = set()
    for t in step.templates():
        out |= t.names()
    for e in step.expressions():
        if id(e) not in conds:
            out |= e.names()
    return frozenset(out)


def reads_after(step: Step) -> frozenset[str]:
    """Names the step's ``next`` conditions read (after its own answer is saved)."""
    out: set[str] = set()
    for b in step.next:
        if b.when is not None:
            out |= b.when.names()
    return frozenset(out)


def _slots(flow: Flow) -> frozenset[str]:
    out = set(flow.slots)
    for s in flow.steps.values():
        out |= writes(s)
    return frozenset(out)


def _carries(data: dict[str, object]) -> bool:
    kinds = data["kinds"]
    assert isinstance(kinds, list)
    return all(k in _CARRY for k in kinds)


@dataclass(frozen=True)
class _Analysis:
    graph: nx.DiGraph
    slots: frozenset[str]
    assured: dict[str, frozenset[str]]


_CACHE: dict[tuple[str, str], _Analysis] = {}  # (name, content hash): a flow version never changes
_CACHE_LOCK = threading.Lock()


def _analyse(flow: Flow) -> _Analysis:
    key = (flow.name, flow.content_hash)
    got = _CACHE.get(key)
    if got is None:
        got = _compute(flow)
        with _CACHE_LOCK:
            if len(_CACHE) >= 64:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = got
    return got


def _compute(flow: Flow) -> _Analysis:
    g = to_networkx(flow)
    slots = _slots(flow)
    if flow.start not in g:
        return _Analysis(g, slots, {})
    order = [flow.start, *(b for _, b in nx.bfs_edges(g, flow.start))]
    # Forward "must" analysis: every step starts from all slots (the start from none) and
    # intersects what its incoming routes carry until nothing changes; sets only shrink.
    assured: dict[str, frozenset[str]] = {n: slots for n in order}
    assured[flow.start] = frozenset()
    queue, queued = deque(order), set(order)
    while queue:
        a = queue.popleft()
        queued.discard(a)
        step = flow.steps[a]
        for b in g.successors(a):
            if b == flow.start:
                continue
            carried = assured[a] | writes(step) if _carries(g.edges[a, b]) else assured[a]
            new = assured[b] & carried
            if new != assured[b]:
                assured[b] = new
                if b not in queued:
                    queued.add(b)
                    queue.append(b)
    return _Analysis(g, slots, assured)


def assured(flow: Flow, step: str) -> frozenset[str]:
    """Slots every route from the start sets before ``step`` (empty for unknown steps)."""
    return _analyse(flow).assured.get(step, frozenset())


def first_read(flow: Flow, step: str, slot: str) -> str | None:
    """The nearest step, from ``step`` (itself included) onwards, that reads ``slot`` before
    any step on the way sets it; None when none does."""
    a = _analyse(flow)
    if step not in a.graph:
        return None
    seen = {step}
    queue = deque([step])
    while queue:
        n = queue.popleft()
        s = flow.steps[n]
        sets = slot in writes(s)
        if slot in reads(s) or (slot in reads_after(s) and not sets):
            return n
        for m in a.graph.successors(n):
            if m in seen or (sets and _carries(a.graph.edges[n, m])):
                continue
            seen.add(m)
            queue.append(m)
    return None


@dataclass(frozen=True)
class Need:
    """``step`` reads ``slot``, which the flow assures by the time a session reaches ``at``."""

    slot: str
    step: str
    at: str

    def __str__(self) -> str:
        return f"step {self.step!r} reads {self.slot!r}"


def unmet_needs(flow: Flow, at: str, have: Collection[str]) -> list[Need]:
    """What a session holding the slots ``have`` would lack if placed at step ``at``:
    slots assured there, missing from ``have``, that a later step reads (by slot name)."""
    out = []
    for slot in sorted(assured(flow, at) - set(have)):
        reader = first_read(flow, at, slot)
        if reader is not None:
            out.append(Need(slot, reader, at))
    return out


def safe_step_before(flow: Flow, at: str, have: Collection[str]) -> str | None:
    """The latest step at or before ``at`` (nearest, walking back along the new flow's routes)
    where a session holding ``have`` lacks nothing; None when there is none."""
    g = _analyse(flow).graph
    if at not in g:
        return None
    seen = {at}
    queue = deque([at])
    while queue:
        n = queue.popleft()
        if not isinstance(flow.steps[n], EndStep) and not unmet_needs(flow, n, have):
            return n
        for p in g.predecessors(n):
            if p not in seen:
                seen.add(p)
                queue.append(p)
    return None


def held(slots: Iterable[str] | dict[str, object] | None) -> frozenset[str]:
    """The slot names a stored session has answers for (a ``None`` value is no answer)."""
    if isinstance(slots, dict):
        return frozenset(k for k, v in slots.items() if v is not None)
    return frozenset(slots or ())


__all__ = ["Need", "assured", "first_read", "held", "reads", "reads_after", "safe_step_before", "unmet_needs", "writes"]
