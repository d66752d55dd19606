"""flowkit's logs as an operator sees them: a real `flowkit serve` writes one JSON line per
handled message (session, flow, version, message id, outcome, conflicts, latency), rejections
and send failures say why (with the Graph error code), ``--log-format text`` / the level are
honoured, and no secret reaches a line."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from flowkit import log as fklog
from flowkit.channels.whatsapp.payloads import status_payload, text_payload
from flowkit.cli import app
from flowkit.errors import ConfigError, GraphAPIError
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import SECRET, signed, start_serve
from tests.waiting import DEADLINE, stop

runner = CliRunner()


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in _lines(path):
        out.append(json.loads(line))  # every line must parse: the log is JSON lines, nothing else
    return out


def _wait_for(path: Path, pred: Callable[[list[str]], bool], what: str, timeout: float = DEADLINE) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _lines(path) if path.exists() else []
        if pred(lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no {what} in the log within {timeout}s:\n{path.read_text()[-3000:]}")


def _post(port: int, payload: Any, secret: str = SECRET) -> httpx.Response:
    body, headers = signed(payload, secret)
    return httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=10)


@pytest.fixture
def serving(redis_url: str, redis_client: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[int, Path, FakeGraphAPI]]]:
    """``serve(**env)`` -> (port, log file, Graph imitation) of a real `flowkit serve` subprocess."""
    procs = []
    with FakeGraphAPI() as graph:
        def serve(**env: str) -> tuple[int, Path, FakeGraphAPI]:
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            port, log = free_port(), tmp_path / f"serve{len(procs)}.log"
            procs.append(start_serve(redis_url, graph, port, log, "--scheduler", "0"))
            return port, log, graph

        try:
            yield serve
        finally:
            for p in procs:
                stop(p)


def test_serve_logs_one_json_line_per_handled_message(serving: Any) -> None:
    port, log, graph = serving()
    msgs = [("31600000001", "pizza", "wamid.L1"), ("31600000001", "large", "wamid.L2"),
            ("31600000002", "pizza", "wamid.L3"), ("31600000001", "large", "wamid.L2")]  # the last one: redelivered
    for wa, text, mid in msgs:
        assert _post(port, text_payload(wa, text, message_id=mid)).status_code == 200
    lines = _wait_for(log, lambda ls: sum('"event handled"' in x for x in ls) >= 4, "4 handled messages")
    started = next(r for r in _records(log) if r["msg"] == "serve started")
    assert started["flows"]["order_pizza"] == "3" and started["terminal_ttl"] == "30d" and started["port"] == port
    assert started["redis"].startswith("redis://127.0.0.1:")
    handled = [r for r in _records(log) if r["msg"] == "event handled"]
    assert [(r["session_id"], r["message_id"], r["outcome"]) for r in handled] == [
        ("31600000001", "wamid.L1", "applied"), ("31600000001", "wamid.L2", "applied"),
        ("31600000002", "wamid.L3", "applied"), ("31600000001", "wamid.L2", "duplicate")]
    first = handled[0]
    assert first["level"] == "info" and first["logger"] == "flowkit.runtime"
    assert first["flow"] == "order_pizza" and first["flow_version"] and first["version"] == 1
    assert first["conflicts"] == 0 and isinstance(first["latency_ms"], float) and first["latency_ms"] > 0
    assert first["ts"].endswith("Z")
    assert handled[1]["version"] == 2 and handled[3]["version"] == 2  # the duplicate names the version that applied it
    text = "\n".join(lines)
    assert graph.token not in text and SECRET not in text
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # not HTTP: uvicorn warns
        raw.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        raw.recv(1024)
    _wait_for(log, lambda ls: any("uvicorn" in x for x in ls), "uvicorn's warning")
    server = next(r for r in _records(log) if r["logger"].startswith("uvicorn"))  # JSON like the rest
    assert server["level"] == "warning" and "invalid http request" in server["msg"].lower()


def test_rejections_and_send_failures_say_why(serving: Any) -> None:
    port, log, graph = serving()
    assert _post(port, text_payload("31600000003", "pizza"), secret="wrong").status_code == 403
    graph.fail_next(1, 400, code=131047, message="Re-engagement message")  # 24h window closed: not retried
    assert _post(port, text_payload("31600000003", "pizza", message_id="wamid.F1")).status_code == 200
    assert _post(port, status_payload("wamid.OUT1", "31600000003", "failed")).status_code == 200
    _wait_for(log, lambda ls: any("reply send failed" in x for x in ls) and any("delivery failed" in x for x in ls),
              "send and delivery failures")
    records = _records(log)
    undelivered = next(r for r in records if r["msg"] == "reply delivery failed")  # a status for a reply
    assert undelivered["session_id"] == "31600000003" and undelivered["wa_message_id"] == "wamid.OUT1"
    assert undelivered["graph_code"] == 131026 and "undeliverable" in undelivered["reason"].lower()
    rejected = next(r for r in records if r["msg"] == "webhook rejected")
    assert rejected["level"] == "warning" and rejected["status"] == 403 and rejected["reason"] == "bad_signature"
    failed = next(r for r in records if r["msg"].startswith("reply send failed"))
    assert failed["session_id"] == "31600000003" and failed["error_type"] == "GraphAPIError"
    assert failed["http_status"] == 400 and failed["graph_code"] == 131047 and failed["retryable"] is False
    assert "24 hours" in failed["error"]  # the hint for the operator travels with it


def test_text_format_and_level_from_the_environment(serving: Any) -> None:
    port, log, _ = serving(FLOWKIT_LOG_FORMAT="text", FLOWKIT_LOG_LEVEL="warning")
    assert _post(port, text_payload("31600000004", "pizza", message_id="wamid.T1")).status_code == 200
    assert _post(port, text_payload("31600000004", "large"), secret="wrong").status_code == 403
    lines = _wait_for(log, lambda ls: any("webhook rejected" in x for x in ls), "rejection")
    line = next(x for x in lines if "webhook rejected" in x)
    assert "WARNING flowkit.web: webhook rejected" in line and "status=403" in line and "reason=bad_signature" in line
    with pytest.raises(ValueError):
        json.loads(line)  # for people, not collectors
    assert not any("event handled" in x for x in lines)  # INFO is below the level: the message was handled silently


def test_cli_options_choose_format_and_level(redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    args = ["simulate", "examples/flows", "--users", "3", "--seed", "7", "--format", "json"]
    r = runner.invoke(app, ["--log-format", "text", *args])
    assert r.exit_code == 0, r.stderr
    handled = [x for x in r.stderr.splitlines() if "flowkit.runtime: event handled" in x]
    assert handled and all(" INFO " in x and "session_id=" in x and "outcome=" in x for x in handled)
    json.loads(r.stdout)  # the report on stdout stays clean
    redis_client.flushall()
    r = runner.invoke(app, ["--log-level", "WARNING", *args])
    assert r.exit_code == 0 and "event handled" not in r.stderr
    r = runner.invoke(app, ["--log-level", "loud", *args])
    assert r.exit_code == 2 and "log level 'loud'" in r.stderr and "FLOWKIT_LOG_LEVEL" in r.stderr


def test_cli_restores_the_callers_logging(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    flowkit_logger = logging.getLogger("flowkit")
    before = (list(flowkit_logger.handlers), flowkit_logger.level, flowkit_logger.propagate)
    assert runner.invoke(app, ["--log-level", "error", "lint", "examples/flows"]).exit_code == 0
    assert (list(flowkit_logger.handlers), flowkit_logger.level, flowkit_logger.propagate) == before


def _emit(fmt: str, msg: str, **extra: Any) -> str:
    out = io.StringIO()
    restore = fklog.configure("DEBUG", stream=out, fmt=fmt)
    try:
        fklog.get_logger("flowkit.test").warning(msg, extra=extra)
    finally:
        restore()
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_never_reach_a_line(fmt: str) -> None:
    line = _emit(fmt, "cannot reach redis://app:s3cr3t-pw@db:6379/0",
                 error="Error connecting to rediss://:hunter2@cache.internal:6380",
                 request="GET /v20.0/me?access_token=EAAG123&fields=id", header="Authorization: Bearer EAAGtoken42",
                 whatsapp_token="EAAGxyz", app_secret="abc")
    for secret in ("s3cr3t-pw", "hunter2", "EAAG123", "EAAGtoken42", "EAAGxyz", "abc\""):
        assert secret not in line, (secret, line)
    assert "redis://app:***@db:6379/0" in line and "cache.internal:6380" in line


def test_json_line_keeps_every_field() -> None:
    record = json.loads(_emit("json", "hello", session_id="s1", version=3, latency_ms=1.5, conflicts=0))
    assert record | {"ts": None} == {"ts": None, "level": "warning", "logger": "flowkit.test", "msg": "hello",
                                     "pid": os.getpid(), "session_id": "s1", "version": 3, "latency_ms": 1.5,
                                     "conflicts": 0}


def test_error_fields_carry_the_graph_error() -> None:
    exc = GraphAPIError("WhatsApp send_text failed (HTTP 429, code 130429)", status=429, code=130429, subcode=None,
                        fbtrace_id="Ab12", retryable=True, attempts=4)
    assert fklog.error_fields(exc) == {"error_type": "GraphAPIError", "error": str(exc), "http_status": 429,
                                       "graph_code": 130429, "fbtrace_id": "Ab12", "retryable": True, "attempts": 4}
    assert fklog.url_origin("https://hooks.slack.com/services/T0/B0/XYZ?x=1") == "https://hooks.slack.com"
    assert fklog.url_origin("https://user:pw@pager.example:8443/hook") == "https://pager.example:8443"


def test_bad_level_and_format_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="FLOWKIT_LOG_LEVEL"):
        fklog.parse_level("verbose")
    with pytest.raises(ConfigError, match="--log-format"):
        fklog.configure("info", fmt="xml")
    assert fklog.parse_level("Debug") == logging.DEBUG
    assert os.environ.get("FLOWKIT_LOG_LEVEL") is None  # nothing above leaked into the environment


def test_the_dashboard_app_logs_like_the_command_that_started_it(redis_url: str, redis_client: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`flowkit dashboard` hands its format and level to the Streamlit app through the
    environment (``log.current()``); the app configures flowkit's logging from it."""
    from streamlit.testing.v1 import AppTest

    restore = fklog.configure("warning", fmt="text")
    try:
        handed = fklog.current()
    finally:
        restore()
    assert handed == {"FLOWKIT_LOG_FORMAT": "text", "FLOWKIT_LOG_LEVEL": "warning"}
    assert fklog.current() == {}
    flowkit_logger = logging.getLogger("flowkit")
    saved = (list(flowkit_logger.handlers), flowkit_logger.level, flowkit_logger.propagate)
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    for k, v in handed.items():
        monkeypatch.setenv(k, v)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py"), default_timeout=60)
        at.run()
        assert not at.exception
        assert flowkit_logger.level == logging.WARNING
        assert [type(h.formatter) for h in flowkit_logger.handlers] == [fklog.TextFormatter]
    finally:
        flowkit_logger.handlers[:], flowkit_logger.level, flowkit_logger.propagate = saved


