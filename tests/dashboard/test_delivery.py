"""Delivery by step: statuses WhatsApp posts to the real web app are counted per flow and step
(Redis metrics, Prometheus) and shown by the dashboard's data function — real Redis, the real
async runtime and sender, the Graph API imitation over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from flowkit import dashboard as D
from flowkit.channels.whatsapp import AsyncWhatsAppSender
from flowkit.channels.whatsapp.payloads import status_payload
from flowkit.history.columns import read_history
from flowkit.history.delivery import delivery_rates
from flowkit.history.export import export_store
from flowkit.history.messages import read_messages
from flowkit.metrics import Metrics, RedisMetrics, Tee, totals
from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel
from flowkit.runtime.places import SentPlaces
from flowkit.store import AsyncStore, Store, connect_async, delivery
from flowkit.testing.fake_graph import FakeGraphAPI
from flowkit.web import create_app
from tests.dashboard.conftest import Traffic
from tests.dashboard.test_app import APP
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, TOKEN, deliver, say
from tests.waiting import DEADLINE

WA = "31600000077"


async def until(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def post_statuses(redis_url: str, store: Store, graph: FakeGraphAPI, prom: Metrics) -> None:
    """pizza (two replies at ask_size), large (the upsell question); WhatsApp then reports
    sent/delivered/read for the first two and sent/failed for the third, as its webhook does."""
    redis_metrics = RedisMetrics(store.client, autoflush=False)
    metrics = Tee(prom, redis_metrics)

    async def main() -> None:
        astore = AsyncStore(connect_async(redis_url))
        sender = AsyncWhatsAppSender(config=graph.config(), max_attempts=1)
        rt = AsyncRuntime(astore, EXAMPLE_FLOWS, channel=AsyncWhatsAppChannel(sender), services=EXAMPLE_SERVICES,
                          background=True, metrics=metrics)
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET, metrics=metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa") as client:
            try:
                await say(client, WA, "pizza")
                await until(lambda: len(graph.to(WA)) == 2, "the welcome and the size question")
                await say(client, WA, "large")
                await until(lambda: len(graph.to(WA)) == 3, "the upsell question")
                await rt.drain()  # the wamid map is written once Graph accepted the replies
                first, second, third = graph.to(WA)
                for m in (first, second):
                    for status in ("sent", "delivered", "read"):
                        assert (await deliver(client, status_payload(m.id, WA, status))).status_code == 200
                for status in ("sent", "failed"):
                    assert (await deliver(client, status_payload(third.id, WA, status))).status_code == 200
                await rt.drain()
            finally:
                await rt.drain()
                await sender.aclose()
                await astore.client.aclose()

    asyncio.run(main())
    redis_metrics.flush()


def test_statuses_are_counted_per_flow_and_step_and_shown_with_their_rates(redis_url: str, store: Store) -> None:
    prom = Metrics()
    with FakeGraphAPI() as graph:
        post_statuses(redis_url, store, graph, prom)
        wamids = [m.id for m in graph.to(WA)]
    # the map entry carries where each reply came from
    entries = [delivery.parse_sent(store.client.get(f"fk:wamid:{w}").decode()) for w in wamids]
    assert [(e.flow, e.step) for e in entries if e] == [("order_pizza", "ask_size")] * 2 + [("order_pizza", "upsell")]
    table = D.delivery_by_step(totals(store.client))
    assert list(table.columns) == D.DELIVERY_COLUMNS
    rows = {r["step"]: r for r in table.to_dict("records")}
    assert set(rows) == {"ask_size", "upsell"} and set(table["flow"]) == {"order_pizza"}
    size, upsell = rows["ask_size"], rows["upsell"]
    assert (size["sent"], size["delivered"], size["read"], size["failed"]) == (2, 2, 2, 0)
    assert (size["delivered_rate"], size["read_rate"], size["failed_rate"]) == (1.0, 1.0, 0.0)
    assert (upsell["sent"], upsell["delivered"], upsell["read"], upsell["failed"]) == (1, 0, 0, 1)
    assert (upsell["delivered_rate"], upsell["read_rate"], upsell["failed_rate"]) == (0.0, 0.0, 1.0)
    # the deployment-wide numbers agree with the sum of the steps
    whole = D.delivery_summary(totals(store.client))
    assert whole["sent"] == table["sent"].sum() == 3 and whole["failed"] == table["failed"].sum() == 1
    text = prom.render().decode()
    assert 'flowkit_delivery_step_status_total{flow="order_pizza",status="read",step="ask_size"} 2.0' in text
    assert 'flowkit_delivery_step_status_total{flow="order_pizza",status="failed",step="upsell"} 1.0' in text


def test_old_map_values_without_flow_and_step_still_match() -> None:
    old = delivery.parse_sent("3#1#31600000001")
    assert old == delivery.SentMessage("31600000001", 3, 1) and old.flow is None and old.step is None
    new = delivery.parse_sent("3#1#31600000001\torder_pizza\task_size")
    assert new == delivery.SentMessage("31600000001", 3, 1, "order_pizza", "ask_size")
    assert delivery.parse_sent("x#1#s") is None and delivery.parse_sent(None) is None


def test_no_statuses_is_an_empty_table(store: Store) -> None:
    table = D.delivery_by_step(totals(store.client))
    assert table.empty and list(table.columns) == D.DELIVERY_COLUMNS
    assert isinstance(table, pd.DataFrame)


def test_the_traffic_tab_renders_delivery_by_step(redis_url: str, store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGraphAPI() as graph:
        post_statuses(redis_url, store, graph, Metrics())
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(h.value == "Delivery by step" for h in at.subheader)
    shown = next(d.value for d in at.dataframe if list(d.value.columns) == D.DELIVERY_COLUMNS)
    rows = zip(shown["step"], shown["sent"], shown["read"], shown["failed"], strict=True)
    assert list(rows) == [("ask_size", 2, 2, 0), ("upsell", 1, 0, 1)]


def test_the_traffic_tab_has_no_delivery_table_before_any_status(traffic: Traffic, redis_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any(h.value == "Delivery by step" for h in at.subheader)


def test_the_live_table_agrees_with_the_export(redis_url: str, store: Store, tmp_path: Path) -> None:
    """Same replies, same statuses: the dashboard's counters and ``flowkit analytics -t
    delivery`` (the export's messages joined to history) give the same rows."""
    with FakeGraphAPI() as graph:
        post_statuses(redis_url, store, graph, Metrics())
    export_store(store, tmp_path / "out")
    exported = delivery_rates(read_messages(tmp_path / "out"), read_history(tmp_path / "out"))
    live = D.delivery_by_step(totals(store.client))
    cols = ["flow", "step", "sent", "delivered", "read", "failed"]
    key = ["flow", "step"]
    want = exported[cols].sort_values(key).reset_index(drop=True).astype({c: float for c in cols[2:]})
    assert live[cols].sort_values(key).reset_index(drop=True).equals(want), (live, exported)


def test_the_blocking_runtime_records_where_its_replies_came_from_too(store: Store) -> None:
    from flowkit.engine import UserMessage
    from flowkit.runtime import RecordingChannel, Runtime

    channel = RecordingChannel()
    rt = Runtime(store, EXAMPLE_FLOWS, channel=channel, services=EXAMPLE_SERVICES)
    rt.handle(WA, UserMessage(text="pizza", message_id="m1"))
    rt.handle(WA, UserMessage(text="large", message_id="m2"))
    found = [store.lookup_sent(s.id) for s in channel.sent]
    assert [(f.flow, f.step, f.version, f.index) for f in found if f] == [
        ("order_pizza", "ask_size", 1, 0), ("order_pizza", "ask_size", 1, 1), ("order_pizza", "upsell", 2, 0)]


def test_places_are_bounded_and_skip_commits_without_a_step() -> None:
    places = SentPlaces(limit=2)
    places.note("a", 1, "f", {"to_step": "s1"})
    places.note("a", 2, "f", {"path": ["s1", "s2"]})
    places.note("a", 3, "f", {})  # nothing to attribute
    places.note("a", None, "f", {"to_step": "s1"})
    assert (places.get("a", 1), places.get("a", 2), len(places)) == (("f", "s1"), ("f", "s2"), 2)
    places.note("b", 1, "g", {"from_step": "s0"})  # a re-prompt stays at its step
    assert places.get("a", 1) is None and places.get("b", 1) == ("g", "s0") and len(places) == 2
