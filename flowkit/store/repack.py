"""Old-layout state hashes (the JSON in one ``state`` field, a hashtable) rewritten packed
(flowkit/store/statefield.py), per session, atomically.

A live session is repacked by its next commit; an ended one is never committed again, so
``flowkit redis migrate-layout`` repacks every state hash still in the old layout
(:func:`repack_state`). The stored text is packed as it is, unverified: a damaged state stays
exactly as damaged (its checksum still fails, recovery still sees it).
"""

from __future__ import annotations

from flowkit.errors import StoreError
from flowkit.store import keys as K
from flowkit.store import statefield as SF
from flowkit.store.contract import RepackArgs
from flowkit.store.driver import Op

ATTEMPTS = 5


def repack_state(sid: str, *, dry_run: bool = False) -> Op[int]:
    """1 repacked (or would be, ``dry_run``), 0 nothing to do."""
    k = K.session_keys(sid)
    for _ in range(ATTEMPTS):
        r = yield [("TYPE", k.state), ("HGET", k.state, SF.PLAIN)]
        if isinstance(r[1], Exception) or r[1] is None:
            return 0  # not a hash (load() quarantines it), or already packed
        plain = r[1] if isinstance(r[1], bytes) else str(r[1]).encode()
        if dry_run:
            return 1
        r = yield [RepackArgs(plain=plain, blob=SF.pack(plain)).call(k)]
        if isinstance(r[0], Exception):
            raise StoreError(f"session {sid!r}: Redis refused to repack the state hash: {r[0]}") from r[0]
        if int(r[0]) >= 0:
            return int(r[0])
    raise StoreError(f"session {sid!r}: its state kept changing while being repacked; is a process of an older "
                     "flowkit still writing? Stop it and run `flowkit redis migrate-layout` again")


__all__ = ["repack_state"]