def test_quiet_recovery_rounds_stay_out_of_info(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """`flowkit worker` runs a round a second: only rounds that repaired something are INFO."""
    from flowkit.engine import UserMessage
    from flowkit.runtime import RecordingChannel, Runtime
    from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock

    clock = Clock()
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="flowkit.runtime"):
        rt.recover()
        rt.handle("u1", UserMessage(text="pizza", message_id="m1"))
        clock.advance(3 * 3600)  # past the flow's 30 min timeout
        rt.recover(now=clock())
    rounds = [(r.levelno, r.timeouts_fired) for r in caplog.records if r.msg == "recovery round"]  # type: ignore[attr-defined]
    assert rounds == [(logging.DEBUG, 0), (logging.INFO, 1)]


def test_worker_says_what_it_runs(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.runtime.conftest import ROOT

    log = tmp_path / "worker.log"
    env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url, FLOWKIT_TERMINAL_TTL="7d")
    with log.open("ab") as sink:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("flowkit")), "worker", "examples/flows",
                                 "--no-send", "--interval", "0.2"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for(log, lambda ls: any("worker started" in x for x in ls), "worker start line")
    finally:
        stop(proc)
    started = next(r for r in _records(log) if r["msg"] == "worker started")
    assert started["terminal_ttl"] == "7d" and started["interval_s"] == 0.2 and len(started["flows"]) == 6
