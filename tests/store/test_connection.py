"""Settings from URLs, ACL users, and Redis being unreachable or slow."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from flowkit.errors import ConfigError, StoreUnavailable
from flowkit.store import RedisSettings, Store, connect, redis_url_from_env
from flowkit.store.server import free_port
from tests.store.conftest import advance, make_record, make_state
from tests.waiting import wait_for


@pytest.mark.parametrize(("url", "expect"), [
    ("redis://localhost:6380/2", {"nodes": (("localhost", 6380),), "db": 2, "ssl": False, "cluster": False}),
    ("redis://h", {"nodes": (("h", 6379),), "db": 0}),
    ("rediss://user:p%40ss@h:6390/0", {"ssl": True, "username": "user", "password": "p@ss"}),
    ("redis://:secret@h:1/0", {"username": None, "password": "secret"}),
    ("redis+cluster://a:7000,b:7001", {"cluster": True, "nodes": (("a", 7000), ("b", 7001))}),
    ("rediss+cluster://u:p@a:7000", {"cluster": True, "ssl": True, "username": "u"}),
    ("redis://a:7000?cluster=true", {"cluster": True, "nodes": (("a", 7000),)}),
    ("redis://[::1]:7000/0", {"nodes": (("::1", 7000),)}),
    ("unix:///tmp/redis.sock?db=3", {"unix_socket": "/tmp/redis.sock", "db": 3}),
    ("redis://h:1/0?socket_timeout=0.5", {"options": (("socket_timeout", "0.5"),)}),
])
def test_settings_from_url(url: str, expect: dict[str, Any]) -> None:
    s = RedisSettings.from_url(url)
    for k, v in expect.items():
        assert getattr(s, k) == v, k


def test_bad_urls_and_redaction() -> None:
    with pytest.raises(ConfigError, match="scheme"):
        RedisSettings.from_url("http://h:1")
    with pytest.raises(ConfigError, match="database 0"):
        RedisSettings.from_url("redis+cluster://a:1/3")
    s = RedisSettings.from_url("redis://flowkit:s3cret@h:1/0")
    assert "s3cret" not in s.redacted and "s3cret" not in repr(s) and "***" in s.redacted


def test_url_from_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: Any) -> None:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    assert redis_url_from_env() == redis_url
    c = connect()
    assert c.connection_pool.connection_kwargs["port"] == int(redis_url.rsplit(":", 1)[1].split("/")[0])
    c.close()


def test_acl_user(redis_client: Any, redis_server: Any) -> None:
    redis_client.acl_setuser("flowkit", enabled=True, passwords=["+s3cret"], keys=["fk:*"], commands=["+@all"])
    try:
        url = f"redis://flowkit:s3cret@{redis_server.host}:{redis_server.port}/0"
        store = Store(connect(url))
        advance(store, "u1", None, "welcome")
        assert store.load("u1")["version"] == 1 and store.client.acl_whoami() == "flowkit"
        store.client.close()
        wrong = Store(connect(url.replace("s3cret", "nope")))
        with pytest.raises(StoreUnavailable):
            wrong.load("u1")
    finally:
        redis_client.acl_deluser("flowkit")


def test_unreachable_redis_raises_store_unavailable_quickly() -> None:
    store = Store(connect(f"redis://127.0.0.1:{free_port()}/0"))
    s = make_state("u1", 0, "welcome")
    started = time.monotonic()
    for call in (lambda: store.commit("u1", 0, dict(s), make_record(s, None, event="start")),
                 lambda: store.load("u1"), lambda: store.history("u1"), lambda: store.ping()):
        with pytest.raises(StoreUnavailable):
            call()
    # time is what is tested: a refused connection fails at once, hidden retries would back off for seconds
    assert time.monotonic() - started < 3


def _answers(store: Store) -> bool:
    try:
        return bool(store.ping())
    except StoreUnavailable:
        return False


def test_timeout_raises_store_unavailable_and_never_half_writes(redis_client: Any, redis_url: str) -> None:
    store = Store(connect(redis_url + "?socket_timeout=0.2"))
    s1 = advance(store, "u1", None, "welcome", message_id="m1")
    redis_client.execute_command("CLIENT", "PAUSE", 800, "ALL")  # Redis stops answering for a while
    s2 = make_state("u1", 1, "ask_size")
    with pytest.raises(StoreUnavailable, match="retrying is safe"):
        store.commit("u1", 1, s2, make_record(s2, "welcome", message_id="m2"), previous=s1, message_id="m2")
    wait_for(lambda: _answers(store), "Redis to answer again after the pause")
    # We gave up (and dropped the connection) while the command waited: it either ran completely
    # or not at all, never half. Retrying with the same message id is safe either way.
    state = store.load("u1")
    hist = [h["version"] for h in store.history("u1")]
    assert (state, hist) in ((s1, [1]), (s2, [1, 2]))
    again = make_state("u1", 1, "ask_size")
    res = store.commit("u1", 1, again, make_record(again, "welcome", message_id="m2"), previous=s1, message_id="m2")
    assert res.outcome == ("ok" if hist == [1] else "duplicate") and res.version == 2
    assert store.load("u1") == again and [h["version"] for h in store.history("u1")] == [1, 2]
    store.client.close()


def test_server_dying_mid_traffic(tmp_path: Any) -> None:
    from flowkit.store import RedisServer

    server = RedisServer(tmp_path / "dying").start()
    store = Store(connect(server.url))
    errors: list[Exception] = []
    done: list[int] = []

    def hammer() -> None:
        prev = advance(store, "u1", None, "welcome")
        while True:
            try:
                prev = advance(store, "u1", prev, "step")
                done.append(1)
            except StoreUnavailable as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=hammer)
    t.start()
    wait_for(lambda: len(done) >= 20 or errors, "traffic to be under way")  # mid-traffic, not before it
    server.kill()
    t.join(timeout=60)
    assert errors and isinstance(errors[0].__cause__, redis.RedisError | OSError)
    store.client.close()
