"""Metrics: per-process Prometheus series and deployment-wide counters in Redis.

- :class:`Metrics` — this process's Prometheus registry (latency histogram, counters);
- :class:`RedisMetrics` — counters every process flushes to Redis (dashboard, alerts);
- :class:`Tee` — give the runtime both;
- :class:`RedisCollector` — exposes the Redis counters and the store's gauges at ``/metrics``;
- :func:`frames.counters_frame` / :func:`frames.series_frame` — the same as pandas DataFrames.
"""

from __future__ import annotations

from typing import Any

from flowkit.metrics.collector import RedisCollector
from flowkit.metrics.prom import Metrics
from flowkit.metrics.redis import COUNTERS, RedisMetrics, by_label, minutes, total, totals


class Tee:
    """Forwards every metrics call to several sinks (e.g. Prometheus and Redis)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def __getattr__(self, name: str) -> Any:
        methods = [getattr(s, name) for s in self.sinks if hasattr(s, name)]

        def call(*args: Any, **kwargs: Any) -> Any:
            out = None
            for m in methods:
                out = m(*args, **kwargs)
            return out

        return call

    async def exposition(self) -> tuple[bytes, str]:
        for s in self.sinks:
            if hasattr(s, "exposition"):
                text: tuple[bytes, str] = await s.exposition()
                return text
        raise AttributeError("no sink renders Prometheus text")


__all__ = ["COUNTERS", "Metrics", "RedisCollector", "RedisMetrics", "Tee", "by_label", "minutes", "total", "totals"]
