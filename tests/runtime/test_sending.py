"""Replies leave apart from the webhook (runtime/sender.py): through the real async WhatsApp
sender to the Graph API imitation over HTTP, with the real web app and a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from flowkit.channels.whatsapp import AsyncWhatsAppSender, WhatsAppSender
from flowkit.channels.whatsapp.payloads import status_payload
from flowkit.engine import UserMessage
from flowkit.engine.transition import EXPIRED_TEXT
from flowkit.errors import GraphAPIError
from flowkit.metrics import Metrics
from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel, Runtime, WhatsAppChannel
from flowkit.runtime.sender import Pacer, classify
from flowkit.store import AsyncStore, Store, connect_async
from flowkit.testing.fake_graph import FakeGraphAPI
from flowkit.web import create_app
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, ROOT
from tests.runtime.webutil import SECRET, TOKEN, deliver, say
from tests.waiting import DEADLINE

Scenario = Callable[[httpx.AsyncClient, AsyncRuntime], Awaitable[None]]
WELCOME = "Let's get you a pizza."  # the end of order_pizza's first reply


def run(redis_url: str, graph: FakeGraphAPI, scenario: Scenario, *, metrics: Metrics | None = None,
        backoff: float = 0.01, max_wait: float = 30.0) -> None:
    async def main() -> None:
        store = AsyncStore(connect_async(redis_url))
        sender = AsyncWhatsAppSender(config=graph.config(), max_attempts=1)  # the background sender retries
        rt = AsyncRuntime(store, EXAMPLE_FLOWS, channel=AsyncWhatsAppChannel(sender), services=EXAMPLE_SERVICES,
                          background=True)
        assert rt.outbox is not None
        rt.outbox.backoff, rt.outbox.max_wait = backoff, max_wait
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET, metrics=metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa") as client:
            try:
                await scenario(client, rt)
            finally:
                await rt.drain()
                await sender.aclose()
                await store.client.aclose()

    asyncio.run(main())


async def until(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def texts(graph: FakeGraphAPI, wa_id: str) -> list[str | None]:
    return [m.text for m in graph.to(wa_id)]


def test_the_webhook_answers_before_a_slow_graph_api_accepted_the_reply(redis_url: str, store: Store) -> None:
    with FakeGraphAPI(latency=3.0) as graph:  # every send takes 3 s
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            r = await say(client, "31600000001", "pizza")
            assert r.status_code == 200 and r.json()["applied"] == 1
            # answered while the reply is still on its way: Graph has accepted nothing yet
            assert graph.sent == [] and store.pending_effects("31600000001")
            await until(lambda: len(graph.to("31600000001")) == 2, "both replies")
            await rt.drain()
            assert not store.pending_effects("31600000001")

        run(redis_url, graph, scenario)
        assert WELCOME in (texts(graph, "31600000001")[0] or "")


def test_a_reply_graph_refused_is_delivered_later_exactly_once(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            graph.fail_next(3, 503)  # three failures, then Graph heals
            r = await say(client, "31600000002", "pizza")
            assert r.status_code == 200
            await until(lambda: len(graph.to("31600000002")) == 2, "both replies")
            await rt.drain()

        run(redis_url, graph, scenario)
        assert graph.requests == 5  # 3 refused + 2 accepted
        assert len(texts(graph, "31600000002")) == 2 and WELCOME in (texts(graph, "31600000002")[0] or "")
        assert not store.pending_effects("31600000002")


def test_retry_after_pauses_the_number_and_order_per_user_holds(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            graph.fail_next(1, 429, retry_after=0.3, code=130429)
            await say(client, "31600000003", "pizza")
            await say(client, "31600000003", "small")  # its reply must not overtake the welcome
            await until(lambda: len(graph.to("31600000003")) == 3, "three replies")
            await rt.drain()
            assert rt.outbox is not None and rt.outbox.stats["retries"] == 1

        run(redis_url, graph, scenario)
        sent = texts(graph, "31600000003")
        assert WELCOME in (sent[0] or "") and sent[1] == "What size?" and sent[2] == "How many pizzas? (1-20)"
        assert not store.pending_effects("31600000003")


def test_a_permanent_error_is_recorded_on_the_session_and_never_retried(redis_url: str, store: Store) -> None:
    metrics = Metrics()
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            graph.fail_next(1, 400, code=131026)
            await say(client, "31600000004", "pizza")
            await until(lambda: any(h["event"] == "delivery_failed" for h in store.history("31600000004")),
                        "the delivery_failed record")
            await rt.drain()

        run(redis_url, graph, scenario, metrics=metrics)
        assert graph.requests == 1  # not retried, and the entry's later reply is not sent either
        last = store.history("31600000004")[-1]
        assert last["event"] == "delivery_failed" and last["error"] == "whatsapp:131026"
        assert last["from_step"] == last["to_step"] == "ask_size"  # recorded, no step change
        assert not store.pending_effects("31600000004")
        assert 'flowkit_delivery_failures_total{error="whatsapp:131026"} 1.0' in metrics.render().decode()


def test_an_expired_token_is_alerted_and_the_reply_waits_in_the_outbox(redis_url: str, store: Store) -> None:
    metrics = Metrics()
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            graph.fail_next(1, 401, code=190)
            await say(client, "31600000005", "pizza")
            await until(lambda: rt.outbox is not None and rt.outbox.stats["left"] == 1, "the reply given up")

        run(redis_url, graph, scenario, metrics=metrics, max_wait=0.5)  # the 60 s pause is over max_wait
        assert graph.requests == 1
        assert store.pending_effects("31600000005")  # recovery sends it once the token is fixed
        assert all(h["event"] != "delivery_failed" for h in store.history("31600000005"))
        assert 'flowkit_whatsapp_alerts_total{error="whatsapp:190"} 1.0' in metrics.render().decode()


def test_classify_sorts_graph_errors() -> None:
    assert classify(GraphAPIError("x", status=400, code=131047)) == "permanent"
    assert classify(GraphAPIError("x", status=400, code=131026)) == "permanent"
    assert classify(GraphAPIError("x", status=401, code=190)) == "account"
    assert classify(GraphAPIError("x", status=429, code=130429, retryable=True)) == "throttle"
    assert classify(GraphAPIError("x", status=400, code=131056, retryable=True)) == "retry"  # pair limit
    assert classify(GraphAPIError("x", status=503, code=2, retryable=True)) == "retry"
    assert classify(GraphAPIError("x", status=None, retryable=False)) == "unknown"  # cut after sending
    assert classify(GraphAPIError("x", status=None, retryable=True)) == "retry"  # never reached Graph


def test_the_pacer_spaces_sends_and_a_pause_holds_everyone() -> None:
    now = [100.0]
    pacer = Pacer(80, clock=lambda: now[0])
    waits = [pacer.slot() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0125, 0.025, 0.0375])
    now[0] += 1.0
    pacer.pause(8.0)  # Retry-After: 8
    assert pacer.slot() == pytest.approx(8.0)


def test_replies_outside_a_commit_are_sent_in_the_background_too(redis_url: str) -> None:
    with FakeGraphAPI(latency=0.5) as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            r = await say(client, "31600000006", "hello?")  # no trigger: the unrouted help text
            assert r.status_code == 200 and graph.sent == []
            await until(lambda: len(graph.to("31600000006")) == 1, "the help text")

        run(redis_url, graph, scenario)
        assert "I can help with" in (texts(graph, "31600000006")[0] or "")


# ---------------------------------------------------------------- flowkit worker / recover send for real


def _flowkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    flowkit = Path(sys.executable).with_name("flowkit")
    return subprocess.run([str(flowkit), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _env(redis_url: str, graph: FakeGraphAPI | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSAPP_")}
    return env | {"FLOWKIT_REDIS_URL": redis_url} | (graph.env() if graph is not None else {})


def test_a_reply_left_in_the_outbox_is_sent_by_the_worker_exactly_once(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            graph.fail_next(1000, 503)  # Graph is down for longer than the sender waits
            await say(client, "31600000007", "pizza")
            await until(lambda: rt.outbox is not None and rt.outbox.stats["left"] == 1, "the reply given up")

        run(redis_url, graph, scenario, max_wait=0.2)
        assert store.pending_effects("31600000007") and graph.sent == []
        graph.reset()  # Graph heals
        for _ in range(2):  # a second round finds nothing left to send
            done = _flowkit("worker", "examples/flows", "--once", "--outbox-age", "0", "--format", "json",
                            env=_env(redis_url, graph))
            assert done.returncode == 0, done.stderr
        assert len(graph.to("31600000007")) == 2 and WELCOME in (texts(graph, "31600000007")[0] or "")
        assert not store.pending_effects("31600000007")


def test_worker_without_credentials_says_what_to_set_or_no_send(redis_url: str) -> None:
    done = _flowkit("worker", "examples/flows", "--once", env=_env(redis_url, None))
    assert done.returncode == 2
    assert "WHATSAPP_TOKEN is not set" in done.stderr and "--no-send" in done.stderr
    done = _flowkit("recover", "examples/flows", env=_env(redis_url, None))
    assert done.returncode == 2 and "--no-send" in done.stderr


def test_timeouts_fired_with_no_send_wait_in_the_outbox_for_a_sending_worker(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        started = int(time.time() * 1000) - 31 * 60_000  # the pizza flow expires after 30 minutes idle
        sender = WhatsAppSender(config=graph.config())
        rt = Runtime(store, EXAMPLE_FLOWS, channel=WhatsAppChannel(sender), clock=lambda: started)
        rt.handle("31600000008", UserMessage(text="pizza", message_id="m1"))
        assert len(graph.to("31600000008")) == 2
        done = _flowkit("worker", "examples/flows", "--once", "--no-send", "--format", "json",
                        env=_env(redis_url, None))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["timeouts_fired"] == 1
        assert store.load("31600000008")["status"] == "expired" and store.pending_effects("31600000008")
        done = _flowkit("worker", "examples/flows", "--once", "--outbox-age", "0", env=_env(redis_url, graph))
        assert done.returncode == 0, done.stderr
        assert texts(graph, "31600000008")[-1] == EXPIRED_TEXT and len(graph.to("31600000008")) == 3
        assert not store.pending_effects("31600000008")
        sender.close()


# ---------------------------------------------------------------- statuses close the loop


def test_statuses_are_matched_to_the_session_and_a_failure_is_recorded(redis_url: str, store: Store) -> None:
    metrics = Metrics()
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            await say(client, "31600000009", "pizza")
            await until(lambda: len(graph.to("31600000009")) == 2, "both replies")
            await rt.drain()  # the wamid mapping is written once Graph accepted the replies
            welcome, question = graph.to("31600000009")
            for status in ("sent", "delivered", "read"):
                r = await deliver(client, status_payload(welcome.id, "31600000009", status))
                assert r.status_code == 200
            r = await deliver(client, status_payload(question.id, "31600000009", "failed"))  # 131026
            assert r.status_code == 200
            r = await deliver(client, status_payload(question.id, "31600000009", "failed"))  # redelivered
            assert r.status_code == 200
            r = await deliver(client, status_payload("wamid.not-ours", "31600000009", "failed"))
            assert r.status_code == 200
            await rt.drain()

        run(redis_url, graph, scenario, metrics=metrics)
    history = store.history("31600000009")
    failed = [h for h in history if h["event"] == "delivery_failed"]
    assert len(failed) == 1  # the redelivered status is a duplicate
    assert failed[0]["error"] == "whatsapp:131026" and failed[0]["to_step"] == "ask_size"
    statuses = store.delivery_statuses("31600000009")
    assert [(s["status"], s["index"]) for s in statuses] == [("sent", 0), ("delivered", 0), ("read", 0), ("failed", 1),
                                                             ("failed", 1)]
    assert statuses[-1]["error"] == "whatsapp:131026" and statuses[0]["version"] == 1
    assert 'flowkit_delivery_failures_total{error="whatsapp:131026"} 1.0' in metrics.render().decode()
