"""Run the store's sans-io operations against a real client: one ``yield`` = one round trip.

An operation (see :mod:`flowkit.store.ops`) is a generator that yields a *batch* — a list of
Redis commands and script calls — and gets the list of replies back. :class:`SyncDriver`
sends each batch with blocking I/O, :class:`AsyncDriver` with ``await``; everything else is
shared. Counting batches is counting network round trips (``driver.round_trips``).

On a standalone server a batch is written to one pooled connection in one send and the
replies are read back raw (no redis-py Pipeline object, no response callbacks): this is
the commit's hot path. On Redis Cluster a batch is a non-transactional ``ClusterPipeline``
(redis-py groups the commands per node). Error replies come back in place, as exception
objects, so one failed command never hides the others.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis import exceptions as rx

from flowkit.errors import StoreUnavailable
from flowkit.store.autopipe import AutoPipeline, Unusable
from flowkit.store.scripts import Script

_hiredis_pack: Callable[[tuple[Any, ...]], Any] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; this keeps a broken wheel non-fatal
    _hiredis_pack = None

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """EVALSHA of one of flowkit's scripts (falls back to EVAL once on NOSCRIPT)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]


Command = tuple[Any, ...] | Call
Batch = list[Command]
Op = Generator[Batch, list[Any], T]

#: what "Redis is unreachable or not serving" looks like, as exceptions or as error replies
UNAVAILABLE: tuple[type[Exception], ...] = (
    rx.ConnectionError, rx.TimeoutError, rx.ClusterError, rx.ClusterDownError, rx.TryAgainError,
    rx.MasterDownError, rx.ReadOnlyError, rx.BusyLoadingError, OSError,
)


def _pack(cmd: Command) -> tuple[Any, ...]:
    if isinstance(cmd, Call):
        return ("EVALSHA", cmd.script.sha, len(cmd.keys), *cmd.keys, *cmd.args)
    return cmd


def _eval(cmd: Call) -> tuple[Any, ...]:
    return ("EVAL", cmd.script.source, len(cmd.keys), *cmd.keys, *cmd.args)


def _noscript(batch: Sequence[Command], replies: list[Any]) -> list[int]:
    return [i for i, (cmd, reply) in enumerate(zip(batch, replies, strict=True))
            if isinstance(cmd, Call) and isinstance(reply, rx.NoScriptError)]


def _arg(a: Any) -> bytes:
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode()
    if isinstance(a, int):
        return b"%d" % a
    if isinstance(a, float):
        return repr(a).encode()
    raise TypeError(f"cannot send {type(a).__name__} to Redis")


def pack(cmds: Sequence[tuple[Any, ...]]) -> bytes:
    """RESP-encode commands in one buffer. redis-py's general packer spends ~30 us on a
    40-argument EVALSHA; hiredis' C packer ~4 us, the Python loop below (for what hiredis
    refuses, e.g. a bool) ~15 us."""
    if _hiredis_pack is not None:
        try:
            return b"".join([_hiredis_pack(c) for c in cmds])
        except TypeError:
            pass
    return _pack_py(cmds)


def _pack_py(cmds: Sequence[tuple[Any, ...]]) -> bytes:
    out = []
    for cmd in cmds:
        out.append(b"*%d\r\n" % len(cmd))
        for a in cmd:
            b = _arg(a)
            out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def _read_replies(conn: Any, n: int) -> list[Any]:
    """``n`` replies from a redis-py connection, error replies in place as exception objects.

    redis-py's parsers (hiredis and pure Python, RESP2 and 3) return an error reply as a
    ResponseError object; ``Connection.read_response`` raises it, and formats the host name
    for a possible error message on every call, ~2 us a reply, so the parser is read
    directly (it turns socket timeouts and resets into redis-py's errors itself). Without
    the ``_parser`` attribute (a redis-py that changed it), the public way."""
    read = getattr(getattr(conn, "_parser", None), "read_response", None)
    if read is None:
        out: list[Any] = []
        for _ in range(n):
            try:
                out.append(conn.read_response())
            except rx.ResponseError as err:  # an error reply: the stream stays in sync
                out.append(err)
        return out
    out = [read() for _ in range(n)]
    if conn.health_check_interval:  # what read_response would have done: no PING before the next send
        conn.next_health_check = time.monotonic() + conn.health_check_interval
    return out


#: What ``Deferred.carried()`` gives when nothing is queued (the usual case), without its lock.
#: A write queued by another thread just after the check rides on the next batch or its timer.
_NOTHING_DEFERRED: contextlib.AbstractContextManager[tuple[()]] = contextlib.nullcontext(())


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"Redis is unavailable ({type(exc).__name__}: {exc}). If this was a commit, it either applied "
        "completely or not at all; retrying is safe (a retried message answers 'duplicate', a retried "
        "expected version answers 'conflict')")


Pending = list[tuple[int, Op[Any], Batch]]


