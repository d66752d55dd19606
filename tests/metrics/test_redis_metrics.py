"""Deployment-wide counters in Redis: written by the runtime, summed over shards, cheap to read."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from flowkit.engine import UserMessage
from flowkit.metrics import Metrics, RedisCollector, RedisMetrics, Tee, by_label, total, totals
from flowkit.metrics.frames import counters_frame, labelled_series, series_frame
from flowkit.runtime import RecordingChannel, Runtime, ServiceRegistry
from flowkit.store import Store
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock


def talk(rt: Runtime, sid: str, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        rt.handle(sid, UserMessage(text=text, message_id=f"{sid}.{i}"))


def test_the_runtime_counts_what_happened(store: Store, clock: Clock) -> None:
    metrics = RedisMetrics(store.client, flush_every=3600, clock=clock)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock,
                 metrics=metrics)
    talk(rt, "u1", ["pizza", "huge", "large", "yes", "2", "12 Main Street"])  # one invalid size
    talk(rt, "u2", ["pizza", "cancel"])
    rt.handle("u2", UserMessage(text="cancel", message_id="u2.1"))  # a redelivery
    assert totals(store.client) == {}  # nothing written before the flush
    metrics.flush()
    t = totals(store.client)
    assert total(t, "messages_in") == 8
    assert by_label(t, "sessions_started") == {("order_pizza",): 2}
    assert by_label(t, "sessions_ended") == {("order_pizza", "completed"): 1, ("order_pizza", "cancelled"): 1}
    assert by_label(t, "validation_failures") == {("order_pizza", "ask_size"): 1}
    assert total(t, "duplicates") == 1 and by_label(t, "events")[("duplicate",)] == 1
    assert by_label(t, "service_calls") == {("orders.create",): 1} and total(t, "service_errors") == 0
    assert total(t, "messages_out") == len(rt.channel.sent)
    assert total(t, "latency_ms_sum") > 0


def test_shards_are_summed_and_minutes_kept_apart(store: Store, clock: Clock) -> None:
    a = RedisMetrics(store.client, shard=0, clock=clock)
    b = RedisMetrics(store.client, shard=5, clock=clock)
    start = clock.now
    a.inc("webhook_rejected", "bad_signature")
    b.inc("webhook_rejected", "bad_signature", n=2)
    clock.advance(120)
    b.inc("send_failures")
    a.flush()
    b.flush()
    assert by_label(totals(store.client), "webhook_rejected") == {("bad_signature",): 3}
    frame = series_frame(store.client, start, clock.now, ["webhook_rejected", "send_failures"])
    assert list(frame["webhook_rejected"]) == [3, 0, 0] and list(frame["send_failures"]) == [0, 0, 1]
    assert str(frame.index.tz) == "UTC"
    split = labelled_series(store.client, start, clock.now, "webhook_rejected")
    assert list(split.columns) == ["bad_signature"]
    cf = counters_frame(store.client)
    assert cf.loc[cf.metric == "send_failures", "value"].item() == 1


def test_counts_survive_a_failed_flush(tmp_path: Any, clock: Clock) -> None:
    from flowkit.store import RedisServer, connect

    server = RedisServer(tmp_path / "r").start()
    port = server.port
    client = connect(server.url)
    m = RedisMetrics(client, clock=clock)
    m.inc("conflicts", n=4)
    server.stop()
    with pytest.raises(Exception):  # noqa: B017 - the client's own connection error
        m.flush()
    server = RedisServer(tmp_path / "r", port=port).start()
    try:
        m.flush()
        assert total(totals(client), "conflicts") == 4
    finally:
        client.close()
        server.stop()


def test_prometheus_exposition_shows_deployment_totals_and_gauges(store: Store, clock: Clock) -> None:
    prom = Metrics()
    prom.registry.register(RedisCollector(store))
    redis_metrics = RedisMetrics(store.client, clock=clock)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=ServiceRegistry(), clock=clock,
                 metrics=Tee(prom, redis_metrics))
    talk(rt, "u1", ["pizza", "small"])
    redis_metrics.flush()
    text = generate_latest(prom.registry).decode()
    assert 'flowkit_total_sessions_started_total{flow="order_pizza"} 1.0' in text
    assert 'flowkit_sessions_at_step{flow="order_pizza",step="ask_qty"} 1.0' in text
    assert "flowkit_active_sessions 1.0" in text and "flowkit_outbox_backlog 0.0" in text
    assert 'flowkit_messages_total{outcome="applied"} 2.0' in text  # this process's own series


def test_reading_never_scans(store: Store, redis_client: Any, clock: Clock) -> None:
    m = RedisMetrics(store.client, clock=clock)
    for _ in range(50):
        m.inc("events", "applied")
        clock.advance(30)
    m.flush()
    redis_client.config_resetstat()
    series_frame(store.client, clock.now - 3600_000, clock.now)
    totals(store.client)
    stats = redis_client.info("commandstats")
    assert not any(k.startswith("cmdstat_scan") or k == "cmdstat_keys" for k in stats)


def test_reconcile_rebuilds_what_the_history_proves(store: Store, clock: Clock) -> None:
    from flowkit.metrics.rebuild import rebuild

    metrics = RedisMetrics(store.client, clock=clock)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock,
                 metrics=metrics)
    talk(rt, "u1", ["pizza", "huge", "large", "yes", "2", "12 Main Street"])
    rt.handle("u1", UserMessage(text="12 Main Street", message_id="u1.5"))  # a duplicate: not in any history
    metrics.flush()
    before = totals(store.client)
    # a crash lost counts, and something wrote garbage
    for key in store.client.scan_iter(match="fk:m:*"):
        store.client.hdel(key, "messages_in")
        store.client.hincrby(key, "sessions_started|order_pizza", 40)
    rebuilt = rebuild(store, now_ms=clock.now)
    after = totals(store.client)
    assert after == before  # derived counters back to the truth, the others untouched
    assert rebuilt["messages_in"] == 6 and total(after, "duplicates") == 1
    frame = series_frame(store.client, clock.now - 60_000, clock.now, ["messages_in"])
    assert frame["messages_in"].sum() == 6


def test_reconcile_metrics_cli(store: Store, redis_url: str, clock: Clock) -> None:
    from typer.testing import CliRunner

    from flowkit.cli import app

    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    talk(rt, "u1", ["pizza", "small"])  # no metrics were kept at all
    r = CliRunner().invoke(app, ["reconcile", "--metrics", "--redis", redis_url, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert total(totals(store.client), "messages_in") == 2


def test_latency_histograms_are_kept_in_redis_and_exported(store: Store, clock: Clock) -> None:
    from flowkit.metrics.redis import bucket_of, histogram, quantile_ms

    m = RedisMetrics(store.client, clock=clock, flush_every=3600)
    for ms in (3, 4, 7, 30, 30, 30, 900, 20_000):
        m.handled("applied", ms / 1000)
    m.service_called("payments.lookup", True, 0.04)
    m.service_called("payments.lookup", False, 3.0)
    m.service_called("calendar.reserve", True, 0.002)
    m.flush()
    counts = totals(store.client)
    h = histogram(counts, "latency_ms_le")
    assert dict(h)[5.0] == 2 and dict(h)[10.0] == 3 and dict(h)[50.0] == 6 and dict(h)[1000.0] == 7
    assert h[-1] == (float("inf"), 8)
    assert [c for _, c in h] == sorted(c for _, c in h)  # cumulative
    assert quantile_ms(h, 0.5) == 50.0 and quantile_ms(h, 0.99) == float("inf")
    assert quantile_ms(histogram({}, "latency_ms_le"), 0.5) is None
    assert dict(histogram(counts, "service_ms_le", "payments.lookup"))[5000.0] == 2
    assert dict(histogram(counts, "service_ms_le", "payments.lookup"))[25.0] == 0
    assert bucket_of(5) == "5" and bucket_of(5.01) == "10" and bucket_of(10_001) == "+Inf"
    prom = Metrics()
    prom.registry.register(RedisCollector(store))
    text = generate_latest(prom.registry).decode()
    assert 'flowkit_total_handle_seconds_bucket{le="0.05"} 6.0' in text
    assert "flowkit_total_handle_seconds_count 8.0" in text
    assert 'flowkit_total_service_seconds_bucket{le="5.0",service="payments.lookup"} 2.0' in text
    assert 'flowkit_total_service_seconds_count{service="calendar.reserve"} 1.0' in text
