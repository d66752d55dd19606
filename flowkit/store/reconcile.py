"""``flowkit reconcile``: rebuild the derived indexes from the per-session keys.

The indexes (active sessions, timeouts, outbox, per-flow/per-step counters) are written by
each commit on a single server and beside it on Cluster, so a crash between the two there, a
hand edit or an old flowkit can leave them off. The state hashes are the truth: reconcile
reads every session (SCAN + pipelined reads), computes what each index should hold and
compares it with what it holds.

Those reads are not one snapshot: a commit or an outbox acknowledgement landing between the
session reads and the index reads looks like drift for a moment. So drift found in a first
pass is looked at again after ``settle`` seconds, and only what a second pass finds
unchanged (same entry, same value) is reported and fixed; a live deployment neither sees
false alarms from ``--check`` nor loses a fresh index entry to a "fix". Counters are
corrected with HINCRBY by the difference, so increments landing meanwhile are kept.

It holds the expected indexes in memory (a few dozen bytes per session).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flowkit.batching import batched
from flowkit.log import get_logger
from flowkit.store import codec
from flowkit.store import keys as K
from flowkit.store.codec import s
from flowkit.store.driver import Batch
from flowkit.store.ops import as_int, check, pairs

log = get_logger("flowkit.store.reconcile")


@dataclass(frozen=True)
class ReconcileReport:
    """What reconcile found: per index, entries ``added``, ``removed`` and ``changed``."""

    sessions: int
    fixes: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # sessions whose state hash could not be read (see load())
    dry_run: bool = False

    @property
    def fixed(self) -> int:
        return sum(sum(v.values()) for v in self.fixes.values())

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "fixed": self.fixed, "fixes": self.fixes, "skipped": list(self.skipped),
                "dry_run": self.dry_run}


def _expected(store: Any, batch: int) -> tuple[int, dict[str, dict[str, int]], dict[str, dict[str, int]], list[str]]:
    """(sessions, zset name -> {member: score}, flow -> {field: count}, skipped)."""
    zsets: dict[str, dict[str, int]] = {K.IDX_ACTIVE: {}, K.IDX_TIMEOUTS: {}, K.IDX_OUTBOX: {}}
    counts: dict[str, dict[str, int]] = {}
    skipped: list[str] = []
    n = 0
    for chunk in batched(store.iter_session_ids(batch), batch):
        cmds: Batch = []
        for sid in chunk:
            k = K.session_keys(sid)
            cmds += [("HMGET", k.state, "flow", "step", "status", "updated_at", "timeout_at"), ("HGETALL", k.fx)]
        replies = store.driver.execute(cmds)
        for i, sid in enumerate(chunk):
            head, fx = replies[2 * i], replies[2 * i + 1]
            if isinstance(head, Exception) or isinstance(fx, Exception) or not s(head[0]):
                skipped.append(sid)
                continue
            n += 1
            flow, step, status, updated, timeout = (s(x) for x in head)
            if not codec.is_terminal(status):
                zsets[K.IDX_ACTIVE][sid] = as_int(updated) or 0
                if timeout:
                    zsets[K.IDX_TIMEOUTS][sid] = as_int(timeout) or 0
            for version, value in pairs(fx):
                zsets[K.IDX_OUTBOX][K.outbox_member(sid, int(s(version)))] = int(s(value).partition(":")[0])
            for (f, name), c in codec.counter_fields(flow, step or None, status).items():
                counts.setdefault(f, {})[name] = counts.get(f, {}).get(name, 0) + c
    return n, zsets, counts, skipped


#: what one pass found: (index key, member or counter field) -> (kind, wanted, held); kind is
#: added / changed / removed / tidy (a counter field at 0 that no session needs: not drift)
Drift = dict[tuple[str, str], tuple[str, int | None, int | None]]


def _compare(key: str, want: dict[str, int], have: dict[str, int | None], drift: Drift, *,
             zero_is_tidy: bool = False) -> None:
    """Record how ``have`` (one index key as read) differs from ``want``."""
    for m, value in want.items():
        if m not in have:
            drift[(key, m)] = ("added", value, None)
        elif have[m] != value:
            drift[(key, m)] = ("changed", value, have[m])
    for m in have.keys() - want.keys():
        drift[(key, m)] = ("tidy" if zero_is_tidy and not have[m] else "removed", None, have[m])


def _zset_drift(store: Any, zsets: dict[str, dict[str, int]], drift: Drift) -> None:
    for key, want in zsets.items():
        have = {str(s(m)): as_int(sc) for m, sc in pairs(check(store.driver.execute([("ZRANGE", key, 0, -1, "WITHSCORES")])[0]))}
        _compare(key, want, have, drift)


def _counter_drift(store: Any, counts: dict[str, dict[str, int]], drift: Drift) -> None:
    flows = {str(s(f)) for f in check(store.driver.execute([("SMEMBERS", K.IDX_FLOWS)])[0]) or []}
    for flow in sorted(flows | set(counts)):
        key = K.counter_key(flow)
        have: dict[str, int | None] = {str(s(f)): int(v) for f, v in pairs(check(store.driver.execute([("HGETALL", key)])[0]))}
        want = counts.get(flow, {})
        _compare(key, want, have, drift, zero_is_tidy=True)
        if not want and flow in flows:
            drift[(K.IDX_FLOWS, flow)] = ("tidy", None, 1)
        elif want and flow not in flows:
            drift[(K.IDX_FLOWS, flow)] = ("tidy", 1, None)


def _survey(store: Any, batch: int) -> tuple[int, Drift, list[str]]:
    n, zsets, counts, skipped = _expected(store, batch)
    drift: Drift = {}
    _zset_drift(store, zsets, drift)
    _counter_drift(store, counts, drift)
    return n, drift, skipped


def _commands(drift: Drift) -> Batch:
    cmds: Batch = []
    for (key, member), (_kind, want, held) in sorted(drift.items()):
        if key == K.IDX_FLOWS:
            cmds.append(("SADD" if want else "SREM", key, member))
        elif key.startswith(K.IDX_COUNT_PREFIX):
            # by the difference: an increment that lands between the read and this write is kept
            cmds.append(("HDEL", key, member) if want is None else ("HINCRBY", key, member, want - (held or 0)))
        elif want is None:
            cmds.append(("ZREM", key, member))
        else:
            cmds.append(("ZADD", key, want, member))
    return cmds


def _fixes(drift: Drift) -> dict[str, dict[str, int]]:
    fixes = {name: {"added": 0, "removed": 0, "changed": 0} for name in ("active", "timeouts", "outbox", "counters")}
    for (key, _member), (kind, _want, _held) in drift.items():
        if kind == "tidy":
            continue
        name = "counters" if key.startswith(K.IDX_COUNT_PREFIX) else key.removeprefix("fk:idx:")
        fixes[name][kind] += 1
    return fixes


def reconcile(store: Any, *, dry_run: bool = False, batch: int = 500, settle: float = 0.5) -> ReconcileReport:
    """Make every derived index agree with the sessions; report (and unless ``dry_run``, fix) the
    drift that a second pass, ``settle`` seconds after the first, still finds (0: one pass)."""
    n, drift, skipped = _survey(store, batch)
    if drift and settle > 0:
        time.sleep(settle)  # (let writes in flight land: acknowledgements ride within ~0.1 s)
        n, again, skipped = _survey(store, batch)
        drift = {k: v for k, v in again.items() if drift.get(k) == v}
    if not dry_run:
        cmds = _commands(drift)
        for i in range(0, len(cmds), 1000):
            for reply in store.driver.execute(cmds[i:i + 1000]):
                check(reply)
    report = ReconcileReport(n, _fixes(drift), tuple(skipped), dry_run)
    log.info("reconciled derived indexes", extra={"sessions": n, "fixed": report.fixed, "dry_run": dry_run,
                                                  "skipped": len(skipped)})
    return report
