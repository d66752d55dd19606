"""History and time travel: records, the state at any version, diffs, rollback and expiry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowkit.errors import (
    ConflictError,
    CorruptStateError,
    SessionNotFound,
    VersionUnavailable,
)
from flowkit.log import get_logger
from flowkit.store import codec
from flowkit.store import keys as K
from flowkit.store.codec import dumps, s
from flowkit.store.commit_op import commit
from flowkit.store.driver import Op
from flowkit.store.loading import load, verify
from flowkit.store.replies import (
    as_int,
    check,
    decode_hist,
    entries,
    read_hist,
    state_head,
)
from flowkit.store.values import CommitResult, StoreConfig

log = get_logger("flowkit.store")


def history(sid: str, start: int = 1, end: int | None = None, *, limit: int | None = None,
            with_delta: bool = False) -> Op[list[dict[str, Any]]]:
    # the whole list: it is small (one listpack), and elements may name their flow by reference
    raw = yield from read_hist(sid)
    out = [rec for rec in decode_hist(sid, raw, with_delta=with_delta)
           if rec["version"] >= start and (end is None or rec["version"] <= end)]
    return out if limit is None else out[:limit]


def _replay(st: dict[str, Any] | None, at: int,
            hist: list[tuple[int, dict[str, Any]]]) -> tuple[dict[str, Any] | None, int]:
    """``st`` (the state at version ``at``, or None) carried through the history elements
    after it: (the last state rebuilt, its version); None where the chain breaks."""
    for v, rec in hist:
        delta = rec["delta"]
        if "r" not in delta and (st is None or v != at + 1):
            st = None  # no chain here (trimmed, or a gap): the next whole state starts one
            continue
        st, at = codec.state_from_entry(st, rec, delta), v
    return st, at


def _current_if(cfg: StoreConfig, sid: str, version: int, head: Any) -> dict[str, Any] | None:
    """The stored state if ``version`` is the current one (verified), None if it is an older one
    (VersionUnavailable if it is neither)."""
    cur_v, text, digest, _ = state_head(head)
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
    return None


def state_at(cfg: StoreConfig, sid: str, version: int) -> Op[dict[str, Any]]:
    """The state at ``version``: the nearest snapshot at or below it, plus the deltas after it."""
    k = K.session_keys(sid)
    r = yield [("HGETALL", k.state), ("HKEYS", k.snap)]
    now = _current_if(cfg, sid, version, check(r[0], sid))
    if now is not None:
        return now
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
        st, at = _replay(st, base, hist)
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
