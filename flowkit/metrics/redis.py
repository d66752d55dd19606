"""Counters kept in Redis, shared by every runtime process, cheap to read.

Why not only Prometheus: the dashboard and the alerts must see the whole deployment
(several webhook processes, workers) without a Prometheus server, and must never SCAN
sessions. So each process counts in memory and flushes to Redis at most every
``flush_every`` seconds in one pipeline (one round trip, not one per message):

- ``fk:m:{m<shard>}:total`` — a hash of all-time counters;
- ``fk:m:{m<shard>}:<minute>`` — the same counters per UTC minute (epoch ms of the minute
  start), expiring after ``retention``; rates over time and alert windows read these.

A process writes to one shard (hash-tagged, so shards spread over a Cluster and no
single key is hot); readers sum the shards. Field names are ``name`` or
``name|label1|label2`` (see :data:`COUNTERS`). Gauges (active sessions per flow and step,
outbox backlog, quarantined states) are not counted here: they come from the store's
derived indexes, which the commit maintains and ``flowkit reconcile`` rebuilds.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

PREFIX = "fk:m:"
SHARDS = 8
MINUTE_MS = 60_000

# name -> label names (the documented metric catalogue)
COUNTERS: dict[str, tuple[str, ...]] = {
    "messages_in": (),             # user messages applied
    "messages_out": (),            # replies sent
    "events": ("outcome",),        # every handled event: applied, duplicate, noop, unrouted
    "sessions_started": ("flow",),
    "sessions_ended": ("flow", "status"),  # completed, cancelled, failed, expired, handoff
    "conflicts": (),               # commits that lost a race and were re-run
    "duplicates": (),              # redelivered messages absorbed
    "validation_failures": ("flow", "step"),
    "steps_entered": ("flow", "step"),  # a step entered by an applied commit (the funnel; re-prompts do not
                                        # count, a return to the step after back or a loop counts again)
    "engine_errors": (),
    "service_calls": ("service",),
    "service_errors": ("service",),
    "service_ms": ("service",),    # summed latency; divide by service_calls for the mean
    "webhook_rejected": ("reason",),
    "webhook_unavailable": (),     # 503s (Redis down)
    "delivery_status": ("status",),
    "delivery_step": ("flow", "step", "status"),  # statuses of the replies each step sent (sent, delivered,
                                                  # read, failed); bounded by flows x steps x statuses
    "send_failures": (),
    "recovery": ("action",),
    "latency_ms_sum": (),          # summed handling latency of applied events
    "latency_ms_le": ("le",),      # histogram of that latency: events per bucket (see BUCKETS_MS)
    "service_ms_le": ("service", "le"),  # histogram of service call latency per service
}

#: histogram bucket upper bounds in ms; a bucket counts the values above the previous bound
#: (not cumulative, so a flush is one HINCRBY per value); histogram() makes them cumulative
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def bucket_of(ms: float) -> str:
    return next((str(b) for b in BUCKETS_MS if ms <= b), "+Inf")


def shard_key(shard: int, bucket: int | str) -> str:
    return f"{PREFIX}{{m{shard}}}:{bucket}"


def field(name: str, *labels: Any) -> str:
    return "|".join([name, *(str(x) for x in labels)])


def split_field(f: str) -> tuple[str, tuple[str, ...]]:
    name, *labels = f.split("|")
    return name, tuple(labels)


class RedisMetrics:
    """The writer one runtime process uses. Thread-safe; flushes by itself when due.

    Implements the same methods the runtime and the web app call on
    :class:`flowkit.metrics.Metrics` (Prometheus), so either (or :class:`Tee` of both) fits.
    """

    def __init__(self, client: Any, *, flush_every: float = 1.0, retention_s: int = 7 * 86400,
                 shard: int | None = None, clock: Any = None, autoflush: bool = True) -> None:
        self.client = client
        self.flush_every = flush_every
        # False in an event loop: counting must never do blocking I/O there; the web app
        # flushes from a worker thread instead (flowkit.web).
        self.autoflush = autoflush
        self.retention_s = retention_s
        self.shard = (zlib.crc32(f"{os.getpid()}-{id(self)}".encode()) % SHARDS) if shard is None else shard
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._pending: dict[int, defaultdict[str, float]] = {}
        self._last_flush = time.monotonic()

    # -- counting

    def inc(self, name: str, *labels: Any, n: float = 1) -> None:
        if not n:
            return
        minute = self.clock() // MINUTE_MS * MINUTE_MS
        with self._lock:
            self._pending.setdefault(minute, defaultdict(float))[field(name, *labels)] += n
        if self.autoflush and time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def handled(self, outcome: str, seconds: float) -> None:
        self.inc("events", outcome)
        if outcome == "duplicate":
            self.inc("duplicates")
        elif outcome == "applied":
            self.inc("latency_ms_sum", n=round(seconds * 1000, 3))
            self.inc("latency_ms_le", bucket_of(seconds * 1000))

    def applied(self, flow: str, record: Mapping[str, Any], replies: int) -> None:
        """What one applied commit means for the counters (called by the runtime)."""
        event, status, error = record.get("event"), record.get("status"), record.get("error") or ""
        mid = record.get("message_id") or ""
        if event in ("message", "start", "command") and mid and not mid.startswith("result:"):
            self.inc("messages_in")  # a user's message (answers, triggers, and words like "cancel")
        if event == "start":
            self.inc("sessions_started", flow)
        if status in ("completed", "cancelled", "failed", "expired") or (status == "handoff" and record.get("path")):
            # (a held session's messages and agent replies are handoff records too; only the
            # one that entered the hand-off has a path)
            self.inc("sessions_ended", flow, status)
        if error.startswith("invalid_input"):
            self.inc("validation_failures", flow, record.get("from_step") or "")
        if error.startswith("engine_error"):
            self.inc("engine_errors")
        prev = record.get("from_step")
        for step in record.get("path") or ():
            if step != prev:  # a re-prompt stays at its step: not a new entry
                self.inc("steps_entered", flow, step)
            prev = step

    def sent(self, n: int = 1) -> None:
        self.inc("messages_out", n=n)

    def conflict(self) -> None:
        self.inc("conflicts")

    def engine_error(self) -> None:
        pass  # counted from the failed record in applied()

    def send_failed(self) -> None:
        self.inc("send_failures")

    def webhook_rejected(self, reason: str) -> None:
        self.inc("webhook_rejected", reason)

    def webhook_unavailable(self) -> None:
        self.inc("webhook_unavailable")

    def delivery_status(self, status: str) -> None:
        self.inc("delivery_status", status)

    def delivery_step(self, flow: str, step: str, status: str) -> None:
        self.inc("delivery_step", flow, step, status)

    def service_called(self, service: str, ok: bool, seconds: float = 0.0) -> None:
        self.inc("service_calls", service)
        self.inc("service_ms", service, n=round(seconds * 1000, 3))
        self.inc("service_ms_le", service, bucket_of(seconds * 1000))
        if not ok:
            self.inc("service_errors", service)

    def recovered(self, action: str, n: int = 1) -> None:
        self.inc("recovery", action, n=n)

    def delivery_failed(self, error: str) -> None:
        self.inc("delivery_failed", error)

    def whatsapp_alert(self, error: str) -> None:
        self.inc("whatsapp_alert", error)

    # -- writing

    def flush(self) -> int:
        """Write what was counted since the last flush (one pipelined round trip). Returns fields written."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not pending:
            return 0
        total: defaultdict[str, float] = defaultdict(float)
        written = 0
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for minute, counts in pending.items():
                    key = shard_key(self.shard, minute)
                    for f, n in counts.items():
                        _incr(pipe, key, f, n)
                        written += 1
                    pipe.expire(key, self.retention_s)
                    _add(total, counts)
                for f, n in total.items():
                    _incr(pipe, shard_key(self.shard, "total"), f, n)
                pipe.execute()
        except Exception:
            # Redis down: keep the counts for the next flush rather than lose them.
            with self._lock:
                for minute, counts in pending.items():
                    _add(self._pending.setdefault(minute, defaultdict(float)), counts)
            raise
        return written


