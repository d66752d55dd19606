"""Slow clients against `flowkit serve` (issue #17): the request deadline is on by default.

A client that trickles its headers (a slowloris) is closed at the deadline whatever it
sends meanwhile; everyone else is served, including a client that is slow but completes
its request in time. A server that is itself late (its event loop stalled past the
deadline, as on a saturated machine) still serves requests that arrived meanwhile: the
deadline is the client's, and the loop reads what arrived before it runs due timers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.store import Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from flowkit.webserver import ServerLimits, uvicorn_config
from tests.faults.util import stop, wait_for
from tests.runtime.webutil import signed, start_serve

DEFAULT = ServerLimits().request_timeout
SLOW = 20  # half-sent requests held open at once


def _raw_request(body: bytes, headers: dict[str, str]) -> list[bytes]:
    """A signed webhook POST as the pieces a slow client sends: one header line at a time, then the body."""
    lines = [b"POST /webhook HTTP/1.1\r\n", b"Host: flowkit\r\n", f"Content-Length: {len(body)}\r\n".encode()]
    lines += [f"{k}: {v}\r\n".encode() for k, v in headers.items()]
    return [*lines, b"Connection: close\r\n", b"\r\n", body]


def _status_line(sock: socket.socket) -> bytes:
    got = b""
    while b"\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got.split(b"\r\n", 1)[0]


def _closed(sock: socket.socket) -> bool:
    """Send one more byte, as a slowloris does, and see whether the server has hung up."""
    try:
        sock.sendall(b"a")
        sock.settimeout(0.01)
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset by the server: closed too
        return True


def test_by_default_a_trickling_client_is_closed_and_everyone_else_is_served(
        redis_url: str, store: Store, tmp_path: Path) -> None:
    assert 10 <= DEFAULT <= 30  # on by default, at a value no real client (WhatsApp) comes near
    port = free_port()
    log = tmp_path / "serve.log"
    wa = "31600000090"
    with FakeGraphAPI() as graph:
        proc = start_serve(redis_url, graph, port, log)  # no --request-timeout: the default
        slow: list[tuple[socket.socket, float]] = []
        try:
            for _ in range(SLOW):  # headers that never finish
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: ")
                slow.append((s, time.monotonic()))
            # normal requests are served meanwhile
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
            body, headers = signed(text_payload(wa, "pizza", message_id="wamid.SLOW1"))
            r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            # slow but complete: a few seconds for its headers, well inside the deadline
            body, headers = signed(text_payload(wa, "medium", message_id="wamid.SLOW2"))
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                for piece in _raw_request(body, headers):
                    s.sendall(piece)
                    time.sleep(0.3)  # the slowness is what is tested: ~3 s in all, against a 10 s deadline
                assert _status_line(s) == b"HTTP/1.1 200 OK"
            # trickling a byte now and then does not buy the slow clients more time
            closed_after: dict[int, float] = {}

            def all_closed() -> bool:
                for i, (s, opened) in enumerate(slow):
                    if i not in closed_after and _closed(s):
                        closed_after[i] = time.monotonic() - opened
                return len(closed_after) == len(slow)

            wait_for(all_closed, f"{SLOW} trickling clients to be closed", every=0.05)
            # not before the deadline: the server closed them for being slow, not for something else
            assert min(closed_after.values()) >= DEFAULT - 0.5, sorted(closed_after.values())
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        finally:
            for s, _ in slow:
                s.close()
            stop(proc)
    text = log.read_text()
    assert text.count(f"did not arrive within {DEFAULT:.1f} s") == SLOW, text[-3000:]
    assert "Traceback" not in text
    state = store.load(wa)
    assert state is not None and state["step"] == "ask_qty", state  # both complete requests were applied


@contextmanager
def _stallable_server(loop: str, request_timeout: float) -> Iterator[tuple[int, Any, threading.Event, threading.Event]]:
    """Real uvicorn with flowkit's protocol in a thread; GET /stall blocks its event loop
    until the test sets ``release`` (``stalled`` is set once it is blocked)."""
    stalled, release = threading.Event(), threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/stall":
            stalled.set()
            release.wait(60)  # blocks the loop on purpose: a stalled server, as on a saturated machine
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, ServerLimits(request_timeout=request_timeout),
                                           loop=loop, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "the in-process server to listen")
        yield port, server, stalled, release
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_stalled_server_still_serves_requests_that_arrived_before_the_deadline(loop: str) -> None:
    timeout = 1.0
    with _stallable_server(loop, timeout) as (port, server, stalled, release):
        waiting = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            # the server has accepted it: its deadline runs from now
            wait_for(lambda: len(server.server_state.connections) == 1, "the connection to be accepted")
            armed = time.monotonic()
            staller = threading.Thread(target=lambda: httpx.get(f"http://127.0.0.1:{port}/stall", timeout=60))
            staller.start()
            assert stalled.wait(60), "the loop never stalled"
            waiting.sendall(b"GET /waiting HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # complete, in time
            # the loop stays blocked past the deadline: the deadline passing is what is tested
            wait_for(lambda: time.monotonic() > armed + timeout * 1.5, "the deadline to pass while stalled")
            release.set()
            assert _status_line(waiting) == b"HTTP/1.1 200 OK"
            staller.join(timeout=60)
        finally:
            waiting.close()
