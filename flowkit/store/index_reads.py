"""Reads over many sessions (derived indexes, counters, quarantine, batched states and histories),
deleting a session, and ping."""

from __future__ import annotations

import json
from typing import Any

from flowkit.errors import (
    CorruptStateError,
)
from flowkit.log import get_logger
from flowkit.store import codec
from flowkit.store import keys as K
from flowkit.store import migrate as M
from flowkit.store.codec import s
from flowkit.store.driver import Batch, Op
from flowkit.store.indexcmds import _counter_cmds, _triple
from flowkit.store.loading import verify
from flowkit.store.replies import (
    as_int,
    check,
    decode_hist,
    pairs,
    read_hist,
    state_head,
)
from flowkit.store.values import StoreConfig

log = get_logger("flowkit.store")


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
