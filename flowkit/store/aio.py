"""The Redis state store on asyncio (:class:`AsyncStore`): the same operations as
:class:`flowkit.store.Store` (same arguments, same results, same round trips), as coroutines
on a ``redis.asyncio`` client. See :class:`~flowkit.store.Store` for what each method does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from flowkit.batching import batched
from flowkit.store import delivery, flowdefs, ops
from flowkit.store import keys as K
from flowkit.store import transcript as tx
from flowkit.store.driver import AsyncDriver, Op, T, is_cluster
from flowkit.store.values import CommitResult, StoreConfig


class AsyncStore:
    """:class:`~flowkit.store.Store` for ``redis.asyncio.Redis`` / ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(self, client: Any, *, snapshot_every: int = 20, history_max_len: int | None = None,
                 dedupe_max: int = 1000, validator: Callable[[dict[str, Any]], None] | None = None,
                 now_ms: Callable[[], int] | None = None, terminal_ttl_ms: int | None = None,
                 autopipeline: bool = True) -> None:
        self.client = client
        kw: dict[str, Any] = {"now_ms": now_ms} if now_ms is not None else {}
        self.config = StoreConfig(snapshot_every=snapshot_every, history_max_len=history_max_len,
                                  dedupe_max=dedupe_max, validator=validator, terminal_ttl_ms=terminal_ttl_ms,
                                  indexes_in_commit=not is_cluster(client), **kw)
        # autopipeline: concurrent tasks' round trips share one connection and one write (store/autopipe.py)
        self.driver = AsyncDriver(client, autopipeline=autopipeline)

    async def _run(self, op: Op[T]) -> T:
        return await self.driver.run(op)

    @property
    def round_trips(self) -> int:
        return self.driver.round_trips

    def now_ms(self) -> int:
        return self.config.now_ms()

    async def commit(self, session_id: str, expected_version: int, state: dict[str, Any], record: dict[str, Any], *,
                     previous: Mapping[str, Any] | None = None, message_id: str | None = None,
                     effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None) -> CommitResult:
        return await self._run(ops.commit(self.config, session_id, expected_version, state, record,
                                          previous=previous, message_id=message_id, effects=effects,
                                          timeout_at_ms=timeout_at_ms))

    async def commit_many(self, commits: Iterable[Mapping[str, Any]], *, batch: int = 500) -> list[CommitResult]:
        from flowkit.store.store import _commit_kwargs

        out: list[CommitResult] = []
        for chunk in batched(commits, batch):
            out += await self.driver.run_many([ops.commit(self.config, **_commit_kwargs(c)) for c in chunk])
        return out

    async def flow_definition(self, name: str, version: str | None) -> tuple[str, str] | None:
        """``(version, YAML)`` of a stored flow (None: the latest version), or None."""
        return await flowdefs.adefinition(self.client, name, version)

    async def flow_latest_versions(self) -> dict[str, str]:
        """Every registered flow name -> its latest version (what a registry refresh reads)."""
        return await flowdefs.alatest_versions(self.client)

    async def load(self, session_id: str) -> dict[str, Any] | None:
        return await self._run(ops.load(self.config, session_id))

    async def load_raw(self, session_id: str) -> dict[str, Any] | None:
        return await self._run(ops.load_raw(session_id))

    async def history(self, session_id: str, start: int = 1, end: int | None = None, *, limit: int | None = None,
                      with_delta: bool = False) -> list[dict[str, Any]]:
        return await self._run(ops.history(session_id, start, end, limit=limit, with_delta=with_delta))

    async def state_at(self, session_id: str, version: int) -> dict[str, Any]:
        return await self._run(ops.state_at(self.config, session_id, version))

    async def diff(self, session_id: str, a: int, b: int) -> dict[str, Any]:
        return await self._run(ops.diff(self.config, session_id, a, b))

    async def seen(self, session_id: str, message_id: str) -> int | None:
        return await self._run(ops.seen(session_id, message_id))

    async def rollback(self, session_id: str, to_version: int, actor: str = "admin", *,
                       timeout_at_ms: int | None = None) -> CommitResult:
        return await self._run(ops.rollback(self.config, session_id, to_version, actor, timeout_at_ms))

    async def delete_session(self, session_id: str) -> bool:
        return await self._run(ops.delete_session(session_id))

    async def pending_effects(self, session_id: str) -> dict[int, list[dict[str, Any]]]:
        return await self._run(ops.pending_effects(session_id))

    async def ack_effects(self, session_id: str, version: int, *, defer: bool = False) -> bool:
        """See :meth:`Store.ack_effects`."""
        if defer:
            await self.driver.defer(ops.ack_commands(session_id, version))
            return True
        return await self._run(ops.ack_effects(session_id, version))

    async def flush(self) -> None:
        """Send deferred acknowledgements now."""
        await self.driver.flush()

    async def unacked_effects(self, older_than_ms: int = 30_000,
                              limit: int = 500) -> list[tuple[str, int, list[dict[str, Any]]]]:
        return await self._run(ops.unacked_effects(self.now_ms() - older_than_ms, limit))

    async def set_timeout(self, session_id: str, at_ms: int | None) -> bool:
        return await self._run(ops.set_timeout(session_id, at_ms, indexed=self.config.indexes_in_commit))

    async def due_timeouts(self, now_ms: int, limit: int = 100) -> list[str]:
        return await self._run(ops.due_timeouts(now_ms, limit))

    async def next_timeout_at(self) -> int | None:
        return await self._run(ops.next_timeout_at())

    async def active_sessions(self, *, min_ms: int | None = None, max_ms: int | None = None, limit: int = 100,
                              offset: int = 0, oldest_first: bool = False) -> list[tuple[str, int]]:
        return await self._run(ops.active_sessions(min_ms=min_ms, max_ms=max_ms, limit=limit, offset=offset,
                                                   oldest_first=oldest_first))

    async def active_count(self) -> int:
        return await self._run(ops.active_count())

    async def counters(self, flow: str | None = None) -> dict[str, dict[str, Any]]:
        return await self._run(ops.counters(flow))

    async def expire_idle(self, now_ms: int | None = None, *, flow_timeouts: Mapping[str, int] | None = None,
                          default_ms: int | None = None, limit: int = 1000) -> list[str]:
        now = self.now_ms() if now_ms is None else now_ms
        timeouts = dict(flow_timeouts or {})
        spans = [*timeouts.values(), *([default_ms] if default_ms is not None else [])]
        if not spans:
            return []
        done = []
        for sid, _ in await self.active_sessions(max_ms=now - min(spans), limit=limit, oldest_first=True):
            res = await self._run(ops.expire(self.config, sid, now, timeouts, default_ms))
            if res is not None and res.ok:
                done.append(sid)
        return done

    async def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self._run(ops.quarantined(limit))

    async def quarantine_count(self) -> int:
        return await self._run(ops.quarantine_count())

    async def iter_session_ids(self, batch: int = 1000) -> AsyncIterator[str]:
        async for key in self.client.scan_iter(match=K.STATE_PATTERN, count=batch):
            yield K.session_id_from_state_key(key)

    async def iter_sessions(self, batch: int = 500) -> AsyncIterator[dict[str, Any]]:
        async for chunk in _chunks(self.iter_session_ids(batch), batch):
            for _, state in await self._run(ops.read_states(chunk)):
                if state is not None:
                    yield state

    async def iter_histories(self, batch: int = 200) -> AsyncIterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        async for chunk in _chunks(self.iter_session_ids(batch), batch):
            for item in await self._run(ops.read_histories(self.config, chunk)):
                yield item

    async def ping(self) -> bool:
        return await self._run(ops.ping())


    # -- outbound delivery (flowkit.store.delivery); see Store for what each does

    async def defer(self, cmds: list[Any]) -> None:
        await self.driver.defer(cmds)

    async def sent_replies(self, session_id: str, version: int, count: int) -> dict[int, str]:
        return await self._run(delivery.sent_replies(session_id, version, count))

    async def lookup_wamid(self, wamid: str) -> tuple[str, int, int] | None:
        return await self._run(delivery.lookup_wamid(wamid))

    async def lookup_sent(self, wamid: str) -> delivery.SentMessage | None:
        return await self._run(delivery.lookup_sent(wamid))

    async def delivery_statuses(self, session_id: str) -> list[dict[str, Any]]:
        return await self._run(delivery.statuses(session_id))

    async def last_inbound(self, session_id: str) -> int | None:
        return await self._run(delivery.last_inbound(session_id))

    @property
    def transcript_keep(self) -> int | None:
        return tx.max_entries(self.config.history_max_len)

    @property
    def transcript_ttl_ms(self) -> int | None:
        return self.config.terminal_ttl_ms

    async def transcript(self, session_id: str) -> list[tx.Entry]:
        return await self._run(tx.transcript(session_id))


async def _chunks(it: AsyncIterator[str], n: int) -> AsyncIterator[list[str]]:
    chunk: list[str] = []
    async for x in it:
        chunk.append(x)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
