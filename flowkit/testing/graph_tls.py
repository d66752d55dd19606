"""The HTTPS front of :class:`~flowkit.testing.fake_graph.FakeGraphAPI`: HTTP/2 as Graph serves it.

``graph.facebook.com`` speaks HTTP/2 over TLS (ALPN ``h2``, HTTP/1.1 for clients that do not
offer it). This front serves the fake that way: hypercorn, in a child process, terminates TLS
on a certificate that trustme makes for ``127.0.0.1`` per server and passes every request on
to the fake's plain server in the parent, which answers it as always (validation, errors,
rate limits, delays) and records the HTTP version and client port the front saw (two
``x-fake-graph-*`` headers). ``ca_file`` is the PEM a client must trust (``WHATSAPP_CA_FILE``).

A child process, not a thread: hypercorn's shutdown waits for every client to hang up and
then for each TLS close to be acknowledged, so a sender left open would hold a stop for up
to a minute; a child is killed at once, as the plain server stops at once. It also exits when
the parent does (its stdin closes). hypercorn and trustme are test dependencies (pyproject's
``dev`` extra), imported only when a TLS fake starts.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: request headers the front adds for the fake's records
VERSION_HEADER, PORT_HEADER = "x-fake-graph-http-version", "x-fake-graph-client-port"
# hop-by-hop headers: HTTP/2 forbids them, and each hop sets its own
_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"host", b"content-length",
                  b"proxy-connection", b"te"})


class TLSFront:
    """A child process serving ``upstream`` (the fake's plain URL) over TLS on 127.0.0.1."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.ca_file = ""

    def start(self) -> TLSFront:
        import trustme  # (a test dependency: see the module's docstring)

        # (a TemporaryDirectory removes the keys at exit too, should stop() never be called)
        self._dir = tempfile.TemporaryDirectory(prefix="fake-graph-tls-")
        where = Path(self._dir.name)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(where / "ca.pem"))
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(where / "server.pem"))
        self.ca_file = str(where / "ca.pem")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # bound here: the port is known at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(512)
            self.port = sock.getsockname()[1]
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "flowkit.testing.graph_tls", self.upstream, str(sock.fileno()),
                 str(where / "server.pem")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(sock.fileno(),))
        assert self._proc.stdout is not None
        deadline = time.monotonic() + 60  # a hang guard: the child says "ready" once it serves
        while time.monotonic() < deadline and self._proc.poll() is None:
            if select.select([self._proc.stdout], [], [], 0.5)[0]:
                if self._proc.stdout.readline().strip() == b"ready":
                    return self
                break
        code = self._proc.poll()
        self.stop()
        raise RuntimeError(f"the HTTPS fake Graph API did not start (exit status {code})")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
        if self._dir is not None:
            self._dir.cleanup()
        self._proc = self._dir = None


# ---------------------------------------------------------------- the child process


def _serve(upstream: str, fd: int, pem: str) -> None:
    import asyncio
    import threading

    import httpx
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    def orphaned() -> None:  # the parent is gone when stdin closes
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()

    async def main() -> None:
        # as many connections to the fake as streams a sender may open on its one HTTP/2 connection
        client = httpx.AsyncClient(base_url=upstream, timeout=120,
                                   limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                        print("ready", flush=True)
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            body = bytearray()
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            client_addr = scope.get("client")
            headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
            headers += [(VERSION_HEADER.encode(), scope["http_version"].encode()),
                        (PORT_HEADER.encode(), str(client_addr[1] if client_addr else "").encode())]
            path = scope["raw_path"].decode("latin-1") + (
                "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            r = await client.request(scope["method"], path, headers=headers, content=bytes(body))
            await send({"type": "http.response.start", "status": r.status_code,
                        "headers": [(k.lower(), v) for k, v in r.headers.raw if k.lower() not in _HOP]
                        + [(b"content-length", str(len(r.content)).encode())]})
            await send({"type": "http.response.body", "body": r.content})

        config = Config()
        config.bind = [f"fd://{fd}"]
        config.certfile = config.keyfile = pem
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = config.errorlog = None
        await serve(app, config)  # type: ignore[arg-type]  # (hypercorn types its ASGI app loosely)

    asyncio.run(main())


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])


__all__ = ["PORT_HEADER", "VERSION_HEADER", "TLSFront"]
