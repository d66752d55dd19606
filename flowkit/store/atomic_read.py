"""Sessions read whole and atomically: each session's state hash and its entire history in
one step (a script), many sessions in one pipelined round trip. The one read of session
data that the checker and the history export share (the store owns every read of its keys)."""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

from flowkit.errors import HistoryError

# The state hash's version/state/checksum and the whole history list, in one atomic step (the
# elements are decoded in Python: flowkit/store/entries.py). A layout-1 stream (not migrated
# yet) answers -1: the caller migrates that session and reads it again.
READ_SESSION = """
local head = redis.call('HMGET', KEYS[1], 'version', 'state', 'checksum')
if not head[2] and head[1] then
  -- the state blob in chunks s0, s1, ... (flowkit/store/statefield.py), joined here
  local parts, i = {}, 0
  while true do
    local p = redis.call('HGET', KEYS[1], 's' .. i)
    if not p then break end
    parts[#parts + 1] = p
    i = i + 1
  end
  if i > 0 then head[2] = table.concat(parts) end
end
local xs = redis.pcall('LRANGE', KEYS[2], 0, -1)
if xs.err then return {head, -1, {}} end
return {head, #xs, xs}
"""

Read = tuple[str, dict[str, Any] | None, str | None, list[dict[str, Any]]]


@cache
def _script() -> Any:
    from flowkit.store.scripts import Script

    # Redis addresses scripts by SHA1 (EVALSHA); the driver sends the source once on NOSCRIPT.
    return Script("export_read", READ_SESSION, hashlib.sha1(READ_SESSION.encode()).hexdigest())  # noqa: S324


def read_sessions_atomic(store: Any, sids: list[str]) -> list[Read]:
    """``[(session_id, state or None, why the state is bad or None, records)]`` for ``sids``:
    each session read atomically, all of them in one pipelined round trip."""
    from flowkit.store import entries, ops
    from flowkit.store import keys as K
    from flowkit.store import migrate as M
    from flowkit.store import statefield as SF
    from flowkit.store.driver import Call

    calls = []
    for sid in sids:
        k = K.session_keys(sid)
        calls.append(Call(_script(), (k.state, k.hist), ()))
    replies = store.driver.execute(calls)
    out: list[Read] = []
    for sid, reply in zip(sids, replies, strict=True):
        if isinstance(reply, Exception):
            raise HistoryError(f"session {sid!r}: Redis refused the read: {reply}")
        head, count, payload = reply
        if int(count) < 0:  # layout 1: migrate this session, then read it again
            store._run(M.migrate_session(sid))
            out += read_sessions_atomic(store, [sid])
            continue
        if head[1] is not None:
            head[1] = SF.unpack(head[1] if isinstance(head[1], bytes) else str(head[1]).encode())
        state, why = (None, None) if head[0] is None and head[1] is None else ops.verify(store.config, sid, *head)
        try:
            records = entries.decode_all(sid, payload or [], with_delta=False,
                                         fallback=(state["flow"], state["flow_version"]) if state is not None else None)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise HistoryError(f"session {sid!r}: its history in Redis is damaged ({exc}); run `flowkit check` "
                               "and restore it from a backup") from exc
        # (state, records) of a session deleted or expired between SCAN and this read: (None, ...)
        out.append((sid, state, why, records))
    return out


__all__ = ["Read", "read_sessions_atomic"]
