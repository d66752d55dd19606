"""Prometheus metrics of one runtime process (prometheus-client, exposed at ``/metrics``).

Each :class:`Metrics` has its own registry, so several runtimes (or tests) in one process
never share or double-register series. The runtime calls :meth:`handled` for every event,
the web app :meth:`webhook_rejected` and :meth:`delivery_status`.

Collectors that read Redis (:class:`~flowkit.metrics.RedisCollector`) go in ``remote``, not
in the registry: :meth:`exposition` renders them in a worker thread with a deadline, so a
hung Redis never blocks the event loop and never hides this process's own series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.registry import Collector

from flowkit.metrics.collector import redis_up

#: how long a scrape waits for the Redis-backed series before answering without them
REMOTE_TIMEOUT = 1.0

# Handling an event is one Redis round trip plus the engine: most answers take 0.2-5 ms.
# People answer in seconds to hours.
_WAIT_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters and histograms of message handling, the webhook and service calls."""

    def __init__(self, registry: CollectorRegistry | None = None, *, remote: Iterable[Collector] = (),
                 remote_timeout: float = REMOTE_TIMEOUT) -> None:
        self.registry = registry or CollectorRegistry()
        self.remote = CollectorRegistry()
        self._remotes = 0
        for c in remote:
            self.add_remote(c)
        self.remote_timeout = remote_timeout
        self._remote_job: asyncio.Future[bytes] | None = None
        r = self.registry
        self.messages = Counter("flowkit_messages", "Events handled, by outcome (applied, duplicate, noop, unrouted).",
                                ["outcome"], registry=r)
        self.conflicts = Counter("flowkit_commit_conflicts", "Commits that lost a race and were re-run.", registry=r)
        self.engine_errors = Counter("flowkit_engine_errors", "Events the engine could not apply (session failed).",
                                     registry=r)
        self.latency = Histogram("flowkit_handle_seconds", "Time to handle one event (load, engine, commit).",
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("flowkit_webhook_rejected", "Webhook requests refused, by reason.", ["reason"],
                                registry=r)
        self.unavailable = Counter("flowkit_webhook_unavailable", "Deliveries answered 503 (Redis down or busy).",
                                   registry=r)
        self.statuses = Counter("flowkit_delivery_status", "WhatsApp delivery statuses received.", ["status"],
                                registry=r)
        # a second name: flowkit_delivery_status_total already exists with the status label alone
        self.step_statuses = Counter("flowkit_delivery_step_status", "WhatsApp delivery statuses of the replies "
                                     "each flow step sent.", ["flow", "step", "status"], registry=r)
        self.send_failures = Counter("flowkit_reply_send_failures", "Replies that could not be sent (left in the outbox).",
                                     registry=r)
        self.service_calls = Counter("flowkit_service_calls", "Service calls, by service and outcome.",
                                     ["service", "outcome"], registry=r)
        self.recovery = Counter("flowkit_recovery_actions", "Repairs made by recovery, by kind.", ["action"], registry=r)
        self.delivery_failures = Counter("flowkit_delivery_failures", "Replies WhatsApp did not deliver, by error "
                                         "(whatsapp:<code>, outside_window).", ["error"], registry=r)
        self.whatsapp_alerts = Counter("flowkit_whatsapp_alerts", "Account-level WhatsApp errors (190: token "
                                       "expired); nothing is sent until an operator acts.", ["error"], registry=r)

        self.handoffs = Counter("flowkit_handoffs", "Sessions handed to people, by flow.", ["flow"], registry=r)
        self.first_reply = Histogram("flowkit_handoff_first_reply_seconds", "Time from a hand-off to the first "
                                     "agent reply, by flow.", ["flow"], buckets=_WAIT_BUCKETS, registry=r)
        self.agent_events = Counter("flowkit_agent_webhook_posts", "Posts to FLOWKIT_AGENT_WEBHOOK, by outcome "
                                    "(delivered, failed: retried).", ["outcome"], registry=r)

    def handoff(self, flow: str) -> None:
        self.handoffs.labels(flow).inc()

    def agent_first_reply(self, flow: str, seconds: float) -> None:
        self.first_reply.labels(flow).observe(seconds)

    def agent_event(self, outcome: str) -> None:
        self.agent_events.labels(outcome).inc()

    def handled(self, outcome: str, seconds: float) -> None:
        self.messages.labels(outcome).inc()
        self.latency.observe(seconds)

    def applied(self, flow: str, record: Any, replies: int) -> None:
        pass  # per-flow business counters live in Redis (RedisMetrics), shared by all processes

    def sent(self, n: int = 1) -> None:
        pass

    def conflict(self) -> None:
        self.conflicts.inc()

    def engine_error(self) -> None:
        self.engine_errors.inc()

    def send_failed(self) -> None:
        self.send_failures.inc()

    def webhook_unavailable(self) -> None:
        self.unavailable.inc()

    def webhook_rejected(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def delivery_status(self, status: str) -> None:
        self.statuses.labels(status).inc()

    def delivery_step(self, flow: str, step: str, status: str) -> None:
        self.step_statuses.labels(flow, step, status).inc()

    def service_called(self, service: str, ok: bool, seconds: float = 0.0) -> None:
        self.service_calls.labels(service, "ok" if ok else "error").inc()

    def recovered(self, action: str, n: int = 1) -> None:
        if n:
            self.recovery.labels(action).inc(n)

    def delivery_failed(self, error: str) -> None:
        self.delivery_failures.labels(error).inc()

    def whatsapp_alert(self, error: str) -> None:
        self.whatsapp_alerts.labels(error).inc()

    def add_remote(self, collector: Collector) -> None:
        """Expose ``collector`` (one that does I/O) at ``/metrics``, read off the event loop."""
        self.remote.register(collector)
        self._remotes += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def exposition(self) -> tuple[bytes, str]:
        """This process's series, then the remote ones if they come within ``remote_timeout``.

        At most one remote read runs at a time: while Redis hangs, scrapes share the read in
        flight instead of each parking another thread on a dead socket.
        """
        local = self.render()
        if not self._remotes:
            return local, CONTENT_TYPE_LATEST
        loop = asyncio.get_running_loop()
        job = self._remote_job
        if job is None or job.done() or job.get_loop() is not loop:
            job = self._remote_job = loop.run_in_executor(None, generate_latest, self.remote)
            job.add_done_callback(_retrieve)
        try:
            remote = await asyncio.wait_for(asyncio.shield(job), self.remote_timeout)
        except Exception:  # noqa: BLE001 - a timeout or any failure of the remote read: Redis is not up
            remote = generate_latest(_Fixed(redis_up(False)))
        return local + remote, CONTENT_TYPE_LATEST


def _retrieve(job: asyncio.Future[bytes]) -> None:
    # a read that failed after its scrape gave up: its error was already answered as redis_up 0
    if not job.cancelled():
        job.exception()


class _Fixed:
    """A collector of given families (for rendering one gauge without a registry)."""

    def __init__(self, *families: Any) -> None:
        self.families = families

    def collect(self) -> Iterable[Any]:
        return self.families


__all__ = ["Metrics"]
