"""Store operations of outbound delivery: which send became which wamid, the statuses
WhatsApp reports for them, and when each user last wrote (the 24-hour window).

Sans-io like :mod:`flowkit.store.ops`. The ``*_commands`` functions return idempotent
writes meant for ``driver.defer`` (they ride on the next round trip, so the webhook's happy
path stays one round trip per message); the others are whole operations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
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


#: Separates the optional flow and step from "<version>#<index>#<sid>" in a wamid's value (a
#: tab appears in neither a WhatsApp id nor a flow or step name; old values have none).
WHERE_SEP = "\t"


def sent_commands(session_id: str, version: int, index: int, wamid: str, ttl_ms: int = WAMID_TTL_MS,
                  where: tuple[str, str] | None = None) -> Batch:
    """Graph accepted reply ``index`` of outbox entry ``version`` as ``wamid``; ``where`` (flow,
    step) rides along so its statuses can be counted per step without another read."""
    sent = K.sent_key(session_id)
    value = f"{version}#{index}#{session_id}"
    if where is not None:
        value += WHERE_SEP + WHERE_SEP.join(where)
    return [("SET", K.wamid_key(wamid), value, "PX", ttl_ms),
            ("HSET", sent, f"{version}:{index}", wamid), ("PEXPIRE", sent, ttl_ms)]


def sent_replies(session_id: str, version: int, count: int) -> Op[dict[int, str]]:
    """Which of the first ``count`` replies of entry ``version`` were accepted: {index: wamid}."""
    if count <= 0:
        return {}
    r = yield [("HMGET", K.sent_key(session_id), *[f"{version}:{i}" for i in range(count)])]
    got = check(r[0], session_id) or []
    return {i: s(w) for i, w in enumerate(got) if w is not None}


@dataclass(frozen=True)
class SentMessage:
    """What a wamid's map entry says: the session, outbox entry and reply, and (for sends
    recorded since the map carried them) the flow and step that sent it."""

    session_id: str
    version: int
    index: int
    flow: str | None = None
    step: str | None = None


def parse_sent(value: str | None) -> SentMessage | None:
    if not value:
        return None
    head, _, where = value.partition(WHERE_SEP)
    version, _, rest = head.partition("#")
    index, _, sid = rest.partition("#")
    v, i = as_int(version), as_int(index)
    if v is None or i is None or not sid:
        return None
    flow, _, step = where.partition(WHERE_SEP)
    return SentMessage(sid, v, i, flow or None, step if flow else None)


def lookup_sent(wamid: str) -> Op[SentMessage | None]:
    """The map entry of a wamid flowkit sent, or None (unknown or expired): one GET."""
    r = yield [("GET", K.wamid_key(wamid))]
    return parse_sent(s(check(r[0])))


def lookup_wamid(wamid: str) -> Op[tuple[str, int, int] | None]:
    """(session_id, version, index) of a wamid flowkit sent, or None (unknown or expired)."""
    found = yield from lookup_sent(wamid)
    return None if found is None else (found.session_id, found.version, found.index)


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
