"""The webhook server when Redis is hung, down, out of memory or read-only (real redis-server processes).

- ``/metrics`` never waits on Redis: its Redis-backed series are read in a thread with a
  deadline, and without them the scrape still shows this process's own series plus
  ``flowkit_redis_up 0``;
- a Redis that refuses writes (OOM under ``noeviction``, a read-only replica) gets the
  webhook a 503 with Retry-After, not a 500, and ``/readyz`` says not ready;
- once Redis takes writes again the redelivery applies the message once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.exceptions import OutOfMemoryError, ResponseError

from flowkit.errors import StoreError
from flowkit.readiness import is_unavailable
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime
from flowkit.store import AsyncStore, RedisServer, Store, connect, connect_async
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from flowkit.web import create_app
from tests.faults.util import own_redis_server, wait_for
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, TOKEN, say, start_serve
from tests.waiting import stop


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: it gets stopped, paused and starved."""
    with own_redis_server(tmp_path / "redis", appendonly=False) as server:
        yield server


def _scrape(port: int) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    return r.status_code, r.text, time.monotonic() - t0


def test_metrics_with_redis_hung_answer_at_once_with_local_series(own_redis: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    with FakeGraphAPI() as graph:
        proc = start_serve(own_redis.url, graph, port, tmp_path / "serve.log")
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=b"{}", timeout=5)
            assert r.status_code == 401  # a local series to look for: webhook_rejected
            code, text, _ = _scrape(port)
            assert code == 200 and "flowkit_redis_up 1.0" in text and "flowkit_active_sessions" in text
            assert own_redis.pid is not None
            os.kill(own_redis.pid, signal.SIGSTOP)  # hung: connections open, nothing answers
            got: list[tuple[int, str, float]] = []
            scrape = threading.Thread(target=lambda: got.append(_scrape(port)))
            scrape.start()
            t0 = time.monotonic()
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            healthz_s = time.monotonic() - t0
            scrape.join(timeout=15)
            code, text, took = got[0]
            assert code == 200, text
            # time is what is tested here: the scrape's Redis read has a 1 s deadline and runs off the
            # loop; a scrape on the loop would hold /healthz until Redis answers (it never does here)
            assert took < 3.0, f"/metrics took {took:.1f} s with Redis hung"  # the deadline is 1 s
            assert healthz_s < 1.0, f"/healthz waited {healthz_s:.1f} s behind a scrape"
            assert "flowkit_redis_up 0.0" in text
            assert 'flowkit_webhook_rejected_total{reason="missing_signature"} 1.0' in text
            assert "flowkit_active_sessions" not in text
            os.kill(own_redis.pid, signal.SIGCONT)
            wait_for(lambda: "flowkit_redis_up 1.0" in _scrape(port)[1], "/metrics to see Redis again")
        finally:
            stop(proc)


def test_metrics_with_redis_down_are_not_a_500(own_redis: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    with FakeGraphAPI() as graph:
        proc = start_serve(own_redis.url, graph, port, tmp_path / "serve.log")
        try:
            own_redis.stop()
            code, text, took = _scrape(port)
            assert code == 200, text
            assert "flowkit_redis_up 0.0" in text and "flowkit_handle_seconds_bucket" in text
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 503
        finally:
            stop(proc)


# ---------------------------------------------------------------- Redis refusing writes


def _fill(client: Any) -> int:
    """SET big values until Redis answers OOM; returns how many went in."""
    blob = b"x" * 16384
    for n in range(10_000):
        try:
            client.set(f"fill:{n}", blob)
        except OutOfMemoryError:
            return n
    raise AssertionError("Redis never ran out of memory")


def _starve(client: Any) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1mb")
    _fill(client)


def _unstarve(client: Any) -> None:
    for key in client.scan_iter("fill:*"):
        client.delete(key)  # DEL is allowed at OOM
    client.config_set("maxmemory", "0")


def _readonly(client: Any) -> None:
    client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a master that does not exist


def _writable(client: Any) -> None:
    client.execute_command("REPLICAOF", "NO", "ONE")


@pytest.mark.parametrize(("refuse", "allow", "code"), [(_starve, _unstarve, "OOM"), (_readonly, _writable, "READONLY")],
                         ids=["oom", "readonly"])
def test_redis_refusing_writes_gets_503_and_not_ready(own_redis: RedisServer, refuse: Any, allow: Any,
                                                      code: str) -> None:
    wa = "31600000070"
    admin = connect(own_redis.url)

    async def main() -> None:
        store = AsyncStore(connect_async(own_redis.url))
        rt = AsyncRuntime(store, EXAMPLE_FLOWS, channel=AsyncRecordingChannel(), services=EXAMPLE_SERVICES)
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa") as client:
            assert (await say(client, wa, "pizza", "wamid.R1")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            await asyncio.to_thread(refuse, admin)
            r = await say(client, wa, "large", "wamid.R2")
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and code in ready.json()["redis"], ready.text
            await asyncio.to_thread(allow, admin)
            assert (await client.get("/readyz")).status_code == 200
            assert (await say(client, wa, "large", "wamid.R2")).status_code == 200  # WhatsApp's redelivery
            await rt.drain()
        await store.client.aclose()

    try:
        asyncio.run(main())
        history = Store(admin).history(wa)
        assert [r["message_id"] for r in history] == ["wamid.R1", "wamid.R2"]
    finally:
        admin.close()


def test_which_errors_count_as_unavailable() -> None:
    # the replies a Redis sends when it is up but refuses writes, as the store wraps them
    for reply in ("OOM command not allowed when used memory > 'maxmemory'.",
                  "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
                  "READONLY You can't write against a read only replica."):
        try:
            try:
                raise ResponseError(reply)
            except ResponseError as exc:
                raise StoreError(f"Redis refused a command: {exc}") from exc
        except StoreError as wrapped:
            assert is_unavailable(wrapped), reply
    assert not is_unavailable(StoreError("Redis refused a command: ERR wrong number of arguments"))
    assert not is_unavailable(ValueError("OOM"))  # only Redis' own errors speak for Redis
