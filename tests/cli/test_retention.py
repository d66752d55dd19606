"""Retention of ended sessions from the command line: ``--terminal-ttl``, ``$FLOWKIT_TERMINAL_TTL``
and the 30-day default reach the keys of every session that ended (and only those), the
value is shown by ``flowkit redis status``, bad values are refused, and a session revived
by a process that keeps ended sessions no longer expires."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.store import Store
from flowkit.store import keys as K
from flowkit.store.codec import is_terminal
from tests.store.conftest import advance

runner = CliRunner()
DAY_MS = 86_400_000
SIMULATE = ["simulate", "examples/flows", "--users", "12", "--seed", "3", "--format", "json"]


@pytest.fixture
def env(redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    monkeypatch.delenv("FLOWKIT_TERMINAL_TTL", raising=False)
    return redis_client


def _ttls(client: Any) -> tuple[list[int], list[int]]:
    """PTTLs of every key of ended sessions, and of running sessions."""
    ended, running = [], []
    for sid in Store(client).iter_session_ids():
        status = client.hget(K.session_keys(sid).state, "status").decode()
        ttls = [client.pttl(k) for k in K.session_keys(sid).all if client.exists(k)]
        (ended if is_terminal(status) else running).extend(ttls)
    return ended, running


def _status(client: Any) -> dict[str, Any]:
    r = runner.invoke(app, ["redis", "status", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_option_sets_the_ttl_of_ended_sessions_and_status_shows_it(env: Any) -> None:
    r = runner.invoke(app, [*SIMULATE, "--terminal-ttl", "2h"])
    assert r.exit_code == 0, r.stderr
    ended, running = _ttls(env)
    assert ended and all(0 < t <= 2 * 3_600_000 for t in ended), ended
    assert all(t == -1 for t in running)  # a running session never expires
    status = _status(env)
    assert status["terminal_ttl"] == "2h" and status["terminal_ttl_ms"] == 7_200_000
    assert status["terminal_ttl_source"].startswith("flowkit simulate (pid ")


def test_default_is_thirty_days(env: Any) -> None:
    assert _status(env)["terminal_ttl"] == "30d"  # before any runtime process recorded one: the default
    assert "default" in _status(env)["terminal_ttl_source"]
    assert runner.invoke(app, SIMULATE).exit_code == 0
    ended, _ = _ttls(env)
    assert ended and all(29 * DAY_MS < t <= 30 * DAY_MS for t in ended)


def test_environment_and_off(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_TERMINAL_TTL", "1d")
    assert _status(env)["terminal_ttl_source"] == "FLOWKIT_TERMINAL_TTL"
    assert runner.invoke(app, ["worker", "examples/flows", "--once", "--no-send", "--format", "json"]).exit_code == 0
    assert _status(env)["terminal_ttl"] == "1d"
    assert runner.invoke(app, SIMULATE).exit_code == 0
    ended, _ = _ttls(env)
    assert ended and all(DAY_MS - 60_000 < t <= DAY_MS for t in ended)
    env.flushall()
    assert runner.invoke(app, [*SIMULATE, "--terminal-ttl", "off"]).exit_code == 0  # the option wins over the env
    ended, _ = _ttls(env)
    assert ended and all(t == -1 for t in ended)
    assert _status(env)["terminal_ttl"].startswith("off") and _status(env)["terminal_ttl_ms"] is None


@pytest.mark.parametrize(("args", "env_value", "says"), [
    (["--terminal-ttl", "soon"], None, "--terminal-ttl: bad duration 'soon'"),
    (["--terminal-ttl", "-5d"], None, "--terminal-ttl: bad duration"),
    ([], "forever", "FLOWKIT_TERMINAL_TTL: bad duration 'forever'"),
])
def test_bad_values_are_refused(env: Any, monkeypatch: pytest.MonkeyPatch, args: list[str], env_value: str | None,
                                says: str) -> None:
    if env_value is not None:
        monkeypatch.setenv("FLOWKIT_TERMINAL_TTL", env_value)
    r = runner.invoke(app, [*SIMULATE, *args])
    assert r.exit_code == 2 and says in r.stderr and "'off'" in r.stderr, r.stderr
    assert not list(Store(env).iter_session_ids())  # refused before anything ran


def test_a_revived_session_stops_expiring_even_without_retention(redis_client: Any) -> None:
    """Ended under a retention, then started again by a process that keeps ended sessions:
    it is live, so its keys must lose the TTL (else a running session would vanish)."""
    ended = advance(Store(redis_client, terminal_ttl_ms=3_600_000), "u1",
                    advance(Store(redis_client), "u1", None, "ask_size"), "done", status="completed")
    assert all(redis_client.pttl(k) > 0 for k in K.session_keys("u1").all if redis_client.exists(k))
    advance(Store(redis_client), "u1", ended, "ask_size")  # terminal_ttl_ms=None
    ttls = [redis_client.pttl(k) for k in K.session_keys("u1").all if redis_client.exists(k)]
    assert len(ttls) >= 2 and all(t == -1 for t in ttls), ttls
