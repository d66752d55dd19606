"""Flow versions: which flows exist, which version new sessions use, and the old versions
that running sessions are pinned to.

Definitions are kept in Redis (``fk:flowdef:<name>`` hash: version id -> YAML, plus a
``latest`` field), so a deploy of a new version never strands sessions started on the
old one, even on a runtime process that never loaded the old file.

The registry's own client is a blocking one (``client``). Code on an event loop uses the
``*_async`` methods instead (:meth:`FlowRegistry.get_async`, :meth:`~FlowRegistry.refresh_async`,
:meth:`~FlowRegistry.register_async`), which read and write through an asyncio store or
client and leave ``client`` alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flowkit.errors import UnknownFlowError, VersionClash
from flowkit.flow.loader import parse_flow
from flowkit.flow.model import Flow
from flowkit.store import flowdefs
from flowkit.store.keys import FLOW_NAMES, FLOWDEF_LATEST, flowdef_key

if TYPE_CHECKING:
    from flowkit.runtime.resolve import AsyncFlowIndex, AsyncFlowReader
    from flowkit.types import RedisClient

__all__ = ["FLOW_NAMES", "FlowRegistry", "flowdef_key"]

_LATEST = FLOWDEF_LATEST  # the key names live in store/keys.py; these names stay for importers


class FlowRegistry:
    """Flows by name and version. Works in memory only (``client=None``) or backed by Redis."""

    def __init__(self, flows: Iterable[Flow] | Mapping[str, Flow] = (), *, client: RedisClient | None = None,
                 refresh_every: float = 5.0) -> None:
        self.client = client
        self.refresh_every = refresh_every
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], Flow] = {}
        self._latest: dict[str, Flow] = {}
        self._refreshed = 0.0
        for flow in (flows.values() if isinstance(flows, Mapping) else flows):
            self.register(flow)
        self.refresh()

    def refresh(self) -> None:
        """Pick up the latest version of every flow registered in Redis (by any process).

        Called at start and then at most every ``refresh_every`` seconds by the lookups that
        start sessions, so a deploy reaches running webhook processes without a restart.
        """
        self._refreshed = time.monotonic()
        if self.client is None:
            return
        names = sorted(_str(n) for n in self.client.smembers(FLOW_NAMES))
        if not names:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(flowdef_key(name), _LATEST)
            latest = pipe.execute()
        for name, version in zip(names, latest, strict=True):
            if version is None:
                continue
            version = _str(version)
            current = self._latest.get(name)
            if current is None or current.version_id != version:
                flow = self.get(name, version)
                with self._lock:
                    self._latest[name] = flow

    def _maybe_refresh(self) -> None:
        if self.refresh_due():
            self.refresh()

    def refresh_due(self) -> bool:
        """Is a look at Redis for newer versions due (attached to Redis, ``refresh_every`` passed)?"""
        return self.client is not None and time.monotonic() - self._refreshed >= self.refresh_every

    async def refresh_async(self, store: AsyncFlowIndex) -> None:
        """:meth:`refresh` through an asyncio store (:class:`flowkit.store.AsyncStore`): no sync read."""
        from flowkit.runtime.resolve import refresh_async

        self._refreshed = time.monotonic()  # first: concurrent handlers do not all refresh at once
        await refresh_async(self, store)

    async def get_async(self, name: str, version: str | None, store: AsyncFlowReader) -> Flow:
        """:meth:`get` for code on an event loop: memory first, else the asyncio ``store``."""
        from flowkit.runtime.resolve import answer_async, root_of

        return root_of((name, version), (await answer_async(self, store, ((name, version),)))[0])

    def register(self, flow: Flow) -> bool:
        """Make ``flow`` the latest version of its name. Returns True if the version is new.

        Re-registering the same content is a no-op; the same label with other content is
        refused (bump ``version:``), because sessions pinned to that label would change
        behaviour under their feet.
        """
        key = (flow.name, flow.version_id)
        with self._lock:
            known = self._versions.get(key)
            if known is None and self.client is not None:
                known = _stored(flow, self.client.hget(flowdef_key(flow.name), flow.version_id))
            _same_or_clash(flow, known)
            self._versions[key] = flow
            self._latest[flow.name] = flow
            if self.client is not None:
                # Two keys in two cluster slots, so no MULTI (Redis Cluster refuses it). The
                # order makes one unneeded: a name is listed only once its definition is
                # stored, and a crash in between leaves a definition that `latest(name)`
                # still finds and the next register() of that flow lists.
                self.client.hset(flowdef_key(flow.name), mapping={flow.version_id: flow.to_yaml(), _LATEST: flow.version_id})
                self.client.sadd(FLOW_NAMES, flow.name)
            return known is None

    async def register_async(self, flow: Flow, client: RedisClient) -> bool:
        """:meth:`register` through an asyncio Redis ``client`` (``redis.asyncio``; e.g. an
        :class:`~flowkit.store.AsyncStore`'s), for code on an event loop. Same rules, same keys."""
        key = (flow.name, flow.version_id)
        known = self._versions.get(key)
        if known is None:
            known = _stored(flow, await client.hget(flowdef_key(flow.name), flow.version_id))
        _same_or_clash(flow, known)
        with self._lock:  # (never held across an await)
            self._versions[key] = flow
            self._latest[flow.name] = flow
        # the order of register(): the definition first, then the name
        await client.hset(flowdef_key(flow.name), mapping={flow.version_id: flow.to_yaml(), _LATEST: flow.version_id})
        await client.sadd(FLOW_NAMES, flow.name)
        return known is None

    def latest(self, name: str) -> Flow:
        self._maybe_refresh()
        flow = self._latest.get(name)
        if flow is None and self.client is not None:
            found = flowdefs.definition(self.client, name, None)
            if found is not None:
                return self.get(name, found[0])
        if flow is None:
            raise UnknownFlowError(f"no flow named {name!r} is registered; load its file (known: {', '.join(sorted(self.names())) or 'none'})")
        return flow

    def get(self, name: str, version: str | None = None) -> Flow:
        """The flow ``name`` at ``version`` (None: the latest)."""
        if version is None:
            return self.latest(name)
        flow = self._versions.get((name, version))
        if flow is not None:
            return flow
        if self.client is not None:
            found = flowdefs.definition(self.client, name, version)
            if found is not None:
                flow = parse_flow(found[1], f"<redis:{name}@{version}>")
                with self._lock:
                    self._versions[(name, version)] = flow
                    self._latest.setdefault(name, flow)
                return flow
        raise UnknownFlowError(f"flow {name!r} version {version!r} is not registered; sessions pinned to it need that version loaded")

    def cached(self, name: str, version: str | None) -> Flow | None:
        """The flow if this process already holds it (no I/O, no refresh), else None."""
        if version is None:
            return self._latest.get(name)
        return self._versions.get((name, version))

    def remember(self, flow: Flow, *, latest: bool) -> Flow:
        """Keep a flow read from the store (e.g. by the async runtime) for later lookups."""
        with self._lock:
            self._versions.setdefault((flow.name, flow.version_id), flow)
            if latest:
                self._latest[flow.name] = flow
            else:
                self._latest.setdefault(flow.name, flow)
        return flow

    def __call__(self, name: str, version: str | None) -> Flow:
        return self.get(name, version)

    def names(self) -> list[str]:
        return sorted(self._latest)

    def versions(self, name: str) -> list[str]:
        if self.client is not None:
            return sorted(_str(v) for v in self.client.hkeys(flowdef_key(name)) if _str(v) != _LATEST)
        return sorted(v for n, v in self._versions if n == name)

    def flows(self) -> list[Flow]:
        return [self._latest[n] for n in self.names()]

    def match_trigger(self, text: str, only: Collection[str] | None = None, *, refresh: bool = True) -> Flow | None:
        """The flow whose trigger the message says (whole words, case-insensitive, longest trigger
        wins), among the flows named in ``only`` if given (a number's flows).

        ``refresh=False``: memory only, never a Redis read (the async runtime refreshes
        through its async store instead, :meth:`refresh_async`)."""
        if refresh:
            self._maybe_refresh()
        words = " " + " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split()) + " "
        best: tuple[int, Flow] | None = None
        for flow in self._latest.values():
            if only is not None and flow.name not in only:
                continue
            for t in flow.triggers:
                if f" {t} " in words and (best is None or len(t) > best[0]):
                    best = (len(t), flow)
        return best[1] if best else None


def _stored(flow: Flow, text: bytes | str | None) -> Flow | None:
    """The stored definition of ``flow``'s name and version, parsed, or None."""
    return None if text is None else parse_flow(_str(text), f"<redis:{flow.name}@{flow.version_id}>")


def _same_or_clash(flow: Flow, known: Flow | None) -> None:
    if known is not None and known.content_hash != flow.content_hash:
        raise VersionClash(
            f"flow {flow.name!r} version {flow.version_id!r} is already registered with different content; "
            f"bump `version:` in {flow.source} so running sessions keep the old one"
        )


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
