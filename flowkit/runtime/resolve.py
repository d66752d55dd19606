"""Flow resolution as a runtime request, like load and commit (docs/decisions.md, "A pure
engine: flows are resolved by the runtime").

The sans-io core (runtime/core.py ``process``) yields a :class:`Resolve` naming the flows a
transition needs; the sync driver answers it from the registry (its sync client on a miss),
the async driver from the registry's memory or else the *async* store, so nothing in serve's
event loop reads a flow through a sync Redis client. The answers become a
:class:`~flowkit.engine.flowset.FlowSet`, the only thing the engine looks flows up in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from flowkit.engine.flowset import FlowSet, Want
from flowkit.errors import UnknownFlowError
from flowkit.flow.loader import parse_flow
from flowkit.flow.model import Flow
from flowkit.types import FlowAnswer, FlowSourceProtocol, Resolve

#: What a driver answers for one wanted flow (the name importers use).
Answer = FlowAnswer

__all__ = ["Answer", "AsyncFlowIndex", "AsyncFlowReader", "Resolve", "answer_async", "answer_sync", "extend",
           "refresh_async", "root_of"]


class AsyncFlowReader(Protocol):
    async def flow_definition(self, name: str, version: str | None) -> tuple[str, str] | None: ...


class AsyncFlowIndex(AsyncFlowReader, Protocol):
    async def flow_latest_versions(self) -> dict[str, str]: ...


async def refresh_async(registry: FlowSourceProtocol, store: AsyncFlowIndex) -> None:
    """:meth:`FlowRegistry.refresh` through the async store: pick up versions deployed by any
    process without a sync Redis read (serve runs it on its loop, web.py ``_refresh_flows``)."""
    for name, version in (await store.flow_latest_versions()).items():
        current = registry.cached(name, None)
        if current is not None and current.version_id == version:
            continue
        flow = registry.cached(name, version)
        if flow is None:
            found = await store.flow_definition(name, version)
            if found is None:
                continue  # listed but its definition is gone: keep serving what is known
            flow = parse_flow(found[1], f"<redis:{name}@{version}>")
        registry.remember(flow, latest=True)


def _unknown(name: str, version: str | None, registry: FlowSourceProtocol) -> UnknownFlowError:
    if version is None:
        known = ", ".join(registry.names()) or "none"
        return UnknownFlowError(f"no flow named {name!r} is registered; load its file (known: {known})")
    return UnknownFlowError(f"flow {name!r} version {version!r} is not registered; "
                            "sessions pinned to it need that version loaded")


def answer_sync(registry: FlowSourceProtocol, wants: Sequence[Want]) -> tuple[Answer, ...]:
    out: list[Answer] = []
    for name, version in wants:
        try:
            out.append(registry.get(name, version))
        except UnknownFlowError as exc:
            out.append(exc)
    return tuple(out)


async def answer_async(registry: FlowSourceProtocol, store: AsyncFlowReader, wants: Sequence[Want]) -> tuple[Answer, ...]:
    out: list[Answer] = []
    for name, version in wants:
        flow = registry.cached(name, version)
        if flow is None:
            found = await store.flow_definition(name, version)
            if found is None:
                out.append(_unknown(name, version, registry))
                continue
            flow = registry.remember(parse_flow(found[1], f"<redis:{name}@{found[0]}>"), latest=version is None)
        out.append(flow)
    return tuple(out)


def root_of(want: Want, answer: Answer) -> Flow:
    """The session's root flow; a root nobody can resolve is the caller's error, as before."""
    if isinstance(answer, UnknownFlowError):
        raise answer
    return answer


def extend(flows: FlowSet, wants: Sequence[Want], answers: Sequence[Answer]) -> FlowSet:
    """``flows`` plus the answers; an unknown sub-flow is recorded so the engine reports it
    (UnknownFlowError, which fails the session visibly) instead of asking again."""
    for want, got in zip(wants, answers, strict=True):
        flows = flows.with_missing(want, str(got)) if isinstance(got, UnknownFlowError) else flows.with_resolved(want, got)
    return flows
