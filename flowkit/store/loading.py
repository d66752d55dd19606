"""Loading a session: the stored state verified (checksum, schema, validator), and a bad one
quarantined and rebuilt from its history as a ``recovery`` commit (recover.lua)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis import exceptions as rx

from flowkit.errors import (
    ConflictError,
    CorruptStateError,
)
from flowkit.log import get_logger
from flowkit.store import codec
from flowkit.store import entries as packed
from flowkit.store import keys as K
from flowkit.store import statefield as SF
from flowkit.store.codec import dumps, s
from flowkit.store.contract import (
    QuarantineArgs,
    QuarantineReply,
    RecoverArgs,
    RecoverReply,
)
from flowkit.store.driver import Op
from flowkit.store.indexcmds import _counter_cmds, _index_cmds, _triple
from flowkit.store.replies import (
    as_int,
    check,
    entries,
    pairs,
    read_hist,
    state_head,
)
from flowkit.store.values import StoreConfig

log = get_logger("flowkit.store")


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


def _snapshot_states(snaps: Mapping[int, str]) -> dict[int, dict[str, Any]]:
    """The snapshots (layout 1's ``snap`` hash) that pass their checksum and parse."""
    out: dict[int, dict[str, Any]] = {}
    for v, value in snaps.items():
        digest, _, text = value.partition(":")
        if codec.checksum(text) == digest:
            try:
                out[v] = json.loads(text)
            except ValueError:
                continue
    return out


def _rebuilt(rec: dict[str, Any], v: int, cur: dict[str, Any] | None, cur_v: int,
             snap_states: Mapping[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The state at version ``v`` from its element and what came before (None: no chain here)."""
    delta = rec["delta"]
    try:
        if "r" in delta:
            st: dict[str, Any] = delta["r"]
        elif cur is not None and cur_v == v - 1:
            st = codec.state_from_entry(cur, rec, delta)
        elif v - 1 in snap_states:
            st = codec.state_from_entry(snap_states[v - 1], rec, delta)
        else:
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    # a checksum that fails breaks the chain here; a later snapshot or full entry may rebase it
    return st if codec.checksum(dumps(st)) == rec["checksum"] else None


def replay_good(cfg: StoreConfig, sid: str, hist: list[tuple[int, dict[str, Any]]],
                snaps: Mapping[int, str]) -> tuple[int, dict[str, Any]] | None:
    """The newest version that history and snapshots can rebuild and that passes every check."""
    snap_states = _snapshot_states(snaps)
    good = {v: st for v, st in snap_states.items() if _valid(cfg, sid, st, v)}
    cur: dict[str, Any] | None = None
    cur_v = 0
    for v, rec in hist:
        cur = _rebuilt(rec, v, cur, cur_v, snap_states)
        if cur is None:
            continue
        cur_v = v
        if _valid(cfg, sid, cur, v):
            good[v] = cur
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
                       element=packed.pack(sid, record, state["flow"], state["flow_version"], state_sum,
                                           codec.full_delta_json(state_json), same_flow=False))
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
