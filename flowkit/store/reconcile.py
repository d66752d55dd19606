"""``flowkit reconcile``: rebuild the derived indexes from the per-session keys.

The indexes (active sessions, timeouts, outbox, per-flow/per-step counters) are written
beside each commit, not inside it, so a crash between the two, or a race between two
writers' index updates, can leave them off. The state hashes are the truth: reconcile reads
every session (SCAN + pipelined reads), computes what each index should hold, compares it
with what it holds, and fixes and reports the difference.

It holds the expected indexes in memory (a few dozen bytes per session). Run it while
writers are quiet, or twice: a commit that lands between the read and the fix may be
counted the old way until the next run.
"""

from __future__ import annotations

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


def _zset_fixes(store: Any, zsets: dict[str, dict[str, int]], fixes: dict[str, dict[str, int]]) -> Batch:
    """The commands that make each index zset hold exactly ``zsets``; the drift counted in ``fixes``."""
    cmds: Batch = []
    for key, want in zsets.items():
        have = {s(m): as_int(sc) for m, sc in pairs(check(store.driver.execute([("ZRANGE", key, 0, -1, "WITHSCORES")])[0]))}
        added = [m for m in want if m not in have]
        changed = [m for m in want if m in have and have[m] != want[m]]
        removed = [m for m in have if m not in want]
        fixes[key.removeprefix("fk:idx:")] = {"added": len(added), "removed": len(removed), "changed": len(changed)}
        cmds += [("ZADD", key, want[m], m) for m in added + changed]
        cmds += [("ZREM", key, *removed[i:i + 500]) for i in range(0, len(removed), 500)]
    return cmds


def _counter_fixes(store: Any, counts: dict[str, dict[str, int]]) -> tuple[Batch, dict[str, int]]:
    """The commands that make the counters and the flows set say ``counts``, and the drift."""
    cmds: Batch = []
    flows = {str(s(f)) for f in check(store.driver.execute([("SMEMBERS", K.IDX_FLOWS)])[0]) or []}
    c_fix = {"added": 0, "removed": 0, "changed": 0}
    for flow in sorted(flows | set(counts)):
        key = K.counter_key(flow)
        have = {s(f): int(v) for f, v in pairs(check(store.driver.execute([("HGETALL", key)])[0]))}
        want = counts.get(flow, {})
        for name, value in want.items():
            if name not in have:
                c_fix["added"] += 1
            elif have[name] != value:
                c_fix["changed"] += 1
            else:
                continue
            cmds.append(("HSET", key, name, value))
        extra = [f for f, v in have.items() if f not in want]
        c_fix["removed"] += sum(1 for f in extra if have[f])  # a field at 0 is not drift, just untidy
        if extra:
            cmds.append(("HDEL", key, *extra))
        if not want:
            cmds.append(("SREM", K.IDX_FLOWS, flow))
        elif flow not in flows:
            cmds.append(("SADD", K.IDX_FLOWS, flow))
    return cmds, c_fix


def reconcile(store: Any, *, dry_run: bool = False, batch: int = 500) -> ReconcileReport:
    """Make every derived index agree with the sessions; report (and unless ``dry_run``, fix) the drift."""
    n, zsets, counts, skipped = _expected(store, batch)
    fixes: dict[str, dict[str, int]] = {}
    cmds = _zset_fixes(store, zsets, fixes)
    counter_cmds, fixes["counters"] = _counter_fixes(store, counts)
    cmds += counter_cmds
    if not dry_run:
        for i in range(0, len(cmds), 1000):
            for reply in store.driver.execute(cmds[i:i + 1000]):
                check(reply)
    report = ReconcileReport(n, fixes, tuple(skipped), dry_run)
    log.info("reconciled derived indexes", extra={"sessions": n, "fixed": report.fixed, "dry_run": dry_run,
                                                  "skipped": len(skipped)})
    return report
