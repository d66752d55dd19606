"""The Redis state store with blocking I/O (:class:`Store`).

    store = Store(connect())
    res = store.commit("31612345678", 0, state, record, message_id="wamid.1")
    res.outcome, res.version                     # ("ok", 1)
    store.load("31612345678")                    # verified state, or None
    store.history("31612345678")                 # the records, version 1..N
    store.rollback("31612345678", 1)             # version N+1 == version 1, with a rollback record

Every method is one operation of :mod:`flowkit.store.ops`, run by a :class:`SyncDriver`;
:class:`flowkit.store.aio.AsyncStore` runs the same operations on asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flowkit.batching import batched
from flowkit.log import get_logger
from flowkit.store import delivery, flowdefs, ops
from flowkit.store import keys as K
from flowkit.store import transcript as tx
from flowkit.store.driver import Op, SyncDriver, T, is_cluster
from flowkit.store.values import CommitResult, StoreConfig

log = get_logger("flowkit.store")


class Store:
    """Versioned, atomic, history-keeping session state in Redis (standalone or Cluster).

    ``client`` is a ``redis.Redis`` or ``redis.cluster.RedisCluster`` (see :func:`connect`).
    Redis being unreachable or timing out raises :class:`~flowkit.errors.StoreUnavailable`;
    the store never retries by itself (a retry is the caller's choice, and always safe).
    """

    def __init__(self, client: Any, *, snapshot_every: int = 20, history_max_len: int | None = None,
                 dedupe_max: int = 1000, validator: Callable[[dict[str, Any]], None] | None = None,
                 now_ms: Callable[[], int] | None = None, terminal_ttl_ms: int | None = None) -> None:
        self.client = client
        kw: dict[str, Any] = {"now_ms": now_ms} if now_ms is not None else {}
        self.config = StoreConfig(snapshot_every=snapshot_every, history_max_len=history_max_len,
                                  dedupe_max=dedupe_max, validator=validator, terminal_ttl_ms=terminal_ttl_ms,
                                  indexes_in_commit=not is_cluster(client), **kw)
        self.driver = SyncDriver(client)

    def _run(self, op: Op[T]) -> T:
        return self.driver.run(op)

    @property
    def round_trips(self) -> int:
        """Network round trips this store has made (a commit's happy path costs exactly one)."""
        return self.driver.round_trips

    def now_ms(self) -> int:
        return self.config.now_ms()

    # -- the commit

    def commit(self, session_id: str, expected_version: int, state: dict[str, Any], record: dict[str, Any], *,
               previous: Mapping[str, Any] | None = None, message_id: str | None = None,
               effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None) -> CommitResult:
        """Apply one change to a session, atomically, in one round trip.

        ``expected_version`` is the version ``state`` was computed from (0: the session must
        not exist). Sets ``state["version"]`` and ``record["version"]`` to expected + 1.
        ``previous`` (the state at ``expected_version``) lets the store keep a compact delta
        and the per-step counters without reading anything; without it (or if it is not the
        stored state, which the script checks by checksum) the entry holds the whole state.
        ``message_id`` (default: the record's) is remembered for dedupe. ``effects`` go to
        the outbox with the commit (list them with :meth:`pending_effects`, then
        :meth:`ack_effects`). ``timeout_at_ms`` schedules the session in the timeouts index
        (None: no timeout). Raises :class:`~flowkit.errors.InvalidCommitError` before any I/O
        if the state or record breaks the contract.
        """
        return self._run(ops.commit(self.config, session_id, expected_version, state, record, previous=previous,
                                    message_id=message_id, effects=effects, timeout_at_ms=timeout_at_ms))

    def commit_many(self, commits: Iterable[Mapping[str, Any]], *, batch: int = 500) -> list[CommitResult]:
        """Many commits (each a dict of :meth:`commit`'s arguments), pipelined ``batch`` at a
        time: one round trip per batch on the happy path. For importers, simulations, benchmarks."""
        out: list[CommitResult] = []
        for chunk in batched(commits, batch):
            out += self.driver.run_many([ops.commit(self.config, **_commit_kwargs(c)) for c in chunk])
        return out

    # -- reads

    def flow_definition(self, name: str, version: str | None) -> tuple[str, str] | None:
        """``(version, YAML)`` of a stored flow (None: the latest version), or None."""
        return flowdefs.definition(self.client, name, version)

    def load(self, session_id: str) -> dict[str, Any] | None:
        """The session's state (None if there is none), verified by checksum, schema and validator.

        A state that fails is copied to ``fk:quarantine:{s:<sid>}:<digest>``, counted
        (:meth:`quarantine_count`), logged at error level, and the session is restored from
        its last good version (rebuilt from snapshots and history) as a new version with a
        ``recovery`` record (actor ``recovery``, error ``corrupt_state: <reason>``). This
        method then **returns the restored state**; its history shows what happened. Raises
        :class:`~flowkit.errors.CorruptStateError` only if no good version exists.
        """
        return self._run(ops.load(self.config, session_id))

    def load_raw(self, session_id: str) -> dict[str, Any] | None:
        """The stored state JSON as it is, not verified and never repaired (for checkers)."""
        return self._run(ops.load_raw(session_id))

    def history(self, session_id: str, start: int = 1, end: int | None = None, *, limit: int | None = None,
                with_delta: bool = False) -> list[dict[str, Any]]:
        """History records of versions ``start..end`` (inclusive) still in Redis, oldest first.

        Each record has the export columns (docs/design.md); ``with_delta`` adds the stored
        ``delta`` and the ``checksum`` of the state after it.
        """
        return self._run(ops.history(session_id, start, end, limit=limit, with_delta=with_delta))

    def state_at(self, session_id: str, version: int) -> dict[str, Any]:
        """The state as it was at ``version`` (nearest snapshot + deltas, checksum verified).

        Raises :class:`~flowkit.errors.VersionUnavailable` if the version does not exist or
        its history was trimmed, :class:`~flowkit.errors.SessionNotFound` if there is no session.
        """
        return self._run(ops.state_at(self.config, session_id, version))

    def diff(self, session_id: str, a: int, b: int) -> dict[str, Any]:
        """What changed from version ``a`` to ``b``: ``changes`` [{path, op, from, to}] and ``events``."""
        return self._run(ops.diff(self.config, session_id, a, b))

    def seen(self, session_id: str, message_id: str) -> int | None:
        """The version that applied ``message_id`` in this session, or None."""
        return self._run(ops.seen(session_id, message_id))

    # -- admin

    def rollback(self, session_id: str, to_version: int, actor: str = "admin", *,
                 timeout_at_ms: int | None = None) -> CommitResult:
        """Make the state of ``to_version`` current again, as a new version with a ``rollback``
        record (history is never rewritten; the replaced state is kept as a snapshot).

        The timeout is ``timeout_at_ms``, else the target's ``pending.deadline``, else the
        session's current one. Retries a few times on conflict, then raises ConflictError.
        """
        return self._run(ops.rollback(self.config, session_id, to_version, actor, timeout_at_ms))

    def delete_session(self, session_id: str) -> bool:
        """Remove a session and everything about it (e.g. an erasure request). True if it existed."""
        return self._run(ops.delete_session(session_id))

    # -- outbox

    def pending_effects(self, session_id: str) -> dict[int, list[dict[str, Any]]]:
        """Unacknowledged effects of this session: {version: effects}, oldest first."""
        return self._run(ops.pending_effects(session_id))

    def ack_effects(self, session_id: str, version: int, *, defer: bool = False) -> bool:
        """The effects committed with ``version`` were executed: drop them from the outbox.

        ``defer=True`` sends the acknowledgement with the next round trip (or within
        0.1 s) instead of one of its own, and returns True without waiting.
        """
        if defer:
            self.driver.defer(ops.ack_commands(session_id, version))
            return True
        return self._run(ops.ack_effects(session_id, version))

    def flush(self) -> None:
        """Send deferred acknowledgements now (before a process exits, or to read the outbox)."""
        self.driver.flush()

    def unacked_effects(self, older_than_ms: int = 30_000, limit: int = 500) -> list[tuple[str, int, list[dict[str, Any]]]]:
        """(session_id, version, effects) committed more than ``older_than_ms`` ago and never acknowledged."""
        return self._run(ops.unacked_effects(self.now_ms() - older_than_ms, limit))

    # -- timeouts and derived indexes

    def set_timeout(self, session_id: str, at_ms: int | None) -> bool:
        """(Re)schedule when a live session wakes up (None: never). False if it is not live."""
        return self._run(ops.set_timeout(session_id, at_ms, indexed=self.config.indexes_in_commit))

    def due_timeouts(self, now_ms: int, limit: int = 100) -> list[str]:
        """Sessions whose timeout is at or before ``now_ms``, earliest first."""
        return self._run(ops.due_timeouts(now_ms, limit))

    def next_timeout_at(self) -> int | None:
        return self._run(ops.next_timeout_at())

    def active_sessions(self, *, min_ms: int | None = None, max_ms: int | None = None, limit: int = 100,
                        offset: int = 0, oldest_first: bool = False) -> list[tuple[str, int]]:
        """Live (non-terminal) sessions as (session_id, last activity ms), newest first by default."""
        return self._run(ops.active_sessions(min_ms=min_ms, max_ms=max_ms, limit=limit, offset=offset,
                                             oldest_first=oldest_first))

    def active_count(self) -> int:
        return self._run(ops.active_count())

    def counters(self, flow: str | None = None) -> dict[str, dict[str, Any]]:
        """Sessions per flow: {flow: {"sessions": n, "status": {status: n}, "step": {step: n}}}."""
        return self._run(ops.counters(flow))

    def expire_idle(self, now_ms: int | None = None, *, flow_timeouts: Mapping[str, int] | None = None,
                    default_ms: int | None = None, limit: int = 1000) -> list[str]:
        """Mark live sessions idle longer than their flow's timeout as ``expired`` (an ``expire``
        commit each). ``flow_timeouts`` maps flow -> idle ms; ``default_ms`` covers other flows
        (None: they never expire here). Returns the expired session ids."""
        now = self.now_ms() if now_ms is None else now_ms
        timeouts = dict(flow_timeouts or {})
        spans = [*timeouts.values(), *([default_ms] if default_ms is not None else [])]
        if not spans:
            return []
        done = []
        for sid, _ in self.active_sessions(max_ms=now - min(spans), limit=limit, oldest_first=True):
            res = self._run(ops.expire(self.config, sid, now, timeouts, default_ms))
            if res is not None and res.ok:
                done.append(sid)
        return done

    def expire(self, session_id: str, *, actor: str = "admin", reason: str = "expired by an operator",
               now_ms: int | None = None) -> CommitResult | None:
        """End one live session as ``expired`` now, whatever its idle time (an ``expire`` commit
        with ``reason`` as its error). None if it is not live."""
        now = self.now_ms() if now_ms is None else now_ms
        return self._run(ops.expire(self.config, session_id, now, {}, 0, actor=actor, reason=reason))

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent quarantined states: key, session_id, at, reason, type, version."""
        return self._run(ops.quarantined(limit))

    def quarantine_count(self) -> int:
        """How many bad states were ever quarantined."""
        return self._run(ops.quarantine_count())

    # -- iteration (SCAN on every primary, pipelined, bounded memory)

    def iter_session_ids(self, batch: int = 1000) -> Iterator[str]:
        for key in self.client.scan_iter(match=K.STATE_PATTERN, count=batch):
            yield K.session_id_from_state_key(key)

    def iter_sessions(self, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every session's stored state (unverified; see :meth:`load`), ``batch`` per round trip."""
        for chunk in batched(self.iter_session_ids(batch), batch):
            for _, state in self._run(ops.read_states(chunk)):
                if state is not None:
                    yield state

    def iter_histories(self, batch: int = 200) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(state, history records) of every session, ``batch`` sessions per round trip (for exports)."""
        for chunk in batched(self.iter_session_ids(batch), batch):
            yield from self._run(ops.read_histories(self.config, chunk))

    def ping(self) -> bool:
        return self._run(ops.ping())

    def reconcile(self, *, dry_run: bool = False, batch: int = 500, settle: float = 0.5) -> Any:
        """Rebuild the derived indexes from the sessions; see :func:`flowkit.store.reconcile.reconcile`."""
        from flowkit.store.reconcile import reconcile

        return reconcile(self, dry_run=dry_run, batch=batch, settle=settle)


    # -- outbound delivery (flowkit.store.delivery)

    def defer(self, cmds: list[Any]) -> None:
        """Queue idempotent writes (``flowkit.store.delivery.*_commands``) for the next round trip."""
        self.driver.defer(cmds)

    def sent_replies(self, session_id: str, version: int, count: int) -> dict[int, str]:
        """Replies of outbox entry ``version`` that Graph accepted already: {index: wamid}."""
        return self._run(delivery.sent_replies(session_id, version, count))

    def lookup_wamid(self, wamid: str) -> tuple[str, int, int] | None:
        """(session_id, outbox version, reply index) of a message flowkit sent, or None."""
        return self._run(delivery.lookup_wamid(wamid))

    def lookup_sent(self, wamid: str) -> delivery.SentMessage | None:
        """The wamid's map entry, with the flow and step that sent it when recorded, or None."""
        return self._run(delivery.lookup_sent(wamid))

    def delivery_statuses(self, session_id: str) -> list[dict[str, Any]]:
        """The session's recent delivery statuses (sent, delivered, read, failed), oldest first."""
        return self._run(delivery.statuses(session_id))

    def last_inbound(self, session_id: str) -> int | None:
        """When the user last wrote (epoch ms) if the 24-hour window is still open, else None."""
        return self._run(delivery.last_inbound(session_id))

    # -- transcripts (flowkit.store.transcript)

    @property
    def transcript_keep(self) -> int | None:
        """Transcript entries kept per session (None: all); follows ``history_max_len``."""
        return tx.max_entries(self.config.history_max_len)

    @property
    def transcript_ttl_ms(self) -> int | None:
        """A transcript expires this long after its last message (the terminal TTL; None: never)."""
        return self.config.terminal_ttl_ms

    def transcript(self, session_id: str) -> list[tx.Entry]:
        """The session's messages both ways, oldest first, outbound ones with their statuses."""
        return self._run(tx.transcript(session_id))


def _commit_kwargs(c: Mapping[str, Any]) -> dict[str, Any]:
    kw = dict(c)
    return {"sid": kw.pop("session_id"), "expected": kw.pop("expected_version"), "timeout_at_ms": kw.pop("timeout_at_ms", None),
            **kw}
