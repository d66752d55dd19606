"""`flowkit serve` ends on SIGTERM within a bound, whatever its clients and backends do.

Found under load: a `serve` sent SIGTERM was still alive 90 minutes later, its scheduler still
firing timeouts. uvicorn waits for open requests before it runs the app's shutdown and, by
default, waits without limit (a second SIGTERM does not cut it short; only a second SIGINT
does). A request whose body never arrives is one way to hold it: here the slow-request guard
is off, so nothing else closes that connection.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx

from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import start_serve
from tests.waiting import DEADLINE, stop


def _half_request(port: int) -> socket.socket:
    """A connection whose request has its headers and 1 of its 100 body bytes: uvicorn has
    handed it to the app, which waits for the rest."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 100\r\n\r\n{")
    return sock


def test_sigterm_ends_serve_within_the_shutdown_timeout(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with FakeGraphAPI() as graph:
        port = free_port()
        proc = start_serve(redis_url, graph, port, log, "--request-timeout", "0", "--shutdown-timeout", "1")
        sock = _half_request(port)
        try:
            # answered after the half request was read: one loop reads its connections in order
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=DEADLINE).status_code == 200
            proc.send_signal(signal.SIGTERM)
            # bounded by the 1 s shutdown timeout plus the app's drain; DEADLINE only bounds a failure
            proc.wait(timeout=DEADLINE)
            assert proc.returncode is not None
            text = log.read_text()
            assert "timeout graceful shutdown exceeded" in text, text[-2000:]
        finally:
            sock.close()
            stop(proc)


def test_sigterm_with_redis_gone_exits_cleanly(tmp_path: Path) -> None:
    """Deferred acknowledgements that cannot be sent at shutdown are left to recovery (replies are
    at-least-once): a warning, not a failed shutdown with a traceback."""
    from flowkit.store.server import RedisServer

    log = tmp_path / "serve.log"
    with FakeGraphAPI() as graph, RedisServer(tmp_path / "redis") as redis:
        port = free_port()
        proc = start_serve(redis.url, graph, port, log)
        try:
            redis.kill()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=DEADLINE)
            text = log.read_text()
            assert "Application shutdown failed" not in text, text[-3000:]
            assert "Traceback" not in text, text[-3000:]
        finally:
            stop(proc)
