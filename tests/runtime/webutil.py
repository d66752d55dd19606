"""Signed WhatsApp deliveries against the real web app (httpx's ASGI transport, no mocks)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx

from flowkit.channels.whatsapp import sign
from flowkit.channels.whatsapp.payloads import text_payload

SECRET = "test-app-secret"
TOKEN = "test-verify-token"
_ids = itertools.count(1)


def signed(payload: Any, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"content-type": "application/json", "x-hub-signature-256": sign(body, secret)}


async def deliver(client: httpx.AsyncClient, payload: Any) -> httpx.Response:
    body, headers = signed(payload)
    return await client.post("/webhook", content=body, headers=headers)


async def say(client: httpx.AsyncClient, wa_id: str, text: str, message_id: str | None = None) -> httpx.Response:
    mid = message_id or f"wamid.T{next(_ids):08d}"
    return await deliver(client, text_payload(wa_id, text, message_id=mid))
