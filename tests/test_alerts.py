"""Alert rules evaluated on crafted metric series in a real Redis; changes logged, stored and POSTed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowkit.alerts import AlertManager, active, evaluate, history, load_rules, prometheus_rules
from flowkit.errors import ConfigError
from flowkit.metrics import RedisMetrics
from flowkit.store import keys as K
from tests.runtime.conftest import ROOT, Clock

T0 = 1_790_000_000_000 // 60_000 * 60_000  # a minute boundary


class Hook:
    """A local HTTP endpoint that records what an alert webhook receives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                hook.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def series(client: Any, clock: Clock, per_minute: list[dict[tuple[str, ...], float]]) -> None:
    """Write one dict of counter increments per minute, starting at T0."""
    for i, counts in enumerate(per_minute):
        clock.now = T0 + i * 60_000 + 1000
        m = RedisMetrics(client, clock=clock, flush_every=3600)
        for (name, *labels), n in counts.items():
            m.inc(name, *labels, n=n)
        m.flush()


RULES = """
rules:
  - name: service_errors
    signal: service_error_rate
    threshold: "> 0.2"
    window: 5m
    min_events: 10
    severity: critical
    summary: "{service} fails {value:.0%} of calls"
  - name: conflicts_rising
    signal: conflicts
    change: "> 5"
    window: 2m
  - name: stuck_growing
    signal: stuck_sessions
    stuck_after: 30m
    change: "> 2"
    window: 10m
  - name: redis_unreachable
    signal: redis_unreachable
    threshold: "> 0"
"""


def test_threshold_on_a_ratio_fires_per_label_and_resolves(redis_client: Any, clock: Clock, hook: Hook) -> None:
    rules, _ = load_rules(RULES)
    calls = [{("service_calls", "pay"): 20, ("service_errors", "pay"): 1, ("service_calls", "crm"): 1,
              ("service_errors", "crm"): 1}] * 5
    series(redis_client, clock, calls)
    mgr = AlertManager(redis_client, rules, webhook_url=hook.url)
    assert mgr.run(T0 + 5 * 60_000).fired == []  # pay at 5%; crm fails always but below min_events
    bad = [{("service_calls", "pay"): 20, ("service_errors", "pay"): 10}] * 5
    series(redis_client, clock, calls + bad)
    res = mgr.run(T0 + 10 * 60_000)
    [alert] = res.fired
    assert (alert.name, alert.labels, alert.severity) == ("service_errors", {"service": "pay"}, "critical")
    assert alert.message == "pay fails 50% of calls" and alert.since_ms == T0 + 10 * 60_000
    assert mgr.run(T0 + 11 * 60_000).fired == []  # still firing: not fired again
    assert [a.name for a in active(redis_client)] == ["service_errors"]
    series(redis_client, clock, calls + bad + [{("service_calls", "pay"): 100}] * 6)
    res = mgr.run(T0 + 16 * 60_000)
    assert [a.name for a in res.resolved] == ["service_errors"] and active(redis_client) == []
    assert [h["event"] for h in history(redis_client)] == ["resolved", "fired"]
    assert history(redis_client)[0]["ended_ms"] == T0 + 16 * 60_000
    assert [r["event"] for r in hook.received] == ["fired", "resolved"]
    assert hook.received[0]["labels"] == {"service": "pay"}


def test_rate_of_change_on_a_counter(redis_client: Any, clock: Clock) -> None:
    rules, _ = load_rules(RULES)
    rule = next(r for r in rules if r.name == "conflicts_rising")
    series(redis_client, clock, [{("conflicts",): 2}] * 4 + [{("conflicts",): 6}] * 2)
    # last 2 minutes: 12 conflicts; the 2 before: 4 -> a change of 8
    [(r, labels, value)] = evaluate(redis_client, [rule], T0 + 6 * 60_000)
    assert (r.name, labels, value) == ("conflicts_rising", {}, 8)
    assert evaluate(redis_client, [rule], T0 + 4 * 60_000) == []  # flat: 4 vs 4


def test_rate_of_change_on_a_gauge_uses_stored_samples(redis_client: Any) -> None:
    rules, _ = load_rules(RULES)
    rule = next(r for r in rules if r.name == "stuck_growing")
    old = T0 - 3_600_000
    redis_client.zadd(K.IDX_ACTIVE, {"a": old, "b": old})
    assert evaluate(redis_client, [rule], T0) == []  # no sample from 10 minutes ago yet
    redis_client.zadd(K.IDX_ACTIVE, {f"s{i}": old for i in range(5)})
    [(_, _, change)] = evaluate(redis_client, [rule], T0 + 10 * 60_000)
    assert change == 5
    redis_client.zadd(K.IDX_ACTIVE, {"fresh": T0 + 10 * 60_000})  # recent activity is not stuck
    assert evaluate(redis_client, [rule], T0 + 20 * 60_000) == []


