"""The /agent endpoints in-process (the app over httpx's ASGI transport, real Redis): off
without a token, and what the webhook app refuses to start with."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from flowkit.errors import AgentWebhookError
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime
from flowkit.store import AsyncStore, connect_async
from flowkit.web import create_app
from tests.runtime.conftest import EXAMPLE_FLOWS
from tests.runtime.webutil import SECRET, TOKEN


def statuses(redis_url: str, requests: list[tuple[str, str]]) -> list[int]:
    async def main() -> list[int]:
        store = AsyncStore(connect_async(redis_url))
        rt = AsyncRuntime(store, EXAMPLE_FLOWS, channel=AsyncRecordingChannel())
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa") as client:
                return [(await client.request(m, p, json={}, headers={"Authorization": "Bearer x"})).status_code
                        for m, p in requests]
        finally:
            await store.client.aclose()

    return asyncio.run(main())


REQUESTS = [("GET", "/agent/sessions"), ("POST", "/agent/sessions/316/reply"), ("POST", "/agent/sessions/316/release"),
            ("POST", "/agent/sessions/316/start")]


def test_without_a_token_the_agent_endpoints_do_not_exist(redis_client: Any, redis_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWKIT_AGENT_TOKEN", raising=False)
    assert statuses(redis_url, REQUESTS) == [404, 404, 404, 404]
    monkeypatch.setenv("FLOWKIT_AGENT_TOKEN", "x")
    assert statuses(redis_url, REQUESTS) == [200, 400, 404, 400]  # reply: no text; release: no session; start: no flow


def test_an_agent_webhook_without_its_secret_stops_the_app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_AGENT_WEBHOOK", "http://127.0.0.1:9/hook")
    monkeypatch.delenv("FLOWKIT_AGENT_WEBHOOK_SECRET", raising=False)
    with pytest.raises(AgentWebhookError, match="FLOWKIT_AGENT_WEBHOOK_SECRET"):
        statuses(redis_url, [])
