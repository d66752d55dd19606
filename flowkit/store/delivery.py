"""Store operations of outbound delivery: which send became which wamid, the statuses
WhatsApp reports for them, and when each user last wrote (the 24-hour window).

Sans-io like :mod:`flowkit.store.ops`. The ``*_commands`` functions return idempotent
writes meant for ``driver.defer`` (they ride on the next round trip, so the webhook's happy
path stays one round trip per message); the others are whole operations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowkit.store import keys as K
from flowkit.store.codec import s
from flowkit.store.driver import Batch, Op
from flowkit.store.ops import as_int, check

#: How long a wamid stays matchable to its session. Meta reports statuses within days; a
#: month covers late "read" receipts without keeping keys forever.
WAMID_TTL_MS = 30 * 86_400_000
#: Statuses kept per session for transcripts (oldest dropped first).
DELIVERY_LIST_MAX = 200
#: The customer-service window: free-form messages only within 24 h of the user's last message.
WINDOW_MS = 24 * 3_600_000


def sent_commands(session_id: str, version: int, index: int, wamid: str, ttl_ms: int = WAMID_TTL_MS) -> Batch:
    """Graph accepted reply ``index`` of outbox entry ``version`` as ``wamid``."""
    sent = K.sent_key(session_id)
    return [("SET", K.wamid_key(wamid), f"{version}#{index}#{session_id}", "PX", ttl_ms),
            ("HSET", sent, f"{version}:{index}", wamid), ("PEXPIRE", sent, ttl_ms)]


def sent_replies(session_id: str, version: int, count: int) -> Op[dict[int, str]]:
    """Which of the first ``count`` replies of entry ``version`` were accepted: {index: wamid}."""
    if count <= 0:
        return {}
    r = yield [("HMGET", K.sent_key(session_id), *[f"{version}:{i}" for i in range(count)])]
    got = check(r[0], session_id) or []
    return {i: s(w) for i, w in enumerate(got) if w is not None}


def lookup_wamid(wamid: str) -> Op[tuple[str, int, int] | None]:
    """(session_id, version, index) of a wamid flowkit sent, or None (unknown or expired)."""
    r = yield [("GET", K.wamid_key(wamid))]
    value = s(check(r[0]))
    if not value:
        return None
    version, _, rest = value.partition("#")
    index, _, sid = rest.partition("#")
    v, i = as_int(version), as_int(index)
    if v is None or i is None or not sid:
        return None
    return sid, v, i


def status_commands(session_id: str, status: Mapping[str, Any], ttl_ms: int = WAMID_TTL_MS) -> Batch:
    key = K.delivery_key(session_id)
    return [("RPUSH", key, json.dumps(dict(status), sort_keys=True, separators=(",", ":"))),
            ("LTRIM", key, -DELIVERY_LIST_MAX, -1), ("PEXPIRE", key, ttl_ms)]


def statuses(session_id: str) -> Op[list[dict[str, Any]]]:
    r = yield [("LRANGE", K.delivery_key(session_id), 0, -1)]
    return [json.loads(s(v) or "{}") for v in check(r[0], session_id) or []]


def inbound_commands(session_id: str, at_ms: int, window_ms: int = WINDOW_MS) -> Batch:
    """The user wrote at ``at_ms`` (the runtime's clock, which the reader compares with); the
    key lives as long as the window, so users who went quiet leave nothing behind."""
    return [("SET", K.inbound_key(session_id), at_ms, "PX", window_ms)]


def last_inbound(session_id: str) -> Op[int | None]:
    """When the user last wrote (None: not within the last window, by the server's clock)."""
    r = yield [("GET", K.inbound_key(session_id))]
    return as_int(check(r[0], session_id))


def lease_commands(session_id: str, version: int, now_ms: int) -> Batch:
    """A sender still works on this outbox entry: move its age forward so recovery leaves it
    alone (XX: never re-adds an entry someone acknowledged meanwhile)."""
    return [("ZADD", K.IDX_OUTBOX, "XX", now_ms, K.outbox_member(session_id, version))]
