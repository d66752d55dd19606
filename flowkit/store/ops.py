"""Every store operation, once, as a sans-io generator (the runtime's ``_process`` pattern).

Each ``yield`` hands the driver one batch of commands and gets their replies back; the
sync and async stores only differ in how they send a batch (:mod:`flowkit.store.driver`).
Reading an operation top to bottom shows exactly how many round trips it costs.

The commit's happy path is one batch: the commit script plus the derived-index writes
(other slots, so outside the script). Only if the script answers ``conflict`` or
``duplicate`` (or the caller's ``previous`` turned out not to be the stored state) does a
second batch correct those optimistic index writes. ``flowkit reconcile`` repairs any drift
that crashes or races leave behind; the state hash is the truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from redis import exceptions as rx

from flowkit.errors import (
    ConflictError,
    CorruptStateError,
    InvalidCommitError,
    SessionNotFound,
    StoreError,
    StoreOutOfMemory,
    StoreUnavailable,
    VersionUnavailable,
)
from flowkit.log import get_logger
from flowkit.store import codec
from flowkit.store import entries as packed
from flowkit.store import keys as K
from flowkit.store import migrate as M
from flowkit.store import statefield as SF
from flowkit.store.codec import dumps, s
from flowkit.store.contract import (
    CommitArgs,
    CommitReply,
    QuarantineArgs,
    QuarantineReply,
    RecoverArgs,
    RecoverReply,
    TimeoutArgs,
)
from flowkit.store.driver import UNAVAILABLE, Batch, Op
from flowkit.store.values import CommitResult, StoreConfig

log = get_logger("flowkit.store")

Triple = tuple[str | None, str | None, str | None]  # (flow, step, status) as the counters see a session


# ---------------------------------------------------------------- reply helpers


def check(reply: Any, sid: str | None = None) -> Any:
    """Raise the store error an error reply stands for; return other replies unchanged."""
    if not isinstance(reply, Exception):
        return reply
    if isinstance(reply, UNAVAILABLE):
        raise StoreUnavailable(f"Redis is unavailable: {reply}") from reply
    if is_oom(reply):
        where = f"session {sid!r}: " if sid else ""
        raise StoreOutOfMemory(
            f"{where}Redis is out of memory (maxmemory reached) and refused the write; the session is unchanged. Free "
            "memory (export and delete finished sessions, set a terminal TTL) or raise maxmemory; retrying later "
            "is safe") from reply
    if isinstance(reply, rx.ResponseError) and "WRONGTYPE" in str(reply):
        raise CorruptStateError(f"session {sid!r}: a key has the wrong Redis type ({reply}); load() it to recover")
    raise StoreError(f"Redis refused a command: {reply}") from reply


def is_oom(reply: Any) -> bool:
    """An OOM error reply (redis-py maps "-OOM" to OutOfMemoryError; inside a script the reply
    is the script's error, which still starts with "OOM")."""
    return isinstance(reply, rx.OutOfMemoryError) or (
        isinstance(reply, rx.ResponseError) and str(reply).startswith("OOM "))


def pairs(reply: Any) -> list[tuple[Any, Any]]:
    """HGETALL / ZRANGE WITHSCORES replies in any shape (raw flat list, dict, list of pairs)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    if isinstance(reply[0], list | tuple):
        return [(a, b) for a, b in reply]
    it = iter(reply)
    return list(zip(it, it, strict=True))


def entries(sid: str, reply: Any, fallback: packed.Flow | None = None) -> list[tuple[int, dict[str, Any]]]:
    """An LRANGE reply of the history list as [(version, record with its delta and checksum)]."""
    return [(rec["version"], rec) for rec in decode_hist(sid, reply, fallback=fallback)]


def decode_hist(sid: str, reply: Any, *, with_delta: bool = True,
                fallback: packed.Flow | None = None) -> list[dict[str, Any]]:
    try:
        return packed.decode_all(sid, reply or [], with_delta=with_delta, fallback=fallback)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptStateError(f"session {sid!r}: an element of its history in Redis is damaged ({exc}); `flowkit "
                                "check` lists such sessions, and `flowkit restore` puts one back from a backup") from exc


def read_hist(sid: str) -> Op[list[Any]]:
    """The session's raw history elements; a layout-1 stream is migrated first (one session)."""
    k = K.session_keys(sid)
    for _ in range(M.ATTEMPTS):
        r = yield [("LRANGE", k.hist, 0, -1)]
        if not M.is_wrongtype(r[0]):
            return list(check(r[0], sid) or [])
        yield from M.migrate_session(sid)
    raise StoreError(f"session {sid!r}: its history key is neither a list nor a stream; load() it to recover")


def _bytes(v: object) -> bytes:
    return v if isinstance(v, bytes) else str(v or "").encode()


def as_int(v: Any) -> int | None:
    try:
        return int(float(s(v))) if v is not None and s(v) != "" else None
    except ValueError:
        return None


def state_head(reply: Any) -> tuple[Any, bytes | None, Any, Any]:
    """(version, state JSON, checksum, timeout_at) of a HGETALL reply of a state hash (the
    state packed in chunks or, in the old layout, in ``state``: flowkit/store/statefield.py)."""
    fields = SF.as_fields(pairs(reply))
    return fields.get("version"), SF.state_text(fields), fields.get("checksum"), fields.get("timeout_at")


def _triple(flow: Any, step: Any, status: Any) -> Triple | None:
    f, st, ss = s(flow) or None, s(step) or None, s(status) or None
    return None if f is None else (f, st, ss)


def _counter_cmds(moves: Mapping[tuple[str, str], int], new_flows: Iterable[str] = ()) -> Batch:
    cmds: Batch = [("HINCRBY", K.counter_key(flow), field, n) for (flow, field), n in moves.items()]
    cmds += [("SADD", K.IDX_FLOWS, f) for f in sorted(set(new_flows))]
    return cmds


def _index_cmds(sid: str, status: str | None, updated_at: Any, timeout_at: Any) -> Batch:
    """Where one session belongs in the active and timeouts indexes (status None: nowhere)."""
    live = status is not None and not codec.is_terminal(status)
    cmds: Batch = [("ZADD", K.IDX_ACTIVE, updated_at, sid) if live else ("ZREM", K.IDX_ACTIVE, sid)]
    if live and timeout_at not in (None, "", b""):
        cmds.append(("ZADD", K.IDX_TIMEOUTS, timeout_at, sid))
    else:
        cmds.append(("ZREM", K.IDX_TIMEOUTS, sid))
    return cmds


# ---------------------------------------------------------------- commit


def commit(cfg: StoreConfig, sid: str, expected: int, state: dict[str, Any], record: dict[str, Any], *,
           previous: Mapping[str, Any] | None = None, message_id: str | None = None,
           effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None,
           snapshot_old: bool = False) -> Op[CommitResult]:
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise InvalidCommitError(f"session {sid!r}: expected_version must be an integer >= 0, got {expected!r}")
    new = expected + 1
    state["version"] = new
    record["version"] = new
    codec.normalize_record(record)
    codec.validate_commit(sid, state, record, cfg.validator)
    effects = list(effects)
    now = cfg.now_ms()
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
        head = packed.head(sid, record, flow, state["flow_version"], state_sum, same_flow=same_flow)
    except (TypeError, ValueError) as exc:
        raise InvalidCommitError(f"session {sid!r}: the record is not JSON: {exc}") from exc
    args = CommitArgs(expected=expected, dedupe=dedupe, version=new, state=SF.pack(state_json), checksum=state_sum,
                      base_checksum=base_sum, flow=flow, step=step or "", status=status,
                      updated_at=state["updated_at"], timeout_at="" if timeout is None else timeout,
                      terminal=int(terminal), outbox=fx, dedupe_max=cfg.dedupe_max, history_max=maxlen,
                      terminal_ttl_ms=cfg.terminal_ttl_ms or 0, head=head, delta=delta_json,
                      session_id=sid, outbox_member=K.outbox_member(sid, new))
    if cfg.indexes_in_commit:
        # a single server: the script writes the indexes and counters too (one round trip,
        # nothing optimistic, nothing to undo, nothing a crash can leave stale)
        reply = yield from _send_commit(sid, args, state_json, [], indexed=True)
        res = CommitReply.decode(check(reply, sid))
        return CommitResult("ok", new) if res.tag == "ok" else _not_applied(cfg, sid, res)

    # Optimistic derived-index writes, in the same round trip as the script.
    new_triple: Triple = (flow, step, status)
    known_old = expected == 0 or base is not None
    assumed: Triple | None = (base["flow"], base["step"], base["status"]) if base is not None else None
    moves = codec.counter_move(assumed, new_triple) if known_old else {}
    member = K.outbox_member(sid, new)
    idx = _index_cmds(sid, status, state["updated_at"], timeout)
    if fx:
        # NX: an entry already there belongs to the commit that really wrote this version (a
        # duplicate delivery or a lost race), so there is nothing to put back if ours fails.
        idx.append(("ZADD", K.IDX_OUTBOX, "NX", now, member))
    idx += _counter_cmds(moves, [flow] if known_old and (assumed is None or assumed[0] != flow) else [])

    reply = yield from _send_commit(sid, args, state_json, idx, indexed=False)
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


def _send_commit(sid: str, args: CommitArgs, state_json: bytes, beside: Batch, *, indexed: bool) -> Op[Any]:
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
        whole = replace(args, base_checksum="", delta=codec.full_delta_json(state_json))
        reply = (yield [whole.call(k, indexed=indexed)])[0]
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


# ---------------------------------------------------------------- load, verify, recover


def verify(cfg: StoreConfig, sid: str, version: Any, text: Any, digest: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(state, None) if the stored fields hold a good state, else (None, reason)."""
    if text is None or digest is None or version is None:
        return None, "incomplete_state"
    raw = text.encode() if isinstance(text, str) else text
    if codec.checksum(raw) != s(digest):
        return None, "checksum_mismatch"
    try:
        state = json.loads(raw)
    except ValueError:
        return None, "unparsable_json"
    v = as_int(version)
    why = codec.state_problem(state, sid, v)
    if why:
        return None, f"schema: {why}"
    if cfg.validator is not None:
        try:
            cfg.validator(state)
        except Exception as exc:  # noqa: BLE001 - any validator failure means "not valid"
            return None, f"validator: {exc}"
    return state, None


def _valid(cfg: StoreConfig, sid: str, state: Any, version: int) -> bool:
    if codec.state_problem(state, sid, version):
        return False
    if cfg.validator is not None:
        try:
            cfg.validator(state)
        except Exception:  # noqa: BLE001
            return False
    return True


def load(cfg: StoreConfig, sid: str, *, recover: bool = True, _attempt: int = 0) -> Op[dict[str, Any] | None]:
    """The session's state, verified (checksum, schema, validator).

    A bad state is quarantined and the session restored from its last good version as a
    new ``recovery`` commit; the restored state is returned (see :meth:`Store.load`).
    """
    k = K.session_keys(sid)
    r = yield [("HGETALL", k.state), ("EXISTS", k.state), ("EXISTS", k.hist)]
    exists_state, exists_hist = check(r[1]), check(r[2])
    if isinstance(r[0], rx.ResponseError) and "WRONGTYPE" in str(r[0]):
        version = text = digest = timeout = None
        reason = "wrong_type"
        guard = ("type:*", "")
    else:
        version, text, digest, timeout = state_head(check(r[0]))
        if not exists_state:
            if not exists_hist:
                return None
            reason = "missing_state"
        else:
            state, reason = verify(cfg, sid, version, text, digest)  # type: ignore[assignment]  # (verify returns the state or None with a reason)
            if reason is None:
                return state
        guard = (s(version) or "", s(digest) or "")
    if not recover:
        raise CorruptStateError(f"session {sid!r}: stored state is bad ({reason})")
    return (yield from _recover(cfg, sid, reason, guard, as_int(version), s(text), as_int(timeout), _attempt))


def replay_good(cfg: StoreConfig, sid: str, hist: list[tuple[int, dict[str, Any]]],
                snaps: Mapping[int, str]) -> tuple[int, dict[str, Any]] | None:
    """The newest version that history and snapshots can rebuild and that passes every check."""
    good: dict[int, dict[str, Any]] = {}
    snap_states: dict[int, dict[str, Any]] = {}
    for v, value in snaps.items():
        digest, _, text = value.partition(":")
        if codec.checksum(text) == digest:
            try:
                st = json.loads(text)
            except ValueError:
                continue
            snap_states[v] = st
            if _valid(cfg, sid, st, v):
                good[v] = st
    cur: dict[str, Any] | None = None
    cur_v = 0
    for v, rec in hist:
        delta = rec["delta"]
        try:
            if "r" in delta:
                st = delta["r"]
            elif cur is not None and cur_v == v - 1:
                st = codec.state_from_entry(cur, rec, delta)
            elif v - 1 in snap_states:
                st = codec.state_from_entry(snap_states[v - 1], rec, delta)
            else:
                cur = None
                continue
        except (ValueError, KeyError, TypeError, AttributeError):
            cur = None
            continue
        if codec.checksum(dumps(st)) != rec["checksum"]:
            cur = None  # the chain is broken here; a later snapshot or full entry may rebase it
            continue
        cur, cur_v = st, v
        if _valid(cfg, sid, st, v):
            good[v] = st
    if not good:
        return None
    best = max(good)
    return best, good[best]


def _recover(cfg: StoreConfig, sid: str, reason: str, guard: tuple[str, str], raw_version: int | None,
             raw_text: str | None, raw_timeout: int | None, attempt: int) -> Op[dict[str, Any] | None]:
    k = K.session_keys(sid)
    raw_hist = yield from read_hist(sid)
    r = yield [("HGETALL", k.snap)]
    try:
        hist = entries(sid, raw_hist)
    except CorruptStateError:
        hist = []  # the history itself is damaged: only snapshots can help
    snaps = {int(str(s(a))): str(s(b)) for a, b in pairs(check(r[0], sid))}
    qkey = K.quarantine_key(sid, codec.checksum(f"{guard[0]}\x00{guard[1]}\x00{raw_text or ''}"))
    now = cfg.now_ms()
    best = replay_good(cfg, sid, hist, snaps)
    if best is None:
        r = yield [QuarantineArgs(raw_version=guard[0], raw_checksum=guard[1], reason=reason, now=now).call(k, qkey)]
        q = QuarantineReply.decode(check(r[0], sid))
        if q.quarantined and q.created:
            yield [("INCR", K.QUARANTINE_COUNT), ("ZADD", K.QUARANTINE_INDEX, now, qkey)]
        log.error("session state quarantined; no good version to restore",
                  extra={"session_id": sid, "reason": reason, "quarantine_key": qkey})
        raise CorruptStateError(f"session {sid!r}: stored state is bad ({reason}) and no good version could be "
                                f"rebuilt from history or snapshots; it was copied to {qkey}")
    good_v, good = best
    last = max([raw_version or 0, good_v, *(v for v, _ in hist[-1:]), *snaps])
    new_v = last + 1
    state = dict(good)
    state["version"] = new_v
    state["updated_at"] = max(now, int(state["started_at"]))
    from_step = hist[-1][1]["to_step"] if hist else None
    record: dict[str, Any] = {
        "version": new_v, "ts": now, "event": "recovery", "from_step": from_step, "to_step": state["step"],
        "path": [state["step"]] if state["step"] and state["step"] != from_step else [], "status": state["status"],
        "message_id": None, "input": dumps({"restored_from": good_v, "quarantine": qkey}),
        "error": f"corrupt_state: {reason}", "actor": "recovery",
    }
    state_json = dumps(state)
    state_sum = codec.checksum(state_json)
    terminal = codec.is_terminal(state["status"])
    timeout = None if terminal else raw_timeout
    args = RecoverArgs(raw_version=guard[0], raw_checksum=guard[1], version=new_v, state=SF.pack(state_json.encode()),
                       checksum=state_sum, flow=state["flow"], step=state["step"] or "", status=state["status"],
                       updated_at=state["updated_at"], timeout_at="" if timeout is None else timeout,
                       terminal=int(terminal), history_max=cfg.history_max_len or 0,
                       terminal_ttl_ms=cfg.terminal_ttl_ms or 0, reason=reason, now=now,
                       head=packed.head(sid, record, state["flow"], state["flow_version"], state_sum, same_flow=False),
                       delta=codec.full_delta_json(state_json))
    r = yield [args.call(k, qkey), *_index_cmds(sid, state["status"], state["updated_at"], timeout)]
    rec = RecoverReply.decode(check(r[0], sid))
    if not rec.ok:
        if attempt >= 3:
            raise ConflictError(f"session {sid!r}: kept changing while being recovered")
        return (yield from load(cfg, sid, _attempt=attempt + 1))  # it changed under us: look again
    real = _triple(rec.flow, rec.step, rec.status)
    if real is None and hist:  # the bad key held no index fields: count it as its last history entry said
        last_rec = hist[-1][1]
        real = (last_rec["flow"], last_rec["to_step"], last_rec["status"])
    fix = codec.counter_move(real, (state["flow"], state["step"], state["status"]))
    cmds = _counter_cmds(fix, [state["flow"]])
    if rec.created:
        cmds += [("INCR", K.QUARANTINE_COUNT), ("ZADD", K.QUARANTINE_INDEX, now, qkey)]
    yield cmds
    log.error("session state quarantined and restored from its last good version",
              extra={"session_id": sid, "reason": reason, "quarantine_key": qkey, "restored_from": good_v,
                     "new_version": new_v})
    return state


def load_raw(sid: str) -> Op[dict[str, Any] | None]:
    """The stored state as it is, unverified (for checkers and debugging)."""
    k = K.session_keys(sid)
    r = yield [("HGETALL", k.state)]
    text = state_head(check(r[0], sid))[1]
    if text is None:
        return None
    try:
        return json.loads(text)  # type: ignore[no-any-return]  # (a JSON object (the state), validated by the caller)
    except ValueError as exc:
        raise CorruptStateError(f"session {sid!r}: stored state is not JSON") from exc


# ---------------------------------------------------------------- history and time travel


def history(sid: str, start: int = 1, end: int | None = None, *, limit: int | None = None,
            with_delta: bool = False) -> Op[list[dict[str, Any]]]:
    # the whole list: it is small (one listpack), and elements may name their flow by reference
    raw = yield from read_hist(sid)
    out = [rec for rec in decode_hist(sid, raw, with_delta=with_delta)
           if rec["version"] >= start and (end is None or rec["version"] <= end)]
    return out if limit is None else out[:limit]


def state_at(cfg: StoreConfig, sid: str, version: int) -> Op[dict[str, Any]]:
    """The state at ``version``: the nearest snapshot at or below it, plus the deltas after it."""
    k = K.session_keys(sid)
    r = yield [("HGETALL", k.state), ("HKEYS", k.snap)]
    cur_v, text, digest, _ = state_head(check(r[0], sid))
    if cur_v is None:
        raise SessionNotFound(f"no session {sid!r}")
    current = as_int(cur_v) or 0
    if version == current:
        state, why = verify(cfg, sid, cur_v, text, digest)
        if state is None:
            raise CorruptStateError(f"session {sid!r}: stored state is bad ({why}); load() it to recover")
        return state
    if not 1 <= version < current:
        raise VersionUnavailable(f"session {sid!r} has versions 1..{current}, not {version}")
    bases = sorted((v for v in (as_int(x) for x in check(r[1], sid) or []) if v is not None and v <= version),
                   reverse=True)
    for base in [*bases[:1], 0]:  # the nearest snapshot, else a replay from the first entry
        raw = yield from read_hist(sid)
        if base:
            r = yield [("HGET", k.snap, base)]
        hist = [(v, rec) for v, rec in entries(sid, raw) if base < v <= version]
        st: dict[str, Any] | None = None
        digest_ = ""
        if base:
            digest_, _, text_ = (s(check(r[0], sid)) or "").partition(":")
            if codec.checksum(text_) != digest_:
                log.warning("bad snapshot ignored", extra={"session_id": sid, "version": base})
                continue
            st = json.loads(text_)
        at = base
        for v, rec in hist:
            delta = rec["delta"]
            if "r" not in delta and (st is None or v != at + 1):
                st = None  # no chain here (trimmed, or a gap): the next whole state starts one
                continue
            st, at = codec.state_from_entry(st, rec, delta), v
        if st is None or at != version:
            if base:
                continue
            raise VersionUnavailable(f"session {sid!r}: version {version} is no longer in Redis (history trimmed); "
                                     "read it from a history export")
        want = hist[-1][1]["checksum"] if hist else digest_
        if codec.checksum(dumps(st)) != want:
            raise CorruptStateError(f"session {sid!r}: rebuilding version {version} gives a state that fails its "
                                    "recorded checksum")
        return st
    raise VersionUnavailable(f"session {sid!r}: version {version} cannot be rebuilt")  # pragma: no cover


def diff_states(a: Mapping[str, Any], b: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every leaf that differs between two states, as {path, op, from, to}."""
    out: list[dict[str, Any]] = []
    for key in sorted(set(a) | set(b)):
        p = (*path, key)
        if key not in b:
            out.append({"path": list(p), "op": "removed", "from": a[key]})
        elif key not in a:
            out.append({"path": list(p), "op": "added", "to": b[key]})
        elif isinstance(a[key], dict) and isinstance(b[key], dict):
            out += diff_states(a[key], b[key], p)
        elif not codec.same(a[key], b[key]):
            out.append({"path": list(p), "op": "changed", "from": a[key], "to": b[key]})
    return out


def diff(cfg: StoreConfig, sid: str, a: int, b: int) -> Op[dict[str, Any]]:
    sa = yield from state_at(cfg, sid, a)
    sb = yield from state_at(cfg, sid, b)
    lo, hi = min(a, b), max(a, b)
    events = yield from history(sid, lo + 1, hi) if hi > lo else _nothing()
    return {"session_id": sid, "from_version": a, "to_version": b, "changes": diff_states(sa, sb),
            "events": [{"version": e["version"], "event": e["event"], "to_step": e["to_step"], "actor": e["actor"]}
                       for e in events]}


def _nothing() -> Op[list[dict[str, Any]]]:
    return []
    yield  # pragma: no cover - makes this a generator


# ---------------------------------------------------------------- rollback and expiry


def rollback(cfg: StoreConfig, sid: str, to_version: int, actor: str = "admin",
             timeout_at_ms: int | None = None, attempts: int = 5) -> Op[CommitResult]:
    """Write the state of ``to_version`` as a new version, with a ``rollback`` record."""
    k = K.session_keys(sid)
    for _ in range(attempts):
        cur = yield from load(cfg, sid)
        if cur is None:
            raise SessionNotFound(f"no session {sid!r}")
        if to_version == cur["version"]:
            raise VersionUnavailable(f"session {sid!r} is at version {to_version} already")
        target = yield from state_at(cfg, sid, to_version)
        r = yield [("HGET", k.state, "timeout_at")]
        now = cfg.now_ms()
        new = dict(target)
        new["updated_at"] = now
        pending = new["pending"] if isinstance(new["pending"], dict) else {}
        timeout = timeout_at_ms
        if timeout is None and not codec.is_terminal(new["status"]):
            deadline = pending.get("deadline")
            timeout = deadline if isinstance(deadline, int) else as_int(check(r[0], sid))
        record = {
            "ts": now, "event": "rollback", "from_step": cur["step"], "to_step": new["step"],
            "path": [new["step"]] if new["step"] and new["step"] != cur["step"] else [], "status": new["status"],
            "message_id": None, "input": dumps({"to_version": to_version, "from_version": cur["version"]}),
            "error": None, "actor": actor,
        }
        result = yield from commit(cfg, sid, cur["version"], new, record, previous=cur, timeout_at_ms=timeout,
                                   snapshot_old=True)
        if result.ok:
            log.info("session rolled back", extra={"session_id": sid, "to_version": to_version,
                                                   "new_version": result.version, "actor": actor})
            return result
    raise ConflictError(f"session {sid!r}: rollback kept conflicting with other writers")


def expire(cfg: StoreConfig, sid: str, now: int, flow_timeouts: Mapping[str, int],
           default_ms: int | None, *, actor: str = "runtime", reason: str = "inactive") -> Op[CommitResult | None]:
    """Mark one idle session ``expired`` (None if it is not idle, not live, or its flow never expires)."""
    cur = yield from load(cfg, sid)
    if cur is None or codec.is_terminal(cur["status"]):
        return None
    if cur["status"] in codec.HELD_STATUSES and actor == "runtime":
        return None  # held by people: its flow's hand-off timeout applies, not the inactivity one
    idle_ms = flow_timeouts.get(cur["flow"], default_ms)
    if idle_ms is None or cur["updated_at"] + idle_ms > now:
        return None
    new = dict(cur, status="expired", pending=None, updated_at=now)
    record = {"ts": now, "event": "expire", "from_step": cur["step"], "to_step": cur["step"], "path": [],
              "status": "expired", "message_id": None, "input": None, "error": reason, "actor": actor}
    return (yield from commit(cfg, sid, cur["version"], new, record, previous=cur))


# ---------------------------------------------------------------- dedupe, outbox, timeouts


def seen(sid: str, message_id: str) -> Op[int | None]:
    r = yield [("ZSCORE", K.session_keys(sid).seen, codec.message_key(message_id))]
    return as_int(check(r[0], sid))


def pending_effects(sid: str) -> Op[dict[int, list[dict[str, Any]]]]:
    r = yield [("HGETALL", K.session_keys(sid).fx)]
    out = {}
    for v, value in pairs(check(r[0], sid)):
        out[int(s(v))] = json.loads(s(value).partition(":")[2])
    return dict(sorted(out.items()))


def ack_commands(sid: str, version: int) -> Batch:
    """Drop one outbox entry: idempotent, so it may be sent late or twice (see driver.Deferred)."""
    return [("HDEL", K.session_keys(sid).fx, version), ("ZREM", K.IDX_OUTBOX, K.outbox_member(sid, version))]


def ack_effects(sid: str, version: int) -> Op[bool]:
    r = yield ack_commands(sid, version)
    return bool(check(r[0], sid))


def unacked_effects(cutoff_ms: int, limit: int) -> Op[list[tuple[str, int, list[dict[str, Any]]]]]:
    r = yield [("ZRANGEBYSCORE", K.IDX_OUTBOX, "-inf", cutoff_ms, "LIMIT", 0, limit)]
    members = [K.parse_outbox_member(m) for m in check(r[0]) or []]
    if not members:
        return []
    r = yield [("HGET", K.session_keys(sid).fx, v) for sid, v in members]
    out, stale = [], []
    for (sid, v), value in zip(members, r, strict=True):
        value = check(value, sid)
        if value is None:
            stale.append(K.outbox_member(sid, v))
        else:
            out.append((sid, v, json.loads(s(value).partition(":")[2])))
    if stale:
        yield [("ZREM", K.IDX_OUTBOX, *stale)]
    return out


def set_timeout(sid: str, at_ms: int | None, *, indexed: bool = False) -> Op[bool]:
    k = K.session_keys(sid)
    want = at_ms is not None
    if indexed:  # a single server: the script writes the index too (nothing to undo)
        r = yield [TimeoutArgs("" if at_ms is None else int(at_ms), session_id=sid).call(k, indexed=True)]
        return bool(check(r[0], sid))
    r = yield [TimeoutArgs("" if at_ms is None else int(at_ms)).call(k),
               ("ZADD", K.IDX_TIMEOUTS, at_ms, sid) if want else ("ZREM", K.IDX_TIMEOUTS, sid)]
    held = bool(check(r[0], sid))
    if want and not held:
        yield [("ZREM", K.IDX_TIMEOUTS, sid)]
    return held


def due_timeouts(now_ms: int, limit: int) -> Op[list[str]]:
    r = yield [("ZRANGEBYSCORE", K.IDX_TIMEOUTS, "-inf", now_ms, "LIMIT", 0, limit)]
    return [s(m) for m in check(r[0]) or []]


def next_timeout_at() -> Op[int | None]:
    r = yield [("ZRANGE", K.IDX_TIMEOUTS, 0, 0, "WITHSCORES")]
    got = pairs(check(r[0]))
    return as_int(got[0][1]) if got else None


# ---------------------------------------------------------------- derived indexes: reads


def active_sessions(*, min_ms: int | None = None, max_ms: int | None = None, limit: int = 100, offset: int = 0,
                    oldest_first: bool = False) -> Op[list[tuple[str, int]]]:
    lo = "-inf" if min_ms is None else min_ms
    hi = "+inf" if max_ms is None else max_ms
    cmd = (("ZRANGEBYSCORE", K.IDX_ACTIVE, lo, hi) if oldest_first else ("ZREVRANGEBYSCORE", K.IDX_ACTIVE, hi, lo))
    r = yield [(*cmd, "WITHSCORES", "LIMIT", offset, limit)]
    return [(s(m), as_int(sc) or 0) for m, sc in pairs(check(r[0]))]


def active_count() -> Op[int]:
    r = yield [("ZCARD", K.IDX_ACTIVE)]
    return int(check(r[0]))


def counters(flow: str | None = None) -> Op[dict[str, dict[str, Any]]]:
    if flow is None:
        r = yield [("SMEMBERS", K.IDX_FLOWS)]
        flows = sorted(str(s(f)) for f in check(r[0]) or [])
    else:
        flows = [flow]
    if not flows:
        return {}
    r = yield [("HGETALL", K.counter_key(f)) for f in flows]
    out: dict[str, dict[str, Any]] = {}
    for f, reply in zip(flows, r, strict=True):
        c: dict[str, Any] = {"sessions": 0, "status": {}, "step": {}}
        for field, n in pairs(check(reply)):
            name, value = s(field), int(n)
            kind, _, rest = name.partition(":")
            if kind == "sessions":
                c["sessions"] = value
            elif kind in ("status", "step") and value:
                c[kind][rest] = value
        out[f] = c
    return out


def quarantined(limit: int = 100) -> Op[list[dict[str, Any]]]:
    r = yield [("ZREVRANGE", K.QUARANTINE_INDEX, 0, limit - 1, "WITHSCORES"), ("GET", K.QUARANTINE_COUNT)]
    items = pairs(check(r[0]))
    if not items:
        return []
    r2 = yield [("HMGET", s(key), "q_reason", "q_type", "version") for key, _ in items]
    out = []
    for (key, at), fields in zip(items, r2, strict=True):
        reason, typ, version = (s(x) for x in check(fields))
        sid = s(key)[len(K.QUARANTINE_PREFIX) + 3:].rpartition("}:")[0]
        out.append({"key": s(key), "session_id": sid, "at": as_int(at), "reason": reason, "type": typ,
                    "version": version})
    return out


def quarantine_count() -> Op[int]:
    r = yield [("GET", K.QUARANTINE_COUNT)]
    return as_int(check(r[0])) or 0


def read_states(sids: list[str]) -> Op[list[tuple[str, dict[str, Any] | None]]]:
    """Many raw states in one round trip (for iteration); unparsable ones come back as None."""
    if not sids:
        return []
    r = yield [("HGETALL", K.session_keys(sid).state) for sid in sids]
    out: list[tuple[str, dict[str, Any] | None]] = []
    for sid, reply in zip(sids, r, strict=True):
        text = None if isinstance(reply, Exception) else state_head(reply)[1]
        try:
            out.append((sid, json.loads(text) if isinstance(text, str | bytes) else None))
        except ValueError:
            out.append((sid, None))
    return out


def read_histories(cfg: StoreConfig, sids: list[str]) -> Op[list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """(verified state, records) of many sessions in one round trip; bad states are skipped (logged)."""
    if not sids:
        return []
    cmds: Batch = []
    for sid in sids:
        k = K.session_keys(sid)
        cmds += [("HGETALL", k.state), ("LRANGE", k.hist, 0, -1)]
    r = yield cmds
    out = []
    for i, sid in enumerate(sids):
        head, hist = r[2 * i], r[2 * i + 1]
        if M.is_wrongtype(hist):
            hist = yield from read_hist(sid)  # layout 1: this session is migrated now
        if isinstance(head, Exception) or isinstance(hist, Exception):
            continue
        version, text, digest, _ = state_head(head)
        if version is None:
            continue
        state, why = verify(cfg, sid, version, text, digest)
        if state is None:
            log.warning("session skipped: bad stored state (load() it to recover)", extra={"session_id": sid,
                                                                                           "reason": why})
            continue
        try:
            records = decode_hist(sid, hist, with_delta=False, fallback=(state["flow"], state["flow_version"]))
        except CorruptStateError as exc:
            log.warning("session skipped: damaged history", extra={"session_id": sid, "reason": str(exc)})
            continue
        out.append((state, records))
    return out


def delete_session(sid: str) -> Op[bool]:
    k = K.session_keys(sid)
    r = yield [("HMGET", k.state, "flow", "step", "status"), ("HKEYS", k.fx), ("EXISTS", *k.all),
               ("HVALS", K.sent_key(sid))]
    head = r[0] if not isinstance(r[0], Exception) else [None, None, None]
    members = [K.outbox_member(sid, int(s(v))) for v in (r[1] if not isinstance(r[1], Exception) else [])]
    cmds: Batch = [("DEL", *k.all), ("ZREM", K.IDX_ACTIVE, sid), ("ZREM", K.IDX_TIMEOUTS, sid)]
    # delivery records name the user too (an erasure request covers them)
    wamids = [K.wamid_key(s(w) or "") for w in (r[3] if not isinstance(r[3], Exception) else [])]
    cmds += [("DEL", *K.delivery_keys(sid), K.transcript_key(sid)), *[("DEL", w) for w in wamids]]  # wamid keys: other slots
    if members:
        cmds.append(("ZREM", K.IDX_OUTBOX, *members))
    cmds += _counter_cmds(codec.counter_move(_triple(*head), None))
    yield cmds
    return bool(check(r[2], sid))


def ping() -> Op[bool]:
    r = yield [("PING",)]
    check(r[0])
    return True
