"""The async runtime's paths use the registry's async methods: a trigger lookup whose refresh is
due, a business-initiated start of a flow only Redis knows, and a registration from the event
loop never touch the registry's blocking client (here a real client to a port nobody listens
on, so any use of it fails the test with a ConnectionError)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from flowkit.engine import UserMessage
from flowkit.errors import UnknownFlowError, VersionClash
from flowkit.flow import flow_from_dict
from flowkit.runtime import AsyncRuntime, FlowRegistry
from flowkit.runtime.starts import StartRequest, start_async
from flowkit.store import AsyncStore
from tests.engine.helpers import FLOWS, T0
from tests.runtime.test_flow_resolution import publish, unreachable_client


def detached_registry() -> FlowRegistry:
    """A registry that knows no flow, refreshes on every lookup, and whose sync client fails."""
    registry = FlowRegistry(refresh_every=0.0)
    registry.client = unreachable_client()
    return registry


def test_a_trigger_with_a_refresh_due_reads_flows_through_the_async_store(
        redis_client: Any, async_store_factory: Callable[..., AsyncStore]) -> None:
    publish(redis_client, "order_pizza")
    registry = detached_registry()

    async def main() -> list[Any]:
        store = async_store_factory()
        rt = AsyncRuntime(store, registry, clock=lambda: T0)
        try:
            first = await rt.handle("31600000101", UserMessage(text="pizza please", message_id="wamid.a1"))
            newer = flow_from_dict({**FLOWS["order_pizza"].to_dict(), "version": "77"})
            FlowRegistry(client=redis_client).register(newer)  # another process deploys a new version
            second = await rt.handle("31600000102", UserMessage(text="pizza", message_id="wamid.a2"))
            return [first, second]
        finally:
            await store.client.aclose()

    first, second = asyncio.run(main())
    assert (first.status, first.flow, first.flow_version) == ("applied", "order_pizza", FLOWS["order_pizza"].version_id)
    assert (second.status, second.flow_version) == ("applied", "77")  # refreshed on the loop, async


def test_an_async_start_of_a_flow_only_redis_knows(redis_client: Any,
                                                    async_store_factory: Callable[..., AsyncStore]) -> None:
    publish(redis_client, "feedback")
    registry = detached_registry()

    async def main() -> tuple[Any, str]:
        store = async_store_factory()
        rt = AsyncRuntime(store, registry, clock=lambda: T0)
        try:
            started = await start_async(rt, StartRequest("31600000103", "feedback", key="fb-1"))
            with pytest.raises(UnknownFlowError) as unknown:
                await start_async(rt, StartRequest("31600000104", "no_such_flow"))
            return started, str(unknown.value)
        finally:
            await store.client.aclose()

    started, unknown = asyncio.run(main())
    assert started.status == "started" and started.version == 1
    assert "no flow named 'no_such_flow'" in unknown and "feedback" in unknown  # names what there is


def test_register_async_writes_what_register_reads_and_refuses_a_changed_version(
        redis_client: Any, async_store_factory: Callable[..., AsyncStore]) -> None:
    registry = detached_registry()
    flow = FLOWS["refund"]
    changed = flow_from_dict({**flow.to_dict(), "help": "changed text, same version label"})

    async def main() -> tuple[bool, bool, str]:
        store = async_store_factory()
        try:
            new = await registry.register_async(flow, store.client)
            again = await registry.register_async(flow, store.client)
            with pytest.raises(VersionClash) as clash:
                await FlowRegistry().register_async(changed, store.client)  # checked against Redis, not memory
            return new, again, str(clash.value)
        finally:
            await store.client.aclose()

    new, again, clash = asyncio.run(main())
    assert (new, again) == (True, False)
    assert "already registered with different content" in clash and "bump `version:`" in clash
    elsewhere = FlowRegistry(client=redis_client)  # another process, blocking client
    assert elsewhere.latest("refund").content_hash == flow.content_hash
    assert elsewhere.names() == ["refund"]
