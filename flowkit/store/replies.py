"""Reading the store's replies: error replies as store errors, HGETALL/ZRANGE shapes, the state
hash's fields (flowkit/store/statefield.py) and the history list's elements (flowkit/store/entries.py)."""

from __future__ import annotations

from typing import Any

from redis import exceptions as rx

from flowkit.errors import (
    CorruptStateError,
    StoreError,
    StoreOutOfMemory,
    StoreUnavailable,
)
from flowkit.store import entries as packed
from flowkit.store import keys as K
from flowkit.store import migrate as M
from flowkit.store import statefield as SF
from flowkit.store.codec import s
from flowkit.store.driver import UNAVAILABLE, Op


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
