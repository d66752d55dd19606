"""The commit, as a sans-io generator: one round trip on its happy path (commit.lua).

On a single server the script writes the derived indexes and counters itself (issue #17). On a
cluster they live in other slots, so they are written optimistically beside the script and a
second batch corrects them only if the script answers ``conflict`` or ``duplicate`` (or the
caller's ``previous`` turned out not to be the stored state); ``flowkit reconcile`` repairs any
drift a crash leaves there. The state hash is the truth."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from flowkit.errors import (
    CorruptStateError,
    InvalidCommitError,
)
from flowkit.store import codec
from flowkit.store import entries as packed
from flowkit.store import keys as K
from flowkit.store import migrate as M
from flowkit.store import statefield as SF
from flowkit.store.codec import s
from flowkit.store.contract import (
    CommitArgs,
    CommitReply,
)
from flowkit.store.driver import Batch, Op
from flowkit.store.indexcmds import Triple, _counter_cmds, _index_cmds, _triple
from flowkit.store.loading import verify
from flowkit.store.replies import (
    _bytes,
    check,
)
from flowkit.store.values import CommitResult, StoreConfig


def commit(cfg: StoreConfig, sid: str, expected: int, state: dict[str, Any], record: dict[str, Any], *,
           previous: Mapping[str, Any] | None = None, message_id: str | None = None,
           effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None,
           snapshot_old: bool = False) -> Op[CommitResult]:
    now = cfg.now_ms()
    args, state_json, base = _prepare(cfg, sid, expected, state, record, previous=previous, message_id=message_id,
                                      effects=effects, timeout_at_ms=timeout_at_ms, snapshot_old=snapshot_old,
                                      now=now)
    whole = _as_whole(sid, args, state_json, record, state["flow_version"])
    if cfg.indexes_in_commit:
        # a single server: the script writes the indexes and counters too (one round trip,
        # nothing optimistic, nothing to undo, nothing a crash can leave stale)
        reply = yield from _send_commit(sid, args, whole, [], indexed=True)
        res = CommitReply.decode(check(reply, sid))
        return CommitResult("ok", args.version) if res.tag == "ok" else _not_applied(cfg, sid, res)
    assumed: Triple | None = (base["flow"], base["step"], base["status"]) if base is not None else None
    return (yield from _commit_beside(cfg, sid, args, whole, (state["flow"], state["step"], state["status"]),
                                      assumed, known_old=expected == 0 or base is not None, now=now))


def _prepare(cfg: StoreConfig, sid: str, expected: int, state: dict[str, Any], record: dict[str, Any], *,
             previous: Mapping[str, Any] | None, message_id: str | None, effects: Iterable[Mapping[str, Any]],
             timeout_at_ms: int | None, snapshot_old: bool,
             now: int) -> tuple[CommitArgs, bytes, Mapping[str, Any] | None]:
    """The commit script's arguments (validated, encoded once), the state JSON, and the base the
    delta was made against (``previous`` when it is the expected version, else None)."""
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise InvalidCommitError(f"session {sid!r}: expected_version must be an integer >= 0, got {expected!r}")
    new = expected + 1
    state["version"] = new
    record["version"] = new
    codec.normalize_record(record)
    codec.validate_commit(sid, state, record, cfg.validator)
    effects = list(effects)
    # Everything goes to Redis as UTF-8 bytes, encoded once (canonical JSON is bytes already).
    # ``previous`` only feeds the base checksum, so it may be encoded ``trusted``: a value
    # json.dumps would refuse can only make the checksum differ from the stored state's (the
    # script then stores the whole state), and the delta compares values type-strictly, so
    # an odd value in ``previous`` only turns into a "set" of the new one. The delta itself
    # holds parts of ``state``, which passed the full check.
    try:
        state_json = codec.canonical(state)
        fx = b"%d:%b" % (now, codec.canonical(effects)) if effects else b""
        base: Mapping[str, Any] | None = None
        base_sum = ""
        if previous is not None and expected > 0 and previous.get("version") == expected:
            base, base_sum = previous, codec.checksum(codec.canonical(previous, trusted=True))
        # Snapshots are history elements holding the whole state (every ``snapshot_every``-th
        # version, and a rollback's): one listpack entry instead of a hash field of ~1 KB
        whole = base is None or snapshot_old or (cfg.snapshot_every > 0 and new % cfg.snapshot_every == 0)
        delta_json = (codec.full_delta_json(state_json) if whole
                      else codec.canonical(codec.state_delta(base, state, record["ts"]), trusted=True))  # type: ignore[arg-type]  # (base is a dict when a delta is asked for)
    except (TypeError, ValueError) as exc:
        raise InvalidCommitError(f"session {sid!r}: state, previous or effects are not JSON: {exc}") from exc
    state_sum = codec.checksum(state_json)
    mid = message_id if message_id is not None else record["message_id"]
    dedupe = codec.message_key(mid) if mid else ""
    flow, step, status = state["flow"], state["step"], state["status"]
    terminal = codec.is_terminal(status)
    timeout = None if terminal or timeout_at_ms is None else int(timeout_at_ms)
    maxlen = cfg.history_max_len or 0
    # the flow is written out unless the element before says it (and is sure to be kept)
    same_flow = (base is not None and not maxlen and base["flow"] == flow
                 and base["flow_version"] == state["flow_version"])
    try:
        element = packed.pack(sid, record, flow, state["flow_version"], state_sum, delta_json, same_flow=same_flow)
    except (TypeError, ValueError) as exc:
        raise InvalidCommitError(f"session {sid!r}: the record is not JSON: {exc}") from exc
    args = CommitArgs(expected=expected, dedupe=dedupe, version=new, state=SF.pack(state_json), checksum=state_sum,
                      base_checksum=base_sum, flow=flow, step=step or "", status=status,
                      updated_at=state["updated_at"], timeout_at="" if timeout is None else timeout,
                      terminal=int(terminal), outbox=fx, dedupe_max=cfg.dedupe_max, history_max=maxlen,
                      terminal_ttl_ms=cfg.terminal_ttl_ms or 0, element=element, whole=int(whole),
                      session_id=sid, outbox_member=K.outbox_member(sid, new))
    return args, state_json, base


def _as_whole(sid: str, args: CommitArgs, state_json: bytes, record: Mapping[str, Any],
              flow_version: str) -> Callable[[], CommitArgs]:
    """The same commit with an element holding the whole state, built only if the script finds
    the base stale (rare: a caller with a stale or foreign ``previous``)."""
    def build() -> CommitArgs:
        element = packed.pack(sid, record, args.flow, flow_version, args.checksum,
                              codec.full_delta_json(state_json), same_flow=False)
        return replace(args, base_checksum="", whole=1, element=element)
    return build


def _commit_beside(cfg: StoreConfig, sid: str, args: CommitArgs, whole: Callable[[], CommitArgs], new_triple: Triple,
                   assumed: Triple | None, *, known_old: bool, now: int) -> Op[CommitResult]:
    """A cluster's commit: the derived indexes live in other slots, so they are written
    optimistically in the same round trip as the script and corrected if it wrote nothing."""
    flow, status = args.flow, new_triple[2]
    new, fx, member = args.version, args.outbox, args.outbox_member
    moves = codec.counter_move(assumed, new_triple) if known_old else {}
    idx = _index_cmds(sid, status, args.updated_at, None if args.timeout_at == "" else args.timeout_at)
    if fx:
        # NX: an entry already there belongs to the commit that really wrote this version (a
        # duplicate delivery or a lost race), so there is nothing to put back if ours fails.
        idx.append(("ZADD", K.IDX_OUTBOX, "NX", now, member))
    idx += _counter_cmds(moves, [flow] if known_old and (assumed is None or assumed[0] != flow) else [])

    reply = yield from _send_commit(sid, args, whole, idx, indexed=False)
    if isinstance(reply, Exception):
        if moves:  # the script wrote nothing: take the counter increments back (reconcile fixes the rest)
            yield _counter_cmds({key: -n for key, n in moves.items()})
        check(reply, sid)
    res = CommitReply.decode(reply)
    if res.tag == "ok":
        if not known_old or not res.base_ok:
            # ``previous`` was missing or was not the stored state: count from what was stored.
            real = _triple(res.flow, res.step, res.status)
            fix = codec.subtract(codec.counter_move(real, new_triple), moves)
            cmds = _counter_cmds(fix, [flow] if real is None or real[0] != flow else [])
            if cmds:
                yield cmds
        return CommitResult("ok", new)
    # conflict / duplicate: nothing was written; undo the optimistic index writes from the facts
    cur = res.version
    t_status = res.status if cur != 0 else None
    undo = _index_cmds(sid, t_status or None, res.updated_at or 0, res.timeout_at)
    if fx and not res.outbox_at:
        # No effects stored under this version: the entry can only be ours (or a leftover of an
        # acknowledgement that already ran), so it goes. If effects are stored, the entry is left
        # alone: re-adding it here could undo an acknowledgement (deferred, riding on another
        # round trip) that removed it after the script looked.
        undo.append(("ZREM", K.IDX_OUTBOX, member))
    undo += _counter_cmds({key: -n for key, n in moves.items()})
    yield undo
    return _not_applied(cfg, sid, res)


def _send_commit(sid: str, args: CommitArgs, whole: Callable[[], CommitArgs], beside: Batch, *,
                 indexed: bool) -> Op[Any]:
    """The commit script's reply (with ``beside`` in the same round trip), after converting a
    layout-1 session or resending the whole state when the script asks for it."""
    k = K.session_keys(sid)
    call = args.call(k, indexed=indexed)
    reply = (yield [call, *beside])[0]
    if M.is_wrongtype(reply) and (yield from M.migrate_session(sid)):
        # a layout-1 session, met for the first time: converted, so the script can run now (any
        # index writes beside it already went out; the script writing nothing is undone after)
        reply = (yield [call])[0]
    if isinstance(reply, list) and s(reply[0]) == "rebase":
        # ``previous`` was not the stored state and the script cannot unpack the packed state
        # to store it whole: send it whole (rare: a caller with a stale or foreign ``previous``)
        reply = (yield [whole().call(k, indexed=indexed)])[0]
    return reply


def _not_applied(cfg: StoreConfig, sid: str, res: CommitReply) -> CommitResult:
    """The result of a commit the script refused (nothing written)."""
    cur = res.version
    if res.tag == "corrupt":
        raise CorruptStateError(f"session {sid!r}: the stored version is not a number; load() it to recover")
    if res.tag == "duplicate":
        return CommitResult("duplicate", cur)
    current = None
    if res.state is not None and cur > 0:
        # a bad one: the caller's load() deals with it
        current, _why = verify(cfg, sid, cur, SF.unpack(_bytes(res.state)), res.checksum)
    return CommitResult("conflict", cur, current)
