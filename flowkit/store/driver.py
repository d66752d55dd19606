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

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis import exceptions as rx

from flowkit.errors import StoreUnavailable
from flowkit.store.scripts import Script

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
    40-argument EVALSHA; this one does what the commit needs in a fraction of that."""
    out = []
    for cmd in cmds:
        out.append(b"*%d\r\n" % len(cmd))
        for a in cmd:
            b = _arg(a)
            out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"Redis is unavailable ({type(exc).__name__}: {exc}). If this was a commit, it either applied "
        "completely or not at all; retrying is safe (a retried message answers 'duplicate', a retried "
        "expected version answers 'conflict')")


Pending = list[tuple[int, Op[Any], Batch]]


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


class SyncDriver:
    """Executes batches on a ``redis.Redis`` or ``redis.cluster.RedisCluster``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.round_trips = 0

    def run(self, op: Op[T]) -> T:
        try:
            batch = next(op)
            while True:
                batch = op.send(self.execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

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
        try:
            replies = self._send([_pack(c) for c in batch])
            missing = _noscript(batch, replies)
            if missing:  # EVALSHA did nothing there; EVAL runs them and caches the script for next time
                for i, reply in zip(missing, self._send([_eval(batch[i]) for i in missing]), strict=True):  # type: ignore[arg-type]
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
            out: list[Any] = []
            for _ in cmds:
                try:
                    out.append(conn.read_response())
                except rx.ResponseError as err:  # an error reply: the stream stays in sync
                    out.append(err)
            return out
        except BaseException:
            conn.disconnect()  # unknown position in the reply stream: never reuse it
            raise
        finally:
            if single is None:
                pool.release(conn)


class AsyncDriver:
    """Executes batches on a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.round_trips = 0

    async def run(self, op: Op[T]) -> T:
        try:
            batch = next(op)
            while True:
                batch = op.send(await self.execute(batch))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def run_many(self, ops: Sequence[Op[T]]) -> list[T]:
        results: list[Any] = [None] * len(ops)
        pending = _start(ops, results)
        while pending:
            replies = await self.execute([c for _, _, batch in pending for c in batch])
            pending = _advance(pending, replies, results)
        return results

    async def execute(self, batch: Sequence[Command]) -> list[Any]:
        try:
            replies = await self._send([_pack(c) for c in batch])
            missing = _noscript(batch, replies)
            if missing:
                again = await self._send([_eval(batch[i]) for i in missing])  # type: ignore[arg-type]
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
