"""The sync driver's hot path: packing (hiredis or Python) and reading replies (from the
connection's parser, or redis-py's public read_response), against a real server."""

from __future__ import annotations

from typing import Any

import pytest
from redis import exceptions as rx

from flowkit.store import driver
from flowkit.store.driver import Call, SyncDriver, pack
from flowkit.store.scripts import NOOP


@pytest.mark.parametrize("cmds", [
    [("SET", "k", "v"), ("ZADD", "z", 1.5, "m"), ("HSET", "h", "f", b"\x00\xff", "n", -7, "big", 2**80)],
    [("SET", "k", "é"), ("SET", "flag", True), ("SET", "e", "")],  # a bool: hiredis refuses, Python packs it
])
def test_pack_is_resp(cmds: list[tuple[Any, ...]]) -> None:
    assert pack(cmds) == driver._pack_py(cmds)


class PublicOnly:
    """A real redis-py connection seen without its ``_parser`` (as a future redis-py might be)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        if name == "_parser":
            raise AttributeError(name)
        return getattr(self._conn, name)


@pytest.mark.parametrize("public", [False, True])
def test_error_replies_come_back_in_place(redis_client: Any, public: bool) -> None:
    pool = redis_client.connection_pool
    conn = pool.get_connection()
    try:
        cmds = [("SET", "s", "1"), ("HSET", "s", "f", "v"), ("GET", "s"), ("EVALSHA", "0" * 40, 0), ("INCR", "n")]
        conn.send_packed_command([pack(cmds)])
        replies = driver._read_replies(PublicOnly(conn) if public else conn, len(cmds))
        assert replies[0] in (True, b"OK")
        assert isinstance(replies[1], rx.ResponseError) and "WRONGTYPE" in str(replies[1])
        assert replies[2] == b"1"
        assert isinstance(replies[3], rx.NoScriptError)
        assert replies[4] == 1
        conn.send_packed_command([pack([("PING",)])])  # the stream is still in step
        assert driver._read_replies(conn, 1) in ([True], [b"PONG"])
    finally:
        pool.release(conn)


def test_batch_with_noscript_runs_the_script(redis_client: Any) -> None:
    d = SyncDriver(redis_client)
    out = d.execute([("SET", "a", "1"), Call(NOOP, ("fk:{s:x}:state",), ()), ("GET", "a")])
    assert out[0] in (True, b"OK") and not isinstance(out[1], Exception) and out[2] == b"1"
