"""Each number's throughput is its own: a 429 Graph gives the support number pauses that
number only, the sales number keeps answering (runtime/sender.py Pacers). Real web app, real
async WhatsApp sender over HTTP to the Graph API imitation, real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from flowkit.channels.whatsapp import AsyncWhatsAppSender
from flowkit.channels.whatsapp.numbers import Numbers
from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel
from flowkit.store import AsyncStore, connect_async
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, TOKEN, deliver

SALES, SUPPORT = "111000111000", "222000222000"


async def until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_rate_limit_on_one_number_does_not_hold_the_other_numbers_replies(redis_url: str) -> None:
    from flowkit.web import create_app

    async def main(graph: FakeGraphAPI) -> None:
        store = AsyncStore(connect_async(redis_url))
        numbers = Numbers.from_ids([SALES, SUPPORT])
        sender = AsyncWhatsAppSender(config=graph.config(SALES), max_attempts=1)
        rt = AsyncRuntime(store, EXAMPLE_FLOWS, channel=AsyncWhatsAppChannel(sender, numbers=numbers),
                          services=EXAMPLE_SERVICES, background=True)
        assert rt.outbox is not None
        rt.drain_timeout = 0.5  # the paused reply stays in the outbox for recovery
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET, phone_number_ids=[SALES, SUPPORT])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa") as client:
            try:
                graph.fail_next(1, 429, retry_after=30, code=130429)  # the support number's next send
                r = await deliver(client, text_payload("31699000001", "support", message_id="wamid.P1",
                                                       phone_number_id=SUPPORT))
                assert r.status_code == 200 and r.json()["applied"] == 1
                await until(lambda: rt.outbox is not None and rt.outbox.stats["retries"] >= 1, "the 429")
                r = await deliver(client, text_payload("31699000002", "pizza", message_id="wamid.P2",
                                                       phone_number_id=SALES))
                assert r.status_code == 200 and r.json()["applied"] == 1
                # the sales replies leave while the support number waits out its 30 s
                await until(lambda: len(graph.to("31699000002")) == 2, "the sales replies")
                assert {m.phone_number_id for m in graph.to("31699000002")} == {SALES}
                assert graph.to("31699000001") == []
                assert rt.outbox.pacer_for("31699000001@" + SUPPORT) is not rt.outbox.pacer
            finally:
                await rt.drain()
                await sender.aclose()
                await store.client.aclose()

    with FakeGraphAPI(phone_number_ids=[SALES, SUPPORT]) as graph:
        asyncio.run(main(graph))
