"""The HTTPS front of :class:`~flowkit.testing.fake_graph.FakeGraphAPI`: HTTP/2 as Graph serves it.

``graph.facebook.com`` speaks HTTP/2 over TLS (ALPN ``h2``, HTTP/1.1 for clients that do not
offer it). This front serves the fake's very endpoint (``FakeGraphAPI._answer``: validation,
errors, rate limits, delays) that way: hypercorn runs it as an ASGI app in a thread with its
own event loop, on a certificate that trustme makes for ``127.0.0.1`` per server; ``ca_file``
is the PEM a client must trust (``WHATSAPP_CA_FILE``). hypercorn and trustme are test
dependencies (pyproject's ``dev`` extra), imported only when a TLS fake starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: (method, path with query, lower-case headers, body, HTTP version, client port) -> (status, body, headers)
Answer = Callable[[str, str, Mapping[str, str], bytes, str, int | None], tuple[int, bytes, dict[str, str]]]


class TLSFront:
    """hypercorn serving ``answer`` over TLS on 127.0.0.1, HTTP/2 or HTTP/1.1 as the client offers."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._dir: Path | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self.port = 0
        self.ca_file = ""

    def start(self) -> TLSFront:
        import trustme  # (a test dependency: see the module's docstring)

        self._dir = Path(tempfile.mkdtemp(prefix="fake-graph-tls-"))
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self._dir / "ca.pem"))
        cert.private_key_and_cert_chain_pem.write_to_path(str(self._dir / "server.pem"))
        self.ca_file = str(self._dir / "ca.pem")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="fake-graph-api-tls", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._failed is not None:  # a condition, not a time: 30 s is a hang guard
            self.stop()
            raise RuntimeError(f"the HTTPS fake Graph API did not start: {self._failed!r}")
        return self

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._sock = self._thread = self._loop = self._stop = self._dir = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 -- reported by start(), which is waiting for it
            self._failed = exc
            self._ready.set()

    async def _serve(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        assert self._sock is not None and self._dir is not None
        self._loop = asyncio.get_running_loop()
        # the fake's answers may sleep (latency, delay_next): threads, as many as a sender opens streams
        self._loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="fake-graph"))
        self._stop = asyncio.Event()
        config = Config()
        config.bind = [f"fd://{os.dup(self._sock.fileno())}"]  # hypercorn closes the fd it is given
        config.certfile = config.keyfile = str(self._dir / "server.pem")
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = config.errorlog = None  # quiet, as the plain front
        config.graceful_timeout = 1.0
        await serve(self._app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]  # (hypercorn types its ASGI app loosely)

    async def _app(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    self._ready.set()
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        client = scope.get("client")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        status, data, out = await asyncio.to_thread(self._answer, scope["method"], path, headers, bytes(body),
                                                    scope["http_version"], client[1] if client else None)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out.items()]})
        await send({"type": "http.response.body", "body": data})


__all__ = ["TLSFront"]
