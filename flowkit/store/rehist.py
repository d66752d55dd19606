"""History lists with JSON elements (layout 2) repacked as binary elements (layout 3), per
session, atomically (docs/decisions.md, "Binary history elements").

Readers take both forms, so nothing has to be converted; ``flowkit redis migrate-layout``
converts every list that still holds JSON elements, to reclaim their memory. A session is
written back only if every record reads back identical (deltas and checksums included) and the
list is still exactly what was read; an element that does not decode is left as it is (the
checker reports it, as before)."""

from __future__ import annotations

from typing import Any

from flowkit.errors import StoreError
from flowkit.store import entries
from flowkit.store import keys as K
from flowkit.store.contract import RehistArgs
from flowkit.store.driver import Op

ATTEMPTS = 5


def _convert(sid: str, raw: bytes) -> bytes:
    if raw[:1] != b"[":
        return raw
    try:
        return entries.from_array(sid, entries.to_array(sid, raw))
    except (ValueError, KeyError, TypeError, IndexError):
        return raw  # damaged: kept as found


def _same(sid: str, a: list[Any], b: list[Any]) -> bool:
    try:
        return entries.decode_all(sid, a) == entries.decode_all(sid, b)
    except (ValueError, KeyError, TypeError, IndexError):
        return False


def repack_history(sid: str, *, dry_run: bool = False) -> Op[int]:
    """1 repacked (or would be, ``dry_run``), 0 nothing to do."""
    k = K.session_keys(sid)
    for _ in range(ATTEMPTS):
        r = yield [("LRANGE", k.hist, 0, -1)]
        raw = r[0]
        if isinstance(raw, Exception) or not raw or not any(e[:1] == b"[" for e in raw):
            return 0  # a layout-1 stream (migrate_session's), no history, or nothing in JSON
        elements = [_convert(sid, e) for e in raw]
        if elements == raw or not _same(sid, raw, elements):
            return 0  # only damaged elements, or a conversion that would not read back the same
        if dry_run:
            return 1
        r = yield [RehistArgs(length=len(raw), last=raw[-1], elements=tuple(elements)).call(k)]
        if isinstance(r[0], Exception):
            raise StoreError(f"session {sid!r}: Redis refused to repack the history: {r[0]}") from r[0]
        if int(r[0]) >= 0:
            return int(r[0])
    raise StoreError(f"session {sid!r}: its history kept changing while being repacked; run `flowkit redis "
                     "migrate-layout` again")


__all__ = ["repack_history"]
