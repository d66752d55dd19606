"""kill -9 of `flowkit serve` in the middle of a slow service call.

The step's deadline (3 s here, 10 s in order_pizza) passes long before recovery's outbox
age (30 s), and recovery used to fire due timeouts before redelivering the outbox: the
order failed although the call could simply be run again with its idempotency key. Now
a due session whose call was cut short gets the call re-run (same key) first.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.store import Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.faults.util import run_cli, status, stop, wait_for
from tests.runtime.webutil import signed, spawn_serve

FLOWS = "tests/faults/flows"
SERVICES = "tests.faults.slow_services:services"


@pytest.mark.parametrize("repair", ["worker", "serve"])
def test_a_call_cut_short_by_kill_9_is_rerun_with_its_key_not_timed_out(repair: str, redis_url: str, store: Store,
                                                                         tmp_path: Path) -> None:
    import httpx

    calls = tmp_path / "calls.log"
    calls.touch()
    port = free_port()
    wa = "31600000090"
    with FakeGraphAPI() as graph:
        proc = spawn_serve(redis_url, graph, port, tmp_path / "serve.log", flows=FLOWS, services=SERVICES,
                           env={"FK_CALL_LOG": str(calls), "FK_SLOW_SERVICE": "1"})
        try:
            wait_for(lambda: status(port, "/readyz") == 200 or proc.poll() is not None, "serve to be ready")
            body, headers = signed(text_payload(wa, "order", message_id="wamid.C1"))
            r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=5)
            assert r.status_code == 200, r.text
            wait_for(lambda: calls.read_text().strip(), "the service call to start")
            os.kill(proc.pid, signal.SIGKILL)  # mid-call: no result, no acknowledgement
            proc.wait()
        finally:
            stop(proc)
    state = store.load(wa)
    assert state is not None and state["status"] == "waiting_service", state
    deadline = state["pending"]["deadline"]
    wait_for(lambda: time.time() * 1000 > deadline + 100, "the step's deadline to pass", timeout=30)

    env = {"FK_CALL_LOG": str(calls)}
    if repair == "worker":  # `flowkit worker --once` (recovery's outbox age is 30 s: not reached)
        out = run_cli(redis_url, "worker", "--once", "--no-send", FLOWS, "--services", SERVICES, "--format", "json",
                      env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1])["timeouts_fired"] >= 1
    else:  # the restarted serve's own scheduler finds the due session
        with FakeGraphAPI() as graph:
            proc = spawn_serve(redis_url, graph, port, tmp_path / "serve.log", flows=FLOWS, services=SERVICES, env=env)
            try:
                wait_for(lambda: (store.load(wa) or {}).get("status") in ("completed", "failed"), "the session to end")
                wait_for(lambda: graph.to(wa), "the confirmation")
                assert graph.to(wa)[-1].payload["text"]["body"].startswith("Order ORD-")
            finally:
                stop(proc)

    state = store.load(wa)
    assert state is not None and state["status"] == "completed", (state, store.history(wa))
    (pid1, key1), (pid2, key2) = (line.split() for line in calls.read_text().splitlines())
    assert key1 == key2 and pid1 != pid2  # the same call, run again by the worker with the same key
    assert state["slots"]["order_id"].startswith("ORD-")
    assert [r["event"] for r in store.history(wa)] == ["start", "service_result"]
    check = run_cli(redis_url, "check", FLOWS, "--format", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    reconcile = run_cli(redis_url, "reconcile", "--check", "--format", "json")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
