"""Prometheus view of the deployment-wide numbers: Redis counters and the store's gauges.

Registered on a :class:`~flowkit.metrics.Metrics` registry, ``/metrics`` of any process
then shows the totals of all processes (``flowkit_total_*``) next to its own series.
Reading costs a few pipelined Redis calls; never a SCAN of sessions. A Redis that is down
or refuses the reads gives ``flowkit_redis_up 0`` instead of an error, so a scrape still
shows the process's own series (see :meth:`flowkit.metrics.Metrics.exposition`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from flowkit.errors import FlowkitError
from flowkit.metrics.redis import COUNTERS, by_label, histogram, total, totals
from flowkit.store import keys as K


class RedisCollector(Collector):
    def __init__(self, store: Any) -> None:
        self.store = store  # a sync flowkit.store.Store

    def collect(self) -> Iterator[Any]:
        # Read everything before yielding: a Redis that fails half way must not leave a
        # scrape with half the families and no sign that they are missing.
        try:
            families = list(self._families())
        except (RedisError, FlowkitError, OSError):
            yield redis_up(False)
            return
        yield from families
        yield redis_up(True)

    def _families(self) -> Iterator[Any]:
        counts = totals(self.store.client)
        yield _histogram("flowkit_total_handle_seconds", "All processes: time to handle an applied event.",
                         histogram(counts, "latency_ms_le"), total(counts, "latency_ms_sum"))
        services = HistogramMetricFamily("flowkit_total_service_seconds", "All processes: service call latency.",
                                         labels=["service"])
        for (service,), ms in sorted(by_label(counts, "service_ms").items()):
            services.add_metric([service], _seconds(histogram(counts, "service_ms_le", service)), ms / 1000)
        yield services
        for name, labels in COUNTERS.items():
            if name.endswith("_le"):
                continue  # exported as the histograms above
            fam = CounterMetricFamily(f"flowkit_total_{name}", f"All processes: {name.replace('_', ' ')}.",
                                      labels=list(labels))
            for values, v in sorted(by_label(counts, name).items()):
                fam.add_metric(list(values), v)
            yield fam
        active = GaugeMetricFamily("flowkit_sessions", "Sessions by flow and status.", labels=["flow", "status"])
        steps = GaugeMetricFamily("flowkit_sessions_at_step", "Sessions by flow and step.", labels=["flow", "step"])
        for flow, c in sorted(self.store.counters().items()):
            for status, n in sorted(c.get("status", {}).items()):
                active.add_metric([flow, status], n)
            for step, n in sorted(c.get("step", {}).items()):
                steps.add_metric([flow, step], n)
        yield active
        yield steps
        yield GaugeMetricFamily("flowkit_active_sessions", "Sessions not yet finished.", value=self.store.active_count())
        yield GaugeMetricFamily("flowkit_quarantined_states", "Corrupt states ever quarantined.",
                                value=self.store.quarantine_count())
        yield GaugeMetricFamily("flowkit_outbox_backlog", "Commits whose effects are not acknowledged yet.",
                                value=self.store.client.zcard(K.IDX_OUTBOX))


def redis_up(up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily("flowkit_redis_up", "1 if Redis answered this scrape's reads in time, else 0.",
                             value=1 if up else 0)


def _seconds(buckets: list[tuple[float, float]]) -> list[tuple[str, float]]:
    return [("+Inf" if b == float("inf") else repr(b / 1000), c) for b, c in buckets]


def _histogram(name: str, doc: str, buckets: list[tuple[float, float]], sum_ms: float) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc)
    fam.add_metric([], _seconds(buckets), sum_ms / 1000)
    return fam
