"""The webhook runner end to end: signed WhatsApp deliveries -> web app -> AsyncRuntime -> real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowkit.channels.whatsapp.payloads import (
    button_reply_payload,
    combine,
    list_reply_payload,
    location_payload,
    media_payload,
    message_payload,
    status_payload,
    text_payload,
)
from flowkit.engine import UserMessage
from flowkit.metrics import Metrics
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime
from flowkit.store import AsyncStore, RedisServer, Store, connect, connect_async
from flowkit.web import create_app
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, TOKEN, deliver, say, signed
from tests.waiting import until

Scenario = Callable[[httpx.AsyncClient, AsyncRuntime, AsyncRecordingChannel], Awaitable[None]]


def run_app(redis_url: str, scenario: Scenario, *, metrics: Metrics | None = None, **app_kw: Any) -> None:
    async def main() -> None:
        store = AsyncStore(connect_async(redis_url))
        channel = AsyncRecordingChannel()
        rt = AsyncRuntime(store, EXAMPLE_FLOWS, channel=channel, services=EXAMPLE_SERVICES)
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET, metrics=metrics, **app_kw)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa") as client:
            try:
                await scenario(client, rt, channel)
            finally:
                await rt.drain()
                await store.client.aclose()

    asyncio.run(main())


def session_keys(client: Any) -> list[bytes]:
    return sorted(client.scan_iter("fk:*"))


# ---------------------------------------------------------------- every example flow


CONVERSATIONS: dict[str, list[str]] = {
    "order_pizza": ["pizza", "large", "yes", "2", "12 Main Street"],
    "book_appointment": ["appointment", "dental", "2026-12-03", "11:00", "Ana Lopez", "ana@example.com", "yes"],
    "support_triage": ["support", "delivery", "AB123456", "2", "The box arrived empty", "yes"],
    "refund": ["refund", "AB1234", "10", "yes"],
}
FINAL_STATUS = {"order_pizza": "completed", "book_appointment": "completed", "support_triage": "completed",
                "refund": "completed"}


@pytest.mark.parametrize("flow", sorted(CONVERSATIONS))
def test_every_example_flow_through_signed_webhooks(flow: str, redis_url: str, store: Store) -> None:
    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        for text in CONVERSATIONS[flow]:
            r = await say(client, "31600000001", text)
            assert r.status_code == 200, r.text
            await rt.drain()  # service calls run in the background after the 200

    run_app(redis_url, scenario)
    state = store.load("31600000001")
    assert state is not None and state["flow"] == flow
    assert state["status"] == FINAL_STATUS[flow], (state, store.history("31600000001"))
    history = store.history("31600000001")
    assert [r["version"] for r in history] == list(range(1, state["version"] + 1))
    assert all(r["actor"] == "runtime" for r in history)


def test_interactive_location_and_media_messages(redis_url: str, store: Store) -> None:
    wa = "31600000002"

    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        assert (await say(client, wa, "pizza")).status_code == 200
        # the size question is answered with a list reply, the upsell with a button reply
        assert (await deliver(client, list_reply_payload(wa, "large", "large"))).status_code == 200
        assert (await deliver(client, button_reply_payload(wa, "yes", "Yes"))).status_code == 200
        assert (await say(client, wa, "3")).status_code == 200
        # a location where text is expected is re-prompted, not stored as an address
        assert (await deliver(client, location_payload(wa, 52.37, 4.89, name="Dam"))).status_code == 200
        # media outside what the step accepts: a polite re-prompt too
        assert (await deliver(client, media_payload(wa, kind="sticker"))).status_code == 200
        # an unsupported message is not an answer: no re-prompt, nothing recorded
        assert (await deliver(client, message_payload(wa, "unsupported", None))).status_code == 200
        assert (await say(client, wa, "12 Main Street")).status_code == 200
        await rt.drain()
        texts = channel.texts(wa)
        asked = [t for t in texts if t and t.endswith("Where should we deliver?")]
        assert len(asked) == 3  # asked once, re-asked after each of the two unusable messages
        assert asked[1].startswith("Please answer with a text message.")

    run_app(redis_url, scenario)
    state = store.load(wa)
    assert state["status"] == "completed" and state["slots"]["size"] == "large" and state["slots"]["drink"] is True
    errors = [r["error"] for r in store.history(wa) if r["error"]]
    assert len(errors) == 2 and all(e.startswith("invalid_input:") for e in errors)


def test_sticker_outside_a_flow_gets_a_polite_reply_and_unsupported_gets_none(redis_url: str, store: Store) -> None:
    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        r = await deliver(client, message_payload("31600000003", "unsupported", None))
        assert r.status_code == 200 and r.json()["ignored"] == 1
        assert channel.texts("31600000003") == []  # not a message flowkit could answer
        r = await deliver(client, media_payload("31600000003", kind="sticker"))
        assert r.status_code == 200
        assert "pizza" in (channel.texts("31600000003")[0] or "")  # says what it can do

    run_app(redis_url, scenario)
    assert store.load("31600000003") is None


def test_several_messages_and_statuses_in_one_delivery(redis_url: str, store: Store) -> None:
    metrics = Metrics()

    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        payload = combine(text_payload("31600000010", "pizza", message_id="wamid.A1"),
                          text_payload("31600000011", "refund", message_id="wamid.B1"),
                          status_payload("wamid.out1", "31600000010", "delivered"),
                          status_payload("wamid.out2", "31600000011", "read"))
        r = await deliver(client, payload)
        assert r.status_code == 200 and r.json() == {"ok": True, "messages": 2, "applied": 2, "ignored": 0,
                                                "skipped": 0, "statuses": 2}
        r = await deliver(client, payload)  # WhatsApp redelivers the same batch
        assert r.json()["applied"] == 0
        assert len(channel.texts("31600000010")) == 2  # welcome + size question, once

    run_app(redis_url, scenario, metrics=metrics)
    assert store.load("31600000010")["version"] == 1 and store.load("31600000011")["version"] == 1
    text = metrics.render().decode()
    assert 'flowkit_delivery_status_total{status="delivered"} 2.0' in text  # counted on both deliveries
    assert 'flowkit_messages_total{outcome="duplicate"} 2.0' in text


# ---------------------------------------------------------------- bad input: 4xx, logged, nothing stored


def test_subscription_handshake(redis_url: str) -> None:
    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        ok = await client.get("/webhook", params={"hub.mode": "subscribe", "hub.verify_token": TOKEN,
                                                  "hub.challenge": "1158201444"})
        assert ok.status_code == 200 and ok.text == "1158201444"
        bad = await client.get("/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                   "hub.challenge": "1"})
        assert bad.status_code == 403

    run_app(redis_url, scenario)


def test_rejected_requests_store_nothing(redis_url: str, redis_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    good = text_payload("31600000020", "pizza")

    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        body, headers = signed(good)
        unsigned = {"content-type": "application/json"}
        assert (await client.post("/webhook", content=body, headers=unsigned)).status_code == 401
        wrong = dict(headers, **{"x-hub-signature-256": signed(good, "other-secret")[1]["x-hub-signature-256"]})
        assert (await client.post("/webhook", content=body, headers=wrong)).status_code == 403
        tampered = body.replace(b"pizza", b"pizzb")
        assert (await client.post("/webhook", content=tampered, headers=headers)).status_code == 403
        garbage = b"{not json"
        r = await client.post("/webhook", content=garbage, headers=signed_headers(garbage))
        assert r.status_code == 400 and r.json()["error"]
        shape = json.dumps({"object": "whatsapp_business_account", "entry": "nope"}).encode()
        assert (await client.post("/webhook", content=shape, headers=signed_headers(shape))).status_code == 400
        big = json.dumps({"pad": "x" * 5000}).encode()
        assert (await client.post("/webhook", content=big, headers=signed_headers(big))).status_code == 413
        assert channel.sent == []

    with caplog.at_level("WARNING", logger="flowkit.web"):
        run_app(redis_url, scenario, max_body=4096)
    assert session_keys(redis_client) == []
    reasons = [getattr(r, "reason", None) for r in caplog.records if r.getMessage() == "webhook rejected"]
    assert len(reasons) == 6 and "too_large" in reasons


def signed_headers(body: bytes) -> dict[str, str]:
    from flowkit.channels.whatsapp import sign

    return {"content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)}


def test_app_refuses_to_start_without_a_secret(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    monkeypatch.delenv("WHATSAPP_APP_SECRET", raising=False)
    with pytest.raises(ValueError, match="WHATSAPP_APP_SECRET"):
        create_app(object())


# ---------------------------------------------------------------- Redis down: 503, nothing half-written


def test_redis_down_answers_503_and_redelivery_completes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r", appendonly=True).start()
    port = server.port
    wa = "31600000030"
    try:
        async def first(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
            assert (await say(client, wa, "pizza", "wamid.D1")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            server.stop()
            r = await say(client, wa, "large", "wamid.D2")
            assert r.status_code == 503 and r.headers["retry-after"]
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200

        run_app(server.url, first)
        server = RedisServer(tmp_path / "r", port=port, appendonly=True).start()

        async def second(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
            assert (await say(client, wa, "large", "wamid.D2")).status_code == 200  # the redelivery
            assert (await say(client, wa, "large", "wamid.D2")).status_code == 200  # and a duplicate of it

        run_app(server.url, second)
        store = Store(connect(server.url))
        history = store.history(wa)
        assert [(r["version"], r["message_id"]) for r in history] == [(1, "wamid.D1"), (2, "wamid.D2")]
        assert store.load(wa)["step"] == "upsell"
        store.client.close()
    finally:
        server.stop()


def test_metrics_endpoint(redis_url: str) -> None:
    metrics = Metrics()

    async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime, channel: AsyncRecordingChannel) -> None:
        rt.metrics = metrics
        await say(client, "31600000040", "pizza")
        await client.post("/webhook", content=b"{}", headers={"content-type": "application/json"})
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert 'flowkit_messages_total{outcome="applied"} 1.0' in r.text
        assert 'flowkit_webhook_rejected_total{reason="missing_signature"} 1.0' in r.text
        assert "flowkit_handle_seconds_bucket" in r.text

    run_app(redis_url, scenario, metrics=metrics)


def test_the_in_process_scheduler_fires_due_timeouts(redis_url: str, store: Store) -> None:
    from tests.runtime.conftest import Clock

    clock = Clock()

    async def main() -> None:
        astore = AsyncStore(connect_async(redis_url))
        channel = AsyncRecordingChannel()
        rt = AsyncRuntime(astore, EXAMPLE_FLOWS, channel=channel, services=EXAMPLE_SERVICES, clock=clock)
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET, scheduler_interval=0.02)
        for i, text in enumerate(["pizza", "small", "1"]):  # waiting at ask_address (10 minute timeout)
            await rt.handle("31600000050", UserMessage(text=text, message_id=f"m{i}"))
        clock.advance(11 * 60)
        async with app.router.lifespan_context(app):
            await until(lambda: channel.texts("31600000050")[-1].startswith("We didn't hear back"),
                        "the scheduler to fire the timeout")
        await astore.client.aclose()

    asyncio.run(main())
    assert store.load("31600000050")["status"] == "cancelled"
    assert store.history("31600000050")[-1]["event"] == "timeout"
