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

The parts: :mod:`flowkit.testing.edges` (the graph's edges, a record's moves),
:mod:`flowkit.testing.candidates` (answers and service values tried),
:mod:`flowkit.testing.search` (the search on the pure engine),
:mod:`flowkit.testing.conversation` (conversations and the report); this module runs them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flowkit.engine import CallService, ServiceResult, Start, Timeout
from flowkit.errors import FlowkitError
from flowkit.flow.model import Flow
from flowkit.runtime.registry import FlowRegistry
from flowkit.testing.candidates import answers, invalid_answers, service_values
from flowkit.testing.clock import TEST_EPOCH_MS, THINK_MS, VirtualClock
from flowkit.testing.conversation import Action, Conversation, ConversationResult, CoverageReport
from flowkit.testing.edges import Edge, flow_edges, record_moves
from flowkit.testing.search import as_registry, minimal, run_search
from flowkit.testing.variants import replay_id

_Clock = VirtualClock  # the name tests and earlier releases import


def generate_conversations(flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], flow: str | None = None, *,
                           values: Mapping[str, Sequence[Any]] | None = None, max_states: int = 20_000,
                           max_depth: int = 60) -> list[Conversation]:
    """Conversations that together take every edge of ``flows`` the search can reach
    (found with the pure engine; :func:`run_edge_coverage` says why the others are not).
    ``flow``: only conversations that start in that flow (its sub-flows are covered through
    it). ``values``: sample results per service name for ``call`` steps (default: values
    that fit the step's ``save`` slot)."""
    return minimal(run_search(as_registry(flows), values, max_states, max_depth, flow).conversations)



class ScriptedServices:
    """The test's stand-in for the registered services: the runtime leaves calls to it
    (``run_services=False``), and it answers each one as the conversation says: a value,
    an error, or nothing (the call step's deadline then fires from the timeout index)."""

    def __init__(self, runtime: Any, clock: VirtualClock) -> None:
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


def run_conversation(conv: Conversation, runtime: Any, session_id: str,
                     clock: VirtualClock | None = None) -> ConversationResult:
    """Play ``conv`` through ``runtime`` (a :class:`flowkit.runtime.Runtime` whose clock is
    ``clock`` and whose ``run_services`` is off) as session ``session_id``, then check the
    stored history and state."""
    clock = clock or runtime.clock
    res = ConversationResult(conv, session_id)
    services = ScriptedServices(runtime, clock)
    for i, action in enumerate(conv.actions, 1):
        what = f"action {i} ({action.describe()})"
        try:
            out, problem = _play(conv, i, action, runtime, session_id, clock, services)
        except FlowkitError as exc:
            out, problem = None, f"the runtime raised {type(exc).__name__}: {exc}"
        if problem is None and (out is None or out.status != "applied"):
            problem = f"expected a commit, the runtime answered {getattr(out, 'status', None)!r}"
        if problem is not None:
            res.problems.append(f"{what}: {problem}")
            break
        if any(isinstance(e, CallService) for e in out.effects):
            # The runtime sent the replies and left the entry open for whoever runs the call:
            # this test does (the next action answers it), so the entry is done.
            runtime.store.ack_effects(session_id, out.version or 0)
    _check_stored(conv, runtime, session_id, res)
    return res


def _play(conv: Conversation, i: int, action: Action, runtime: Any, session_id: str, clock: VirtualClock,
          services: ScriptedServices) -> tuple[Any, str | None]:
    """Action ``i`` of ``conv`` through the runtime: (its outcome, or a problem that stops the run)."""
    if action.kind == "result":
        return services.answer(session_id, action)
    clock.now = action.at
    if action.kind == "timeout":
        if session_id not in runtime.store.due_timeouts(action.at, 10_000):
            return None, "no timeout of the session is due at its deadline in the store's index"
        return runtime.handle(session_id, Timeout()), None
    if action.kind == "start":
        return runtime.handle(session_id, Start(flow=action.flow or conv.flow)), None
    assert action.message is not None
    return runtime.handle(session_id, dataclasses.replace(action.message,
                                                          message_id=f"wamid.test.{session_id}.{i}")), None


def _check_stored(conv: Conversation, runtime: Any, session_id: str, res: ConversationResult) -> None:
    """The stored history takes the conversation's edges (and no move off the graph), ends
    where the engine's model said, passes the history checker and leaves no outbox open."""
    from flowkit.check import check_session

    registry: FlowRegistry = runtime.registry
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

    registry = as_registry(flows)
    search = run_search(registry, values, max_states, max_depth)
    clock = VirtualClock(TEST_EPOCH_MS)
    rt = Runtime(store, registry, channel=RecordingChannel(), clock=clock, run_services=False)
    prefix = prefix if prefix is not None else f"fktest.{uuid.uuid4().hex[:8]}."
    report = CoverageReport(edges=[e for f in registry.flows() for e in flow_edges(f)],
                            engine_errors=list(search.engine_errors), states_explored=search.states)
    sids = []
    try:
        for n, conv in enumerate(minimal(search.conversations), 1):
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


__all__ = ["TEST_EPOCH_MS", "THINK_MS", "Action", "Conversation", "ConversationResult", "CoverageReport", "Edge", "ScriptedServices", "answers",
           "flow_edges", "generate_conversations", "invalid_answers", "record_moves", "run_conversation",
           "run_edge_coverage", "service_values"]