def _add(into: defaultdict[str, float], counts: Mapping[str, float]) -> None:
    for f, n in counts.items():
        into[f] += n


def _incr(pipe: Any, key: str, f: str, n: float) -> None:
    if float(n).is_integer():
        pipe.hincrby(key, f, int(n))
    else:
        pipe.hincrbyfloat(key, f, float(n))


# ---------------------------------------------------------------- reading


def _num(v: Any) -> float:
    s = v.decode() if isinstance(v, bytes) else str(v)
    f = float(s)
    return int(f) if f.is_integer() else f


def totals(client: Any) -> dict[str, float]:
    """All-time counters summed over shards: {field: value} (one pipelined round trip)."""
    with client.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.hgetall(shard_key(shard, "total"))
        rows = pipe.execute()
    out: defaultdict[str, float] = defaultdict(float)
    for row in rows:
        for f, v in row.items():
            out[f.decode() if isinstance(f, bytes) else f] += _num(v)
    return dict(out)


def minutes(client: Any, since_ms: int, until_ms: int) -> dict[int, dict[str, float]]:
    """Per-minute counters between two times, summed over shards: {minute_ms: {field: value}}."""
    start = since_ms // MINUTE_MS * MINUTE_MS
    buckets = list(range(start, until_ms + 1, MINUTE_MS))
    with client.pipeline(transaction=False) as pipe:
        for b in buckets:
            for shard in range(SHARDS):
                pipe.hgetall(shard_key(shard, b))
        rows = pipe.execute()
    out: dict[int, dict[str, float]] = {}
    for i, b in enumerate(buckets):
        acc: defaultdict[str, float] = defaultdict(float)
        for row in rows[i * SHARDS:(i + 1) * SHARDS]:
            for f, v in row.items():
                acc[f.decode() if isinstance(f, bytes) else f] += _num(v)
        out[b] = dict(acc)
    return out