class Deferred:
    """Idempotent housekeeping writes (outbox acknowledgements) that ride along with the
    driver's next round trip instead of costing one of their own.

    That is what makes the runtime's happy path one round trip per message: the commit of
    message N carries the acknowledgement of message N-1. A write that no round trip has
    carried within ``max_delay`` seconds is flushed alone by a timer. A deferred write lost
    to a crash only means recovery resends replies that were already sent (replies are
    at-least-once anyway); a write that met a dead Redis is kept for the next round trip.
    Thread-safe: a sync store is shared by threads.
    """

    def __init__(self, max_delay: float = 0.1) -> None:
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._cmds: Batch = []
        self._since: float | None = None  # when the oldest queued write was queued
        self._timer = False  # a flush timer is running
        self.inflight = 0  # batches taken and not yet answered (flush() waits for them)

    def __len__(self) -> int:
        return len(self._cmds)

    def add(self, cmds: Batch) -> bool:
        """Queue ``cmds``; True if the caller must start the flush timer."""
        with self._lock:
            self._cmds += cmds
            if self._since is None:
                self._since = time.monotonic()
            start, self._timer = not self._timer, True
            return start

    def take(self) -> Batch:
        with self._lock:
            out, self._cmds, self._since = self._cmds, [], None
            if out:
                self.inflight += 1
            return out

    def done(self, cmds: Batch, *, failed: bool = False) -> None:
        """The batch ``cmds`` from take() was answered (or failed: queue it again)."""
        if not cmds:
            return
        with self._lock:
            if failed:
                self._cmds[:0] = cmds
                if self._since is None:
                    self._since = time.monotonic()
            self.inflight -= 1
            self._idle.notify_all()

    @contextlib.contextmanager
    def carried(self) -> Iterator[Batch]:
        """The queued writes, to put in front of a batch; put back if the batch fails."""
        cmds = self.take()
        try:
            yield cmds
        except BaseException:
            self.done(cmds, failed=True)
            raise
        self.done(cmds)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no taken batch is on its way (another thread's round trip may carry one)."""
        with self._lock:
            self._idle.wait_for(lambda: self.inflight == 0, timeout)

    def due(self) -> float | None:
        """For the timer: None (nothing queued: the timer stops), 0 (flush now), or how long
        to wait until the oldest write is ``max_delay`` old."""
        with self._lock:
            if self._since is None:
                self._timer = False
                return None
            return max(0.0, self._since + self.max_delay - time.monotonic())

    def stop_timer(self) -> None:
        with self._lock:
            self._timer = False


def _start(ops: Sequence[Op[Any]], results: list[Any]) -> Pending:
    pending: Pending = []
    for i, op in enumerate(ops):
        try:
            pending.append((i, op, next(op)))
        except StopIteration as stop:
            results[i] = stop.value
    return pending


def _advance(pending: Pending, replies: list[Any], results: list[Any]) -> Pending:
    nxt: Pending = []
    pos = 0
    for i, op, batch in pending:
        mine, pos = replies[pos:pos + len(batch)], pos + len(batch)
        try:
            nxt.append((i, op, op.send(mine)))
        except StopIteration as stop:
            results[i] = stop.value
    return nxt


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


_drivers: weakref.WeakSet[SyncDriver] = weakref.WeakSet()


def flush_all() -> None:
    """Send every live sync driver's deferred writes now. Runs at interpreter exit, so a
    process that never called ``drain()`` still acknowledges what it sent."""
    for driver in list(_drivers):
        try:
            driver.flush()
        except Exception:  # noqa: BLE001 - Redis gone: recovery resends, which is the documented cost
            pass


atexit.register(flush_all)


class SyncDriver:
    """Executes batches on a ``redis.Redis`` or ``redis.cluster.RedisCluster``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.round_trips = 0
        self.deferred = Deferred()
        _drivers.add(self)

    def run(self, op: Op[T]) -> T:
        try:
            batch = next(op)
            while True:
                batch = op.send(self.execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # (the generator's return value, typed Any by StopIteration)

    def defer(self, cmds: Batch) -> None:
        """Send ``cmds`` (idempotent writes whose replies nobody needs) with the next round trip."""
        if getattr(self.client, "connection", None) is not None:
            self.execute(cmds)  # one shared connection: a flush timer could interleave with a caller
            return
        if self.deferred.add(cmds):
            threading.Thread(target=self._timer, name="flowkit-ack-flush", daemon=True).start()

    def flush(self) -> None:
        """Send the deferred writes now, and wait for any that another thread is sending."""
        if len(self.deferred):
            self.execute([])
        self.deferred.wait_idle()

    def _timer(self) -> None:
        while (wait := self.deferred.due()) is not None:
            if wait > 0:
                time.sleep(wait)
                continue
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - Redis down: they stay queued for the next round trip
                self.deferred.stop_timer()
                return

    def run_many(self, ops: Sequence[Op[T]]) -> list[T]:
        """Run many operations side by side: each round sends every op's next batch in one
        pipeline, so N independent commits cost one round trip, not N."""
        results: list[Any] = [None] * len(ops)
        pending = _start(ops, results)
        while pending:
            replies = self.execute([c for _, _, batch in pending for c in batch])
            pending = _advance(pending, replies, results)
        return results

    def execute(self, batch: Sequence[Command]) -> list[Any]:
        with self.deferred.carried() if len(self.deferred) else _NOTHING_DEFERRED as extra:
            if not extra and not batch:
                return []
            try:
                replies = self._send([_pack(c) for c in (*extra, *batch)])[len(extra):]
            except UNAVAILABLE as exc:
                raise _unavailable(exc) from exc
        try:
            missing = _noscript(batch, replies)
            if missing:  # EVALSHA did nothing there; EVAL runs them and caches the script for next time
                for i, reply in zip(missing, self._send([_eval(batch[i]) for i in missing]), strict=True):  # type: ignore[arg-type]  # (the batch holds Calls at these indexes)
                    replies[i] = reply
        except UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return replies

    def _send(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        self.round_trips += 1
        if self.cluster:
            pipe = self.client.pipeline(transaction=False)
            for c in cmds:
                pipe.execute_command(*c)
            return list(pipe.execute(raise_on_error=False))
        single = getattr(self.client, "connection", None)
        pool = self.client.connection_pool
        conn = single or pool.get_connection()
        try:
            conn.send_packed_command([pack(cmds)])
            return _read_replies(conn, len(cmds))
        except BaseException:
            conn.disconnect()  # unknown position in the reply stream: never reuse it
            raise
        finally:
            if single is None:
                pool.release(conn)


class AsyncDriver:
    """Executes batches on a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(self, client: Any, *, autopipeline: bool = True) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.round_trips = 0
        self.deferred = Deferred()
        self._flusher: asyncio.Task[None] | None = None
        # standalone, pooled client: concurrent callers' batches share one connection and one
        # write per event-loop tick (store/autopipe.py); a single-connection client keeps its own
        self.pipeline: AutoPipeline | None = (
            AutoPipeline(client.connection_pool)
            if autopipeline and not self.cluster and getattr(client, "connection", None) is None else None)

    async def defer(self, cmds: Batch) -> None:
        """Send ``cmds`` (idempotent writes whose replies nobody needs) with the next round trip."""
        if getattr(self.client, "connection", None) is not None:
            await self.execute(cmds)  # one shared connection: a flush task could interleave with a caller
            return
        if self.deferred.add(cmds):
            self._flusher = asyncio.get_running_loop().create_task(self._timer())

    async def _timer(self) -> None:
        while (wait := self.deferred.due()) is not None:
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - Redis down: they stay queued for the next round trip
                self.deferred.stop_timer()
                return

    async def flush(self) -> None:
        """Send the deferred writes now, and wait for any that another task is sending."""
        if len(self.deferred):
            await self.execute([])
        while self.deferred.inflight:
            await asyncio.sleep(0.001)

    async def run(self, op: Op[T]) -> T:
        try:
            batch = next(op)
            while True:
                batch = op.send(await self.execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # (the generator's return value, typed Any by StopIteration)

    async def run_many(self, ops: Sequence[Op[T]]) -> list[T]:
        results: list[Any] = [None] * len(ops)
        pending = _start(ops, results)
        while pending:
            replies = await self.execute([c for _, _, batch in pending for c in batch])
            pending = _advance(pending, replies, results)
        return results

    async def execute(self, batch: Sequence[Command]) -> list[Any]:
        with self.deferred.carried() if len(self.deferred) else _NOTHING_DEFERRED as extra:
            if not extra and not batch:
                return []
            try:
                replies = (await self._send([_pack(c) for c in (*extra, *batch)]))[len(extra):]
            except UNAVAILABLE as exc:
                raise _unavailable(exc) from exc
        try:
            missing = _noscript(batch, replies)
            if missing:
                again = await self._send([_eval(batch[i]) for i in missing])  # type: ignore[arg-type]  # (the batch holds Calls at these indexes)
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return replies

    async def _send(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        self.round_trips += 1
        if self.cluster:
            pipe = self.client.pipeline(transaction=False)
            for c in cmds:
                pipe.execute_command(*c)
            return list(await pipe.execute(raise_on_error=False))
        if self.pipeline is not None:
            try:
                return await self.pipeline.send(pack(cmds), len(cmds))
            except Unusable:
                self.pipeline = None  # a redis-py this does not know: the pooled path below
        single = getattr(self.client, "connection", None)
        pool = self.client.connection_pool
        conn = single or await pool.get_connection()
        try:
            await conn.send_packed_command([pack(cmds)])
            out: list[Any] = []
            for _ in cmds:
                try:
                    out.append(await conn.read_response())
                except rx.ResponseError as err:
                    out.append(err)
            return out
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            if single is None:
                await pool.release(conn)
