"""Auto-pipelining for the async driver: the batches that concurrent tasks send in one
event-loop tick leave as one write on one connection, and their replies come back in order.

This is what ioredis and node-redis do. With a connection per waiting task (redis-py's pool)
64 concurrent commits cost 64 ``send()`` calls, 64 reads with a timeout context each, and
Redis serves 64 sockets; here they cost one ``send()``, a few ``recv()`` calls and one
socket. Redis answers a connection's commands in the order it received them, so each
caller's replies are the next ``n`` replies after those of the callers queued before it.

The connection is borrowed from the client's pool (so AUTH, SELECT, TLS and the client
name are redis-py's) and kept until it breaks; ``client.aclose()`` closes it with the pool.
What a caller sees is what it saw before: its replies in place, error replies as exception
objects, and redis-py's ``ConnectionError`` / ``TimeoutError`` when the connection breaks or
Redis stops answering for ``socket_timeout`` seconds (every caller waiting on that
connection gets it; the driver turns it into ``StoreUnavailable``). A caller cancelled
before its batch was written is dropped from the write (its commands never run); one
cancelled after keeps its place in the reply stream, and its replies are read and dropped.

Not for blocking commands (BLPOP and the like would hold every caller behind them): the
store's operations have none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import hiredis
from redis import exceptions as rx

try:
    from redis._parsers.base import BaseParser

    _parse_error = BaseParser.parse_error  # NOSCRIPT -> NoScriptError, as redis-py's own parsers do
except ImportError:  # pragma: no cover - a redis-py that moved it: plain ResponseError (NOSCRIPT then never matches)
    _parse_error = rx.ResponseError

_PUSH: type | None = getattr(hiredis, "PushNotification", None)  # hiredis >= 3.2
_NOT_ENOUGH = object()  # hiredis' "no complete reply buffered yet" (False is a valid RESP3 reply)
_READ_SIZE = 65536
_readers: set[asyncio.Task[None]] = set()


class _Pool(Protocol):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any: ...

    async def release(self, connection: Any) -> None: ...


@dataclass(slots=True, eq=False)
class _Waiter:
    """One caller's batch: ``n`` replies still to come for ``future``."""

    data: bytes
    n: int
    future: asyncio.Future[list[Any]]
    replies: list[Any] = field(default_factory=list)
    sent_at: float = 0.0


