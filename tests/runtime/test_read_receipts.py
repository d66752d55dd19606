"""Read receipts and the typing indicator: the runtime marks each handled message read,
with "typing…" shown while a service call runs (sync and async runtimes, real Redis, the
Graph imitation over HTTP)."""

from __future__ import annotations

import asyncio
import textwrap

from flowkit.channels.whatsapp import AsyncWhatsAppSender, WhatsAppSender
from flowkit.engine import UserMessage
from flowkit.flow import parse_flow
from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel, Runtime, ServiceRegistry, WhatsAppChannel
from flowkit.store import AsyncStore, Store, connect_async
from flowkit.testing.fake_graph import FakeGraphAPI

FLOW = parse_flow(textwrap.dedent("""\
    flow: lookup
    start: ask_ref
    triggers: [lookup]
    slots:
      ref: {type: text, max_length: 10}
      found: {type: any}
    steps:
      ask_ref:
        ask: Which order?
        input: text
        save: ref
        next: find
      find:
        call: orders.find
        args: {ref: ref}
        save: found
        next: done
      done:
        end: completed
        say: Found it.
    """))


def _services(graph: FakeGraphAPI, seen_while_running: list[list[str]]) -> ServiceRegistry:
    reg = ServiceRegistry()

    @reg.register("orders.find")
    def find(ref: str) -> dict[str, str]:
        seen_while_running.append(graph.typing_indicators)  # what the user sees while we work
        return {"ref": ref}

    return reg


def test_messages_are_marked_read_with_typing_while_a_call_runs(store: Store) -> None:
    with FakeGraphAPI() as graph, WhatsAppSender(config=graph.config()) as sender:
        during: list[list[str]] = []
        rt = Runtime(store, [FLOW], channel=WhatsAppChannel(sender, read_receipts=True), services=_services(graph, during))
        rt.handle("u1", UserMessage(text="lookup", message_id="wamid.A"))
        rt.handle("u1", UserMessage(text="R-1", message_id="wamid.B"))
        assert graph.read_receipts == ["wamid.A", "wamid.B"]
        assert graph.typing_indicators == ["wamid.B"] and during == [["wamid.B"]]
        assert [m.text for m in graph.to("u1")] == ["Which order?", "Found it."]


def test_read_receipts_are_off_unless_configured(store: Store) -> None:
    with FakeGraphAPI() as graph, WhatsAppSender(config=graph.config()) as sender:
        rt = Runtime(store, [FLOW], channel=WhatsAppChannel(sender), services=_services(graph, []))
        rt.handle("u2", UserMessage(text="lookup", message_id="wamid.C"))
        assert graph.read_receipts == [] and len(graph.sent) == 1


def test_a_failing_read_receipt_costs_no_reply(store: Store) -> None:
    with FakeGraphAPI() as graph, WhatsAppSender(config=graph.config(), max_attempts=1) as sender:
        rt = Runtime(store, [FLOW], channel=WhatsAppChannel(sender, read_receipts=True), services=_services(graph, []))
        rt.handle("u3", UserMessage(text="lookup", message_id="wamid.D"))
        graph.fail_next(1, 400, code=100, message="(#100) Invalid parameter")  # the receipt after the reply
        rt.handle("u3", UserMessage(text="R-2", message_id="wamid.E"))
        assert [m.text for m in graph.to("u3")] == ["Which order?", "Found it."]
        assert not store.pending_effects("u3")


def test_async_runtime_marks_read_with_typing(redis_url: str) -> None:
    with FakeGraphAPI() as graph:
        during: list[list[str]] = []

        async def main() -> None:
            sender = AsyncWhatsAppSender(config=graph.config())
            astore = AsyncStore(connect_async(redis_url))
            rt = AsyncRuntime(astore, [FLOW], channel=AsyncWhatsAppChannel(sender, read_receipts=True),
                              services=_services(graph, during))
            await rt.handle("u4", UserMessage(text="lookup", message_id="wamid.F"))
            await rt.handle("u4", UserMessage(text="R-3", message_id="wamid.G"))
            await rt.drain()
            await sender.aclose()
            await astore.client.aclose()

        asyncio.run(main())
        assert graph.read_receipts == ["wamid.F", "wamid.G"] and graph.typing_indicators == ["wamid.G"]
        assert during == [["wamid.G"]]