def by_label(counts: Mapping[str, float], name: str) -> dict[tuple[str, ...], float]:
    """The values of one counter by its labels, e.g. ``by_label(totals(c), "service_errors")``."""
    out: dict[tuple[str, ...], float] = {}
    for f, v in counts.items():
        n, labels = split_field(f)
        if n == name:
            out[labels] = out.get(labels, 0) + v
    return out


def total(counts: Mapping[str, float], name: str) -> float:
    return sum(by_label(counts, name).values())


def histogram(counts: Mapping[str, float], name: str, *labels: str) -> list[tuple[float, float]]:
    """Cumulative buckets ``[(upper bound in ms, count <= it), ..., (inf, all)]`` of a
    ``*_le`` counter, for the label values given (all of them summed when none)."""
    per: defaultdict[str, float] = defaultdict(float)
    for lab, v in by_label(counts, name).items():
        if lab[:len(labels)] == labels:
            per[lab[-1]] += v
    out, run = [], 0.0
    for b in (*BUCKETS_MS, float("inf")):
        run += per.get("+Inf" if b == float("inf") else str(b), 0)
        out.append((float(b), run))
    return out


def quantile_ms(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (as Prometheus' histogram_quantile
    would, without interpolation); None without data."""
    n = buckets[-1][1] if buckets else 0
    if not n:
        return None
    return next(b for b, c in buckets if c >= q * n)


def reset(client: Any) -> None:
    """Delete every metrics key (a deliberate reset, e.g. after an incident review)."""
    for k in list(client.scan_iter(match=PREFIX + "*", count=1000)):
        client.delete(k)