class _Link:
    """One borrowed connection, its reply reader and the callers waiting on it, oldest first."""

    def __init__(self, conn: Any, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self.conn = conn
        self.loop = loop
        self.timeout = timeout
        self.writer: asyncio.StreamWriter = conn._writer
        self.reader: asyncio.StreamReader = conn._reader
        kw: dict[str, Any] = {"replyError": _parse_error, "notEnoughData": _NOT_ENOUGH}
        encoder = getattr(conn, "encoder", None)
        if encoder is not None and encoder.decode_responses:
            kw.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        self.parser = hiredis.Reader(**kw)
        self.queued: list[_Waiter] = []  # not yet written
        self.waiting: deque[_Waiter] = deque()  # written, replies outstanding
        self.flush_scheduled = False
        self.broken: BaseException | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.writes = 0
        self.task = loop.create_task(self._read(), name="flowkit-autopipeline-reader")
        _readers.add(self.task)  # asyncio keeps only weak references to tasks
        self.task.add_done_callback(_readers.discard)

    def submit(self, data: bytes, n: int) -> asyncio.Future[list[Any]]:
        fut: asyncio.Future[list[Any]] = self.loop.create_future()
        self.queued.append(_Waiter(data, n, fut))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.flush_scheduled = False
        batch = [w for w in self.queued if not w.future.done()]  # cancelled before the write: never sent
        self.queued = []
        if not batch:
            return
        if self.broken is not None or self.writer.transport.is_closing():
            err = rx.ConnectionError("Connection closed by the server before write")
            for w in batch:
                w.future.set_exception(err)
            self.fail(err)
            return
        now = self.loop.time()
        for w in batch:
            w.sent_at = now
        self.waiting.extend(batch)
        self.writer.write(b"".join([w.data for w in batch]))
        self.writes += 1
        if self.watchdog is None and self.timeout:
            self.watchdog = self.loop.call_at(now + self.timeout, self._check)

    def _check(self) -> None:
        """Redis answered nothing for the oldest caller in ``timeout`` seconds: a stopped or
        unreachable server. Every caller gets a TimeoutError and the connection is dropped
        (its position in the reply stream is unknown from now on)."""
        self.watchdog = None
        if not self.waiting or self.timeout is None:
            return
        due = self.waiting[0].sent_at + self.timeout
        if self.loop.time() >= due:
            self.fail(rx.TimeoutError(f"Redis sent no reply within {self.timeout} s"))
        else:
            self.watchdog = self.loop.call_at(due, self._check)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(_READ_SIZE)
                if not data:
                    raise rx.ConnectionError("Connection closed by server.")
                self.parser.feed(data)
                while (reply := self.parser.gets()) is not _NOT_ENOUGH:
                    self._deliver(reply)
        except asyncio.CancelledError:
            self.fail(rx.ConnectionError("the auto-pipelining reader was cancelled (event loop closing)"))
            raise
        except (OSError, rx.RedisError) as exc:
            self.fail(exc if isinstance(exc, rx.RedisError) else rx.ConnectionError(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # noqa: BLE001 - hiredis' protocol error: the stream cannot be trusted any more
            self.fail(rx.ConnectionError(f"unreadable reply from Redis ({type(exc).__name__}: {exc})"))

    def _deliver(self, reply: Any) -> None:
        if not self.waiting:
            raise rx.ConnectionError("Redis sent a reply nobody asked for")
        if _PUSH is not None and isinstance(reply, _PUSH):
            return  # RESP3 out-of-band push (redis-py's parser skips them too): not a reply
        head = self.waiting[0]
        head.replies.append(reply)
        if len(head.replies) == head.n:
            self.waiting.popleft()
            if head.future.done():  # a cancelled caller's replies are read and dropped
                return
            # as redis-py's read_response: an error reply that means "not serving" (LOADING,
            # MASTERDOWN) is raised, not returned in place, so the store reports it unavailable
            down = next((r for r in head.replies if isinstance(r, rx.ConnectionError)), None)
            if down is not None:
                head.future.set_exception(down)
            else:
                head.future.set_result(head.replies)

    def fail(self, exc: BaseException) -> None:
        """The connection is unusable: everyone waiting gets ``exc``; the next caller borrows a new one."""
        if self.broken is None:
            self.broken = exc
            self.writer.transport.abort()  # replies still on the way must not be read by anyone
        for w in (*self.waiting, *self.queued):
            if not w.future.done():
                w.future.set_exception(exc)
        self.waiting.clear()
        self.queued = []
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None


class AutoPipeline:
    """Sends packed batches for concurrent callers over one connection of ``pool``."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None
        self.writes = 0  # socket writes so far (batches sent per write = round trips / writes)

    @staticmethod
    def usable(conn: Any) -> bool:
        """Whether ``conn`` is a redis-py connection this module knows how to drive (RESP2 or
        RESP3, connected stream reader and writer); otherwise the driver keeps redis-py's path."""
        return (str(getattr(conn, "protocol", 2)) in ("2", "3", "None")
                and isinstance(getattr(conn, "_writer", None), asyncio.StreamWriter)
                and isinstance(getattr(conn, "_reader", None), asyncio.StreamReader))

    async def send(self, data: bytes, n: int) -> list[Any]:
        """The ``n`` replies to the RESP-encoded commands in ``data``, error replies in place."""
        link = self._link
        if link is None or link.broken is not None or link.loop is not asyncio.get_running_loop():
            link = await self._connect()
        return await link.submit(data, n)

    async def _connect(self) -> _Link:
        # One connect, in its own task, for every caller that finds no usable link: a caller
        # cancelled while waiting must not cancel (or fail) the connect the others wait on.
        task = self._connecting
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.get_running_loop().create_task(self._open(), name="flowkit-autopipeline-connect")
            task.add_done_callback(_retrieved)
            self._connecting = task
        return await asyncio.shield(task)

    async def _open(self) -> _Link:
        old = self._link
        self._link = None
        if old is not None:
            self.writes += old.writes
            await self._return(old)
        conn = await self.pool.get_connection()
        if not getattr(conn, "is_connected", True):
            await conn.connect()
        if not self.usable(conn):
            await self.pool.release(conn)
            raise Unusable()
        link = _Link(conn, asyncio.get_running_loop(), getattr(conn, "socket_timeout", None))
        self._link = link
        return link

    async def _return(self, link: _Link) -> None:
        if link.loop is not asyncio.get_running_loop():
            return  # its loop is gone or elsewhere; the pool's disconnect closes it
        link.task.cancel()
        with contextlib.suppress(BaseException):
            await link.task
        with contextlib.suppress(Exception):
            await link.conn.disconnect()
            await self.pool.release(link.conn)

    @property
    def total_writes(self) -> int:
        return self.writes + (self._link.writes if self._link is not None else 0)


def _retrieved(task: asyncio.Task[_Link]) -> None:
    """Mark a failed connect's exception as seen (its callers got it, or none was left)."""
    if not task.cancelled():
        task.exception()


class Unusable(Exception):
    """The pool's connection is not one auto-pipelining can drive (an unknown redis-py)."""
