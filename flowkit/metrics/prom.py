"""Prometheus metrics of one runtime process (prometheus-client, exposed at ``/metrics``).

Each :class:`Metrics` has its own registry, so several runtimes (or tests) in one process
never share or double-register series. The runtime calls :meth:`handled` for every event,
the web app :meth:`webhook_rejected` and :meth:`delivery_status`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Handling an event is one Redis round trip plus the engine: most answers take 0.2-5 ms.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters and histograms of message handling, the webhook and service calls."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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
        self.send_failures = Counter("flowkit_reply_send_failures", "Replies that could not be sent (left in the outbox).",
                                     registry=r)
        self.service_calls = Counter("flowkit_service_calls", "Service calls, by service and outcome.",
                                     ["service", "outcome"], registry=r)
        self.recovery = Counter("flowkit_recovery_actions", "Repairs made by recovery, by kind.", ["action"], registry=r)
        self.delivery_failures = Counter("flowkit_delivery_failures", "Replies WhatsApp did not deliver, by error "
                                         "(whatsapp:<code>, outside_window).", ["error"], registry=r)
        self.whatsapp_alerts = Counter("flowkit_whatsapp_alerts", "Account-level WhatsApp errors (190: token "
                                       "expired); nothing is sent until an operator acts.", ["error"], registry=r)

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

    def service_called(self, service: str, ok: bool, seconds: float = 0.0) -> None:
        self.service_calls.labels(service, "ok" if ok else "error").inc()

    def recovered(self, action: str, n: int = 1) -> None:
        if n:
            self.recovery.labels(action).inc(n)

    def delivery_failed(self, error: str) -> None:
        self.delivery_failures.labels(error).inc()

    def whatsapp_alert(self, error: str) -> None:
        self.whatsapp_alerts.labels(error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def exposition(self) -> tuple[bytes, str]:
        return self.render(), CONTENT_TYPE_LATEST


__all__ = ["Metrics"]
