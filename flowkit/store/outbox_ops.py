"""Dedupe look-ups, the outbox (effects to run after a commit) and wake-up timeouts."""

from __future__ import annotations

import json
from typing import Any

from flowkit.store import codec
from flowkit.store import keys as K
from flowkit.store.codec import s
from flowkit.store.contract import (
    TimeoutArgs,
)
from flowkit.store.driver import Batch, Op
from flowkit.store.replies import (
    as_int,
    check,
    pairs,
)


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
