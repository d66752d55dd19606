"""uvicorn with the limits a server facing the internet needs (``flowkit serve``).

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not a request that
arrives slowly: a client that sends half a header line and then one byte a minute (a
slowloris) holds its connection and its memory forever, and enough of them exhaust the
process. :class:`_ReadTimeoutH11` closes a connection whose request (headers and body) is
not complete ``request_timeout`` seconds after the connection opened or the previous
response ended. Trickling bytes do not extend the deadline. Behind nginx, nginx's own
``client_header_timeout`` / ``client_body_timeout`` apply first (docs/operations.md).

Nor does uvicorn bound a graceful shutdown by default: on SIGTERM it waits for every open
request, and one that never ends (a body that never arrives with the guard off, a stuck
handler) keeps the process, and its scheduler, alive for good. ``shutdown_timeout`` bounds it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp


@dataclass(frozen=True)
class ServerLimits:
    """What one ``flowkit serve`` process accepts."""

    request_timeout: float = 10.0  # seconds to receive a whole request (headers and body); 0: off
    timeout_keep_alive: float = 5.0  # seconds an idle keep-alive connection stays open
    limit_concurrency: int = 1000  # connections plus running requests; beyond it uvicorn answers 503
    max_header_bytes: int = 16 * 1024  # request line and headers (h11's incomplete-event limit)
    backlog: int = 2048
    # seconds SIGTERM waits for open requests before cancelling them and running the app's
    # shutdown; uvicorn's own default waits forever (and a second SIGTERM does not cut it short)
    shutdown_timeout: float = 15.0


class _ReadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for receiving each request."""

    request_timeout: float = 10.0
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # (uvicorn's base takes a BaseTransport)
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the whole request is in (or the connection is done with)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this keep-alive connection gets its own deadline

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.request_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.logger.warning("closing a connection whose request did not arrive within %.1f s",
                                self.request_timeout)
            self.transport.close()


class FlowkitH11Protocol(_ReadTimeoutH11):
    """The protocol by name, for worker processes (uvicorn imports it there); each worker sets
    ``request_timeout`` from ``serve``'s settings before it serves."""


def protocol(limits: ServerLimits) -> type[H11Protocol]:
    if limits.request_timeout <= 0:
        return H11Protocol
    return type("FlowkitH11Protocol", (_ReadTimeoutH11,), {"request_timeout": limits.request_timeout})


def uvicorn_config(app: ASGIApp | str, host: str, port: int, limits: ServerLimits, **kw: Any) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=kw.pop("http", None) or protocol(limits),
                          log_level=kw.pop("log_level", "warning"),
                          # uvicorn annotates an int but only hands it to loop.call_later: a float is fine
                          timeout_keep_alive=limits.timeout_keep_alive,  # type: ignore[arg-type]  # (see above)
                          limit_concurrency=limits.limit_concurrency,
                          h11_max_incomplete_event_size=limits.max_header_bytes, backlog=limits.backlog,
                          # an int in uvicorn's annotation, used as asyncio.timeout's delay: a float is fine
                          timeout_graceful_shutdown=limits.shutdown_timeout,  # type: ignore[arg-type]  # (see above)
                          **kw)


def run(app: ASGIApp, host: str, port: int, limits: ServerLimits, **kw: Any) -> None:
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port, limits, **kw)).run()


def run_workers(factory: str, host: str, port: int, limits: ServerLimits, workers: int, **kw: Any) -> None:
    """``workers`` processes serving one socket, each building its app with ``factory`` (an
    import string); this process supervises them (uvicorn's Multiprocess: SIGTERM ends them
    all, each with its graceful shutdown; one that dies is started again)."""
    from uvicorn.supervisors import Multiprocess

    http = "flowkit.webserver:FlowkitH11Protocol" if limits.request_timeout > 0 else "h11"
    config = uvicorn_config(factory, host, port, limits, factory=True, workers=workers, http=http, **kw)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
