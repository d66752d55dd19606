"""Store operations of the transcript: every message of a session, both directions.

One Redis list per session (``fk:{s:<sid>}:tx``, :func:`flowkit.store.keys.transcript_key`),
one JSON entry per message, in the order the runtime saw them:

- ``in``: a user's message (answers, and reactions, edits, revokes that answer nothing),
  written after its commit with the version it produced (None: it changed nothing);
- ``out``: a reply Graph accepted, written when the sender gets its wamid, with the outbox
  version that produced it and its index in that entry.

Statuses are not copied into the entries: WhatsApp's statuses stay in the session's
delivery list (:mod:`flowkit.store.delivery`) and :func:`merge_statuses` joins them by
wamid when a transcript is read, so a status never needs a read-modify-write.

Every write here is a batch for ``driver.defer``: it rides on the next round trip (the
outbox acknowledgement, the next message), so the per-message commit stays one round trip.
The list is trimmed like the history: unbounded when the store keeps all history, else
:data:`PER_VERSION` entries per kept history entry (docs/decisions.md, "Transcripts").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

import orjson

from flowkit.store import keys as K
from flowkit.store.codec import s
from flowkit.store.driver import Batch, Op
from flowkit.store.ops import check

Direction = Literal["in", "out"]

#: Transcript entries kept per history entry when the store trims history (``history_max_len``):
#: a commit answers one message with a few replies, so this keeps the same conversations.
PER_VERSION = 4
#: The order a message's statuses progress in; a later one wins whatever order they arrive in.
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}


class Entry(TypedDict, total=False):
    """One transcript entry as stored (JSON); ``statuses`` etc. are added when read."""

    dir: Direction
    ts: int
    wamid: str | None
    kind: str
    text: str | None
    payload: dict[str, Any]
    version: int | None
    index: int | None
    actor: str
    statuses: list[dict[str, Any]]
    status: str | None
    status_ts: int | None
    error: str | None


def max_entries(history_max_len: int | None) -> int | None:
    """How many entries a session's transcript keeps (None: all, like the history)."""
    return None if history_max_len is None else history_max_len * PER_VERSION


def append_commands(session_id: str, entries: Iterable[Mapping[str, Any]], keep: int | None = None,
                    ttl_ms: int | None = None) -> Batch:
    """Append ``entries`` to the session's transcript, trimmed to the last ``keep``; with
    ``ttl_ms`` (the store's terminal TTL) it expires that long after its last message, as an
    ended session's keys do after it ended."""
    values = [_entry_json(e) for e in entries]
    if not values:
        return []
    key = K.transcript_key(session_id)
    cmds: Batch = [("RPUSH", key, *values)]
    if keep is not None:
        cmds.append(("LTRIM", key, -keep, -1))
    if ttl_ms:
        cmds.append(("PEXPIRE", key, ttl_ms))
    return cmds


def _entry_json(entry: Mapping[str, Any]) -> bytes | str:
    """One entry as JSON, keys sorted: UTF-8 through orjson (~0.3 us; json.dumps took ~5 us, a
    tenth of what a message's transcript cost). A user's text may hold lone surrogates, which
    have no UTF-8 form: orjson refuses them, and such an entry is written as ASCII JSON
    instead (raw, it would fail the round trip this batch rides on, again and again)."""
    try:
        return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # (orjson.JSONEncodeError: lone surrogates, big ints, odd types)
        return json.dumps(dict(entry), ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def transcript(session_id: str) -> Op[list[Entry]]:
    """The session's messages, oldest first, each outbound one with its statuses (one round trip)."""
    r = yield read_commands(session_id)
    return from_replies(session_id, r[0], r[1])


def read_commands(session_id: str) -> Batch:
    """The reads of one transcript: its entries and the session's delivery statuses."""
    return [("LRANGE", K.transcript_key(session_id), 0, -1), ("LRANGE", K.delivery_key(session_id), 0, -1)]


def from_replies(session_id: str, entries_reply: Any, statuses_reply: Any) -> list[Entry]:
    """The transcript from the replies of :func:`read_commands` (an error reply raises)."""
    entries = [_decode(v) for v in check(entries_reply, session_id) or []]
    statuses = [_decode(v) for v in check(statuses_reply, session_id) or []]
    return merge_statuses(_unique(e for e in entries if e), [x for x in statuses if x])


def _unique(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each message once: WhatsApp redelivers webhooks, and a reaction is written on every
    delivery (the handled messages are deduplicated by their commit already)."""
    seen: set[tuple[Any, str]] = set()
    out = []
    for e in entries:
        wamid = e.get("wamid")
        if isinstance(wamid, str):
            if (e.get("dir"), wamid) in seen:
                continue
            seen.add((e.get("dir"), wamid))
        out.append(e)
    return out


def _decode(raw: Any) -> Any:
    """A stored JSON entry; a damaged one (not JSON, not an object) reads as empty and is left out."""
    try:
        v = json.loads(s(raw) or "")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def merge_statuses(entries: list[Any], statuses: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """Join WhatsApp's statuses to the outbound entries by wamid: ``statuses`` (all, in time
    order), ``status``/``status_ts`` (the furthest one reached) and ``error`` (of a failure)."""
    by_wamid: dict[str, list[dict[str, Any]]] = {}
    for st in statuses:
        wamid = st.get("wamid")
        if isinstance(wamid, str) and st.get("status") in STATUS_RANK:
            by_wamid.setdefault(wamid, []).append({k: st.get(k) for k in ("status", "ts", "error") if k in st})
    out: list[Entry] = []
    for e in entries:
        e = dict(e)
        if e.get("dir") == "out":
            got = sorted(by_wamid.get(e.get("wamid") or "", []), key=lambda x: (x.get("ts") or 0,
                                                                                 STATUS_RANK[x["status"]]))
            unique: list[dict[str, Any]] = []  # a redelivered status is one status
            for x in got:
                if not any(u["status"] == x["status"] and u.get("ts") == x.get("ts") for u in unique):
                    unique.append(x)
            best = max(unique, key=lambda x: STATUS_RANK[x["status"]], default=None)
            e["statuses"] = unique
            e["status"] = best["status"] if best else None
            e["status_ts"] = best.get("ts") if best else None
            e["error"] = next((x.get("error") for x in unique if x["status"] == "failed"), e.get("error"))
        out.append(e)  # type: ignore[arg-type]  # (an entry dict as written by this module)
    return out


def status_times(entry: Mapping[str, Any]) -> dict[str, int | None]:
    """When the message was first ``sent``, ``delivered``, ``read`` and ``failed`` (None: never)."""
    times: dict[str, int | None] = {k: None for k in ("sent", "delivered", "read", "failed")}
    for st in entry.get("statuses") or ():
        name = "read" if st.get("status") == "played" else st.get("status")
        if name in times and times[name] is None:
            times[name] = st.get("ts")
    return times


__all__ = ["Entry", "PER_VERSION", "STATUS_RANK", "append_commands", "from_replies", "max_entries", "merge_statuses",
           "read_commands", "status_times", "transcript"]
