"""The derived-index and counter commands a session's (flow, step, status) implies: written beside
the scripts on a cluster (other slots), by the scripts themselves on a single server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowkit.store import codec
from flowkit.store import keys as K
from flowkit.store.codec import s
from flowkit.store.driver import Batch

Triple = tuple[str | None, str | None, str | None]  # (flow, step, status) as the counters see a session


def _triple(flow: Any, step: Any, status: Any) -> Triple | None:
    f, st, ss = s(flow) or None, s(step) or None, s(status) or None
    return None if f is None else (f, st, ss)


def _counter_cmds(moves: Mapping[tuple[str, str], int], new_flows: Iterable[str] = ()) -> Batch:
    cmds: Batch = [("HINCRBY", K.counter_key(flow), field, n) for (flow, field), n in moves.items()]
    cmds += [("SADD", K.IDX_FLOWS, f) for f in sorted(set(new_flows))]
    return cmds


def _index_cmds(sid: str, status: str | None, updated_at: Any, timeout_at: Any) -> Batch:
    """Where one session belongs in the active and timeouts indexes (status None: nowhere)."""
    live = status is not None and not codec.is_terminal(status)
    cmds: Batch = [("ZADD", K.IDX_ACTIVE, updated_at, sid) if live else ("ZREM", K.IDX_ACTIVE, sid)]
    if live and timeout_at not in (None, "", b""):
        cmds.append(("ZADD", K.IDX_TIMEOUTS, timeout_at, sid))
    else:
        cmds.append(("ZREM", K.IDX_TIMEOUTS, sid))
    return cmds
