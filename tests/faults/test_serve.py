"""`flowkit serve` as a real subprocess: unrouted redeliveries, a Redis that is not there
yet at start, and clients that send their request slowly (slowloris)."""

from __future__ import annotations

import socket
import time
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
    return httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=5)


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


def test_a_slowloris_client_neither_blocks_others_nor_stays(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    with FakeGraphAPI() as graph:
        proc = start_serve(redis_url, graph, port, tmp_path / "serve.log", "--request-timeout", "1")
        slow = []
        try:
            for _ in range(20):  # half-sent requests: headers never finish
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: ")
                slow.append(s)
            t0 = time.monotonic()
            for _ in range(5):  # others are served meanwhile
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            assert time.monotonic() - t0 < 2
            # trickling a byte now and then does not buy a slow client more time
            deadline = time.monotonic() + 10
            closed = set()
            while len(closed) < len(slow) and time.monotonic() < deadline:
                for i, s in enumerate(slow):
                    if i in closed:
                        continue
                    try:
                        s.sendall(b"a")
                        s.settimeout(0.01)
                        if s.recv(1) == b"":
                            closed.add(i)
                    except TimeoutError:
                        pass
                    except OSError:  # reset by the server: closed too
                        closed.add(i)
                time.sleep(0.05)
            assert len(closed) == len(slow), f"{len(slow) - len(closed)} slow connections still open after 10 s"
            assert time.monotonic() - t0 < 5  # closed at about the 1 s deadline, not at the loop's end
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        finally:
            for s in slow:
                s.close()
            stop(proc)
