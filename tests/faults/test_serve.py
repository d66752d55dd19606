"""`flowkit serve` as a real subprocess: unrouted redeliveries and a Redis that is not there
yet at start. Clients that send their request slowly (slowloris): test_slow_clients.py."""

from __future__ import annotations

from pathlib import Path

import httpx

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.runtime import FlowRegistry
from flowkit.store import RedisServer, Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.faults.util import status, stop, wait_for
from tests.runtime.webutil import signed, spawn_serve, start_serve


def _post(port: int, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=30)


def test_a_redelivered_unrouted_message_is_answered_once(redis_url: str, store: Store, tmp_path: Path) -> None:
    port = free_port()
    wa = "31600000080"
    with FakeGraphAPI() as graph:
        proc = start_serve(redis_url, graph, port, tmp_path / "serve.log")
        try:
            body, headers = signed(text_payload(wa, "good morning", message_id="wamid.U1"))
            for _ in range(3):  # WhatsApp redelivers when it did not see our 200 in time
                assert _post(port, body, headers).status_code == 200
            wait_for(lambda: graph.to(wa), "the unrouted reply")
            body, headers = signed(text_payload(wa, "still there?", message_id="wamid.U2"))
            assert _post(port, body, headers).status_code == 200
            wait_for(lambda: len(graph.to(wa)) >= 2, "the reply to a new message")
            # a last delivery whose answer (none) is known only after it is handled
            body, headers = signed(text_payload(wa, "good morning", message_id="wamid.U1"))
            assert _post(port, body, headers).status_code == 200
        finally:
            stop(proc)
    texts = [m.payload["text"]["body"] for m in graph.to(wa)]
    assert len(texts) == 2 and all(t.startswith("Hi! I can help with") for t in texts), texts
    assert store.load(wa) is None  # nobody got a session for saying hello


def test_serve_starts_before_redis_and_becomes_ready_when_it_comes(tmp_path: Path) -> None:
    redis_port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    port = free_port()
    log = tmp_path / "serve.log"
    wa = "31600000081"
    server = None
    with FakeGraphAPI() as graph:
        proc = spawn_serve(url, graph, port, log)
        try:
            wait_for(lambda: status(port, "/healthz") == 200 or proc.poll() is not None, "serve to listen")
            assert proc.poll() is None, log.read_text()
            assert status(port, "/readyz") == 503
            body, headers = signed(text_payload(wa, "pizza", message_id="wamid.S1"))
            r = _post(port, body, headers)
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert "Traceback" not in log.read_text()
            assert "unreachable" in log.read_text()  # it says why it is not ready
            server = RedisServer(tmp_path / "redis", port=redis_port, appendonly=False).start()
            wait_for(lambda: status(port, "/readyz") == 200, "serve to become ready", timeout=30)
            # ready only once its start-up published the flows (through the async client)
            assert "order_pizza" in FlowRegistry(client=server.client()).names()
            assert _post(port, body, headers).status_code == 200  # the redelivery
            wait_for(lambda: graph.to(wa), "the first question of the pizza flow")
            state = Store(server.client()).load(wa)
            assert state is not None and state["flow"] == "order_pizza"
        finally:
            stop(proc)
            if server is not None:
                server.stop()
    assert "Traceback" not in log.read_text()