def test_redis_unreachable_is_alerted_without_redis(tmp_path: Path, hook: Hook) -> None:
    from flowkit.store import RedisServer, connect

    server = RedisServer(tmp_path / "r").start()
    port = server.port
    client = connect(server.url)
    rules, _ = load_rules(RULES)
    mgr = AlertManager(client, rules, webhook_url=hook.url)
    assert mgr.run(T0).fired == []
    server.stop()
    res = mgr.run(T0 + 60_000)
    assert [a.name for a in res.fired] == ["redis_unreachable"]
    assert mgr.run(T0 + 120_000).fired == []  # once
    server = RedisServer(tmp_path / "r", port=port).start()
    try:
        mgr.run(T0 + 180_000)
        assert [(r["alert"] if "alert" in r else r["name"], r["event"]) for r in hook.received] == [
            ("redis_unreachable", "fired"), ("redis_unreachable", "resolved")]
    finally:
        client.close()
        server.stop()


def test_a_failing_webhook_does_not_stop_evaluation(redis_client: Any, clock: Clock) -> None:
    rules, _ = load_rules(RULES)
    series(redis_client, clock, [{("conflicts",): 0}] * 2 + [{("conflicts",): 9}] * 2)
    mgr = AlertManager(redis_client, rules, webhook_url="http://127.0.0.1:9/nothing-listens")
    assert [a.name for a in mgr.run(T0 + 4 * 60_000).fired] == ["conflicts_rising"]


@pytest.mark.parametrize("text, message", [
    ("rules: nope", "a `rules:` list"),
    ("rules: [{name: a, signal: bogus, threshold: '> 1'}]", "unknown signal 'bogus'"),
    ("rules: [{name: a, signal: conflicts}]", "exactly one of `threshold` or `change`"),
    ("rules: [{name: a, signal: conflicts, threshold: 'over 9000'}]", "must look like"),
    ("rules: [{name: a, signal: conflicts, threshold: '> 1', window: soon}]", "rules[0] (a)"),
    ("rules: [{name: a, signal: conflicts, threshold: '> 1', colour: red}]", "unknown key(s) colour"),
    ("rules: [{name: a, signal: conflicts, threshold: '> 1', window: 30d}]", "at most 24h"),
    ("rules: [{name: a, signal: conflicts, threshold: '> 1'}, {name: a, signal: duplicates, threshold: '> 1'}]",
     "used twice"),
])
def test_bad_rule_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_rules(text)
    assert message in str(info.value)


def test_example_rules_and_their_prometheus_translation() -> None:
    rules, webhook = load_rules(ROOT / "examples" / "alerts.yaml")
    assert len(rules) == 6 and webhook is None
    doc = yaml.safe_load(prometheus_rules(rules))
    exported = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert "stuck_sessions_growing" not in exported  # flowkit-only signal, evaluated by the worker
    assert exported["service_errors"]["expr"].startswith(
        "(sum by (service)(increase(flowkit_total_service_errors_total[300s]))")
    assert exported["service_errors"]["annotations"]["summary"] == "{{ $labels.service }} fails {{ $value }} of calls"
    assert exported["outbox_backlog"]["labels"] == {"severity": "critical"}


def test_alerts_cli(redis_url: str, redis_client: Any, clock: Clock, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowkit.cli import app

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{name: dup, signal: duplicates, threshold: '> 3', window: 1h}]")
    runner = CliRunner()
    r = runner.invoke(app, ["alerts", "--rules", str(rules), "--redis", redis_url, "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["active"] == []
    clock.now = T0
    series(redis_client, clock, [{("duplicates",): 5}])
    redis_client.delete(*redis_client.keys("fk:m:*"))  # keep the totals' clock real: write at "now"
    clock.now = int(time.time() * 1000) - 120_000
    m = RedisMetrics(redis_client, clock=clock)
    m.inc("duplicates", n=5)
    m.flush()
    r = runner.invoke(app, ["alerts", "--rules", str(rules), "--redis", redis_url])
    assert r.exit_code == 1 and "FIRED    [warning] dup" in r.stdout
    out = tmp_path / "prom.yml"
    r = runner.invoke(app, ["alerts", "--rules", str(rules), "--prometheus-rules", str(out)])
    assert r.exit_code == 0 and yaml.safe_load(out.read_text())["groups"][0]["rules"][0]["alert"] == "dup"
    rules.write_text("rules: [{name: dup}]")
    r = runner.invoke(app, ["alerts", "--rules", str(rules), "--redis", redis_url])
    assert r.exit_code == 2 and "signal" in r.stderr
