"""Rebuild the counters that the session histories can prove (``flowkit reconcile --metrics``).

Counters are flushed by each process about once a second, so a crash can lose up to a
second of counts, and a restore from backup brings sessions without their counters. The
history is the source of truth for what was *applied*: messages in, sessions started and
ended, validation failures, engine errors, steps entered, applied events. Those are recomputed from every
session's history and replace what is stored (totals, and per-minute buckets within
``retention_s``). Counters the history cannot know (conflicts, duplicates, webhook
rejections, service latency, send failures, recovery actions) are left as they are.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from flowkit.metrics.redis import MINUTE_MS, PREFIX, SHARDS, RedisMetrics, shard_key, split_field

DERIVED = ("messages_in", "sessions_started", "sessions_ended", "validation_failures", "engine_errors",
           "steps_entered")


def _is_derived(field: str) -> bool:
    name, labels = split_field(field)
    return name in DERIVED or (name == "events" and labels == ("applied",))


class _Collect(RedisMetrics):
    """RedisMetrics' own rules (applied()) counting into memory, bucketed by record time."""

    def __init__(self) -> None:
        super().__init__(client=None, flush_every=float("inf"), shard=0)
        self.now = 0
        self.clock = lambda: self.now

    def flush(self) -> int:
        return 0


def _collect(store: Any) -> Mapping[int, Mapping[str, float]]:
    """The derived counters of every stored history record, by minute."""
    c = _Collect()
    for state, records in store.iter_histories():
        for rec in records:
            c.now = int(rec.get("ts") or 0)
            c.inc("events", "applied")
            c.applied(state.get("flow") or "", rec, 0)
    buckets: Mapping[int, Mapping[str, float]] = c._pending
    return buckets


def _drop_derived(pipe: Any, keys: list[str], fields: list[list[Any]]) -> None:
    """Queue the removal of every derived field from each metrics hash (``fields``: its field names)."""
    for key, fs in zip(keys, fields, strict=True):
        stale = [f for f in (x.decode() if isinstance(x, bytes) else x for x in fs) if _is_derived(f)]
        if stale:
            pipe.hdel(key, *stale)


def rebuild(store: Any, *, retention_s: int = 7 * 86400, now_ms: int | None = None) -> dict[str, float]:
    """Recompute the history-derived counters; returns the new totals of those fields."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    buckets = _collect(store)
    client = store.client
    oldest = now - retention_s * 1000
    # drop the derived fields everywhere, then write the rebuilt ones into shard 0
    keys = [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=PREFIX + "*", count=1000)]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hkeys(key)
        fields = pipe.execute()
    totals: defaultdict[str, float] = defaultdict(float)
    with client.pipeline(transaction=False) as pipe:
        _drop_derived(pipe, keys, fields)
        for minute, counts in buckets.items():
            for f, n in counts.items():
                totals[f] += n
            if minute < oldest // MINUTE_MS * MINUTE_MS:
                continue
            key = shard_key(0, minute)
            for f, n in counts.items():
                pipe.hincrby(key, f, int(n))
            pipe.expire(key, max(1, (minute - oldest) // 1000))
        for f, n in totals.items():
            pipe.hincrby(shard_key(0, "total"), f, int(n))
        pipe.execute()
    return dict(totals)


__all__ = ["DERIVED", "SHARDS", "rebuild"]
