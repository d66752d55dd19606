"""Signed WhatsApp deliveries against the real web app (httpx's ASGI transport, no mocks)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from flowkit.channels.whatsapp import sign
from flowkit.channels.whatsapp.payloads import text_payload

ROOT = Path(__file__).resolve().parents[2]
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


def spawn_serve(redis_url: str, graph: Any, port: int, log: Path, *args: str, flows: str = "examples/flows",
                services: str = "examples.services:services", env: dict[str, str] | None = None,
                ) -> subprocess.Popen[bytes]:
    """`flowkit serve` in a subprocess (a FakeGraphAPI as its Graph API), not waited for;
    output appended to ``log``."""
    full_env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url, WHATSAPP_APP_SECRET=SECRET,
                    WHATSAPP_VERIFY_TOKEN=TOKEN, **graph.env(), **(env or {}))
    flowkit = Path(sys.executable).with_name("flowkit")
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(flowkit), "serve", flows, "--services", services, "--port", str(port), *args],
                                cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)


def start_serve(redis_url: str, graph: Any, port: int, log: Path, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
    """:func:`spawn_serve` (``kw``: its flows, services, env), ready when /readyz answers 200;
    errors quote ``log``."""
    proc = spawn_serve(redis_url, graph, port, log, *args, **kw)
    # a condition, not a time: on a 2-core machine running other suites, importing the app alone
    # has taken over 30 s; 180 s only bounds a server that never comes up. An attempt waits for
    # its answer: a loaded server can take over a second to answer /readyz, and a probe that
    # gave up after 1 s could miss a ready server on every attempt
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"flowkit serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"flowkit serve did not become ready:\n{log.read_text()[-3000:]}")
