"""The flows one transition may run, resolved before the engine runs (docs/decisions.md,
"A pure engine: flows are resolved by the runtime").

The engine never fetches a flow: it looks sub-flows up in a :class:`FlowSet` the caller
filled beforehand. When the set lacks one (a session enters a sub-flow nobody predicted),
:class:`~flowkit.errors.FlowNeeded` names it; the runtime resolves it through its store and
runs ``step`` again, which is safe because ``step`` is pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flowkit.engine.state import State
from flowkit.errors import FlowNeeded, UnknownFlowError
from flowkit.flow.model import Flow

#: ``(flow name, version)``; version None means "the latest version".
Want = tuple[str, str | None]


class FlowSet:
    """An immutable lookup of flows by ``(name, version)``, plus which one is the latest.

    Built from plain :class:`Flow` objects, so notebooks and tests use it without Redis:
    ``FlowSet([main, contact])``. Flows given are also the latest of their name unless
    ``latest`` says otherwise.
    """

    __slots__ = ("_latest", "_missing", "_versions")

    def __init__(self, flows: Iterable[Flow] = (), *, latest: Mapping[str, Flow] | None = None) -> None:
        self._versions: dict[tuple[str, str], Flow] = {}
        self._latest: dict[str, Flow] = {}
        self._missing: dict[Want, str] = {}  # wants the caller could not resolve: why
        for flow in flows:
            self._versions[(flow.name, flow.version_id)] = flow
            self._latest.setdefault(flow.name, flow)
        for name, flow in (latest or {}).items():
            self._versions[(flow.name, flow.version_id)] = flow
            self._latest[name] = flow

    def with_resolved(self, want: Want, flow: Flow) -> FlowSet:
        """A copy that also answers ``want`` with ``flow``."""
        out = self._copy()
        out._versions[(flow.name, flow.version_id)] = flow
        if want[1] is None:
            out._latest[want[0]] = flow
        return out

    def with_missing(self, want: Want, reason: str) -> FlowSet:
        """A copy that knows ``want`` does not exist: the engine raises UnknownFlowError for it."""
        out = self._copy()
        out._missing[want] = reason
        return out

    def _copy(self) -> FlowSet:
        out = FlowSet()
        out._versions, out._latest, out._missing = dict(self._versions), dict(self._latest), dict(self._missing)
        return out

    def find(self, name: str, version: str | None) -> Flow | None:
        if version is None:
            return self._latest.get(name)
        return self._versions.get((name, version))

    def resolve(self, name: str, version: str | None) -> Flow:
        flow = self.find(name, version)
        if flow is None:
            reason = self._missing.get((name, version))
            if reason is not None:
                raise UnknownFlowError(reason)
            raise FlowNeeded(name, version)
        return flow

    def __contains__(self, want: object) -> bool:
        return isinstance(want, tuple) and len(want) == 2 and self.find(want[0], want[1]) is not None

    def __len__(self) -> int:
        return len(self._versions)


def pinned(state: State | None) -> tuple[Want, ...]:
    """The sub-flow versions ``state``'s stack is pinned to: what any event on it needs."""
    if state is None:
        return ()
    return tuple((str(f["flow"]), str(f["flow_version"])) for f in state.stack)
