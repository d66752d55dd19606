"""Flows are resolved by the runtime's drivers, not by the engine (issue 19): the sync driver
reads through the registry, the async one through the async store, so serve's event loop never
touches a sync Redis client to find a flow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis

from flowkit.engine import UserMessage
from flowkit.flow import flow_from_dict
from flowkit.runtime import AsyncRuntime, FlowRegistry, Runtime
from flowkit.runtime.resolve import refresh_async
from flowkit.store import AsyncStore, Store
from flowkit.store.server import free_port
from tests.engine.helpers import FLOWS, T0

TEXTS = ["book", "dental", "2026-12-01", "09:00", "Ana Lima"]


def unreachable_client() -> redis.Redis:
    """A real sync client to a port nobody listens on: any call on it raises ConnectionError."""
    return redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)


def publish(client: Any, *names: str) -> None:
    """Another process deployed these flows (they are in Redis, not in this process's memory)."""
    FlowRegistry([FLOWS[n] for n in names], client=client)


def test_async_runtime_resolves_root_and_sub_flows_through_the_async_store(
        redis_client: Any, async_store_factory: Callable[..., AsyncStore]) -> None:
    publish(redis_client, "book_appointment", "collect_contact")
    registry = FlowRegistry()  # knows nothing yet
    registry.client = unreachable_client()  # were the async path to use a sync client, it would fail here

    async def main() -> list[Any]:
        store = async_store_factory()
        rt = AsyncRuntime(store, registry, default_flow="book_appointment", clock=lambda: T0)
        try:
            outs: list[Any] = [await rt.handle("31600000001", UserMessage(text=t, message_id=f"wamid.{i}")) for i, t in enumerate(TEXTS)]
            outs.append(await store.load("31600000001"))
            return outs
        finally:
            await store.client.aclose()

    *outs, raw = asyncio.run(main())
    assert [o.status for o in outs] == ["applied"] * len(TEXTS) and not any(o.error for o in outs)
    assert raw is not None and raw["step"] == "contact/ask_email"
    assert [(f["flow"], f["flow_version"]) for f in raw["stack"]] == [("collect_contact", FLOWS["collect_contact"].version_id)]
    assert registry.cached("collect_contact", None) is not None  # remembered: the next session reads nothing


def test_sync_runtime_resolves_flows_another_process_deployed(redis_client: Any) -> None:
    publish(redis_client, "book_appointment", "collect_contact")
    rt = Runtime(Store(redis_client), FlowRegistry(client=redis_client), default_flow="book_appointment",
                 clock=lambda: T0)
    outs = [rt.handle("31600000002", UserMessage(text=t, message_id=f"wamid.{i}")) for i, t in enumerate(TEXTS)]
    assert [o.status for o in outs] == ["applied"] * len(TEXTS) and not any(o.error for o in outs)
    state = rt.store.load("31600000002")
    assert state is not None and state["step"] == "contact/ask_email" and state["stack"][0]["flow"] == "collect_contact"


def test_an_unregistered_sub_flow_fails_the_session_visibly_on_both_drivers(
        redis_client: Any, async_store_factory: Callable[..., AsyncStore]) -> None:
    d = FLOWS["book_appointment"].to_dict()
    d["steps"]["contact"]["flow"] = "no_such_flow"
    broken = flow_from_dict({**d, "version": "broken"})
    FlowRegistry([broken], client=redis_client)
    sync_rt = Runtime(Store(redis_client), FlowRegistry([broken]), default_flow="book_appointment", clock=lambda: T0)
    outs = [sync_rt.handle("31600000003", UserMessage(text=t, message_id=f"wamid.{i}")) for i, t in enumerate(TEXTS[:4])]
    assert outs[-1].status == "applied" and outs[-1].error is not None and "no_such_flow" in outs[-1].error

    async def main() -> Any:
        registry = FlowRegistry()
        registry.client = unreachable_client()
        store = async_store_factory()
        rt = AsyncRuntime(store, registry, default_flow="book_appointment", clock=lambda: T0)
        try:
            return [await rt.handle("31600000004", UserMessage(text=t, message_id=f"wamid.{i}")) for i, t in enumerate(TEXTS[:4])]
        finally:
            await store.client.aclose()

    aouts = asyncio.run(main())
    assert aouts[-1].status == "applied" and aouts[-1].error is not None and "no_such_flow" in aouts[-1].error
    assert aouts[-1].record is not None and aouts[-1].record["status"] == "failed"


def test_async_refresh_picks_up_a_new_deploy_through_the_async_store(
        redis_client: Any, async_store_factory: Callable[..., AsyncStore]) -> None:
    publish(redis_client, "book_appointment", "collect_contact")
    registry = FlowRegistry([FLOWS["book_appointment"], FLOWS["collect_contact"]])
    registry.client = unreachable_client()  # serve's refresh must not need it
    newer = flow_from_dict({**FLOWS["collect_contact"].to_dict(), "version": "99"})
    FlowRegistry(client=redis_client).register(newer)  # another process deploys

    async def main() -> None:
        store = async_store_factory()
        try:
            await refresh_async(registry, store)
        finally:
            await store.client.aclose()

    asyncio.run(main())
    latest = registry.cached("collect_contact", None)
    assert latest is not None and latest.version_id == "99"
    assert registry.cached("collect_contact", FLOWS["collect_contact"].version_id) is FLOWS["collect_contact"]
    assert registry.cached("book_appointment", None) is FLOWS["book_appointment"]  # unchanged: not re-read
