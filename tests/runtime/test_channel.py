"""Replies through the real WhatsApp sender to a local Graph API over HTTP: failures stay in the outbox."""

from __future__ import annotations

import asyncio

from flowkit.channels.whatsapp import AsyncWhatsAppSender, WhatsAppSender
from flowkit.engine import UserMessage
from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel, Runtime, WhatsAppChannel
from flowkit.store import AsyncStore, Store, connect_async
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock


def test_graph_errors_leave_replies_in_the_outbox_until_recovery(store: Store, clock: Clock) -> None:
    with FakeGraphAPI() as graph:
        sender = WhatsAppSender(config=graph.config(), max_attempts=2, backoff=0.01)
        rt = Runtime(store, EXAMPLE_FLOWS, channel=WhatsAppChannel(sender), services=EXAMPLE_SERVICES, clock=clock)
        rt.handle("u1", UserMessage(text="pizza", message_id="m1"))
        assert [m.payload["type"] for m in graph.to("u1")] == ["text", "interactive"]  # size as buttons
        graph.fail_next(2, 500)  # both attempts of the next send fail
        rt.handle("u1", UserMessage(text="small", message_id="m2"))
        assert len(graph.to("u1")) == 2 and store.pending_effects("u1")
        assert rt.stats["send_failures"] == 1
        assert rt.recover(outbox_age_ms=0).outbox_redelivered == 1
        assert graph.to("u1")[-1].payload["text"]["body"] == "How many pizzas? (1-20)"
        assert not store.pending_effects("u1")
        sender.close()


def test_rate_limits_are_retried_by_the_async_sender(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        async def main() -> None:
            sender = AsyncWhatsAppSender(config=graph.config(), backoff=0.01)
            astore = AsyncStore(connect_async(redis_url))
            rt = AsyncRuntime(astore, EXAMPLE_FLOWS, channel=AsyncWhatsAppChannel(sender), services=EXAMPLE_SERVICES)
            graph.fail_next(1, 429, retry_after=0.05)
            await rt.handle("u1", UserMessage(text="refund", message_id="m1"))
            await rt.drain()  # the outbox acknowledgement is deferred to the next round trip
            await sender.aclose()
            await astore.client.aclose()

        asyncio.run(main())
        assert [m.payload["text"]["body"] for m in graph.to("u1")] == ["Which order should we refund? (order reference)"]
        assert graph.requests >= 2 and not store.pending_effects("u1")
