"""kill -9 of a running `flowkit serve` mid-stream: redelivery and recovery complete every session.

Users talk like people: each sends its next message only after the previous one was
acknowledged with a 200. A request that fails (the process died) is redelivered later
with the same WhatsApp message id, as WhatsApp does. After a restart and one recovery
round, every conversation has completed, every message is in the history exactly once,
and every user got the final confirmation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.check import check_store
from flowkit.runtime import FlowRegistry
from flowkit.store import Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import EXAMPLE_FLOWS, ROOT
from tests.runtime.webutil import signed, start_serve
from tests.waiting import stop, wait_for

PIZZA = ["pizza", "medium", "2", "12 Main Street"]
USERS = 24


@pytest.mark.timeout(1200)  # two serve starts, 96 deliveries and a recover run: over 2 min under load
def test_kill_9_mid_stream_loses_nothing(redis_url: str, store: Store, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    acked = 0
    lock = threading.Lock()
    failures = 0

    def user(i: int) -> None:
        nonlocal acked, failures
        wa = f"3168{i:07d}"
        for n, text in enumerate(PIZZA):
            body, headers = signed(text_payload(wa, text, message_id=f"wamid.{wa}.{n}"))
            while True:  # WhatsApp redelivers until it gets a 200
                try:
                    r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=30)
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    with lock:
                        failures += 1
                time.sleep(0.05)  # WhatsApp's redelivery comes later, not in a tight loop
            with lock:
                acked += 1
            time.sleep(0.01)  # a person reads the answer before typing the next message

    with FakeGraphAPI() as graph:
        proc = start_serve(redis_url, graph, port, log)
        threads = [threading.Thread(target=user, args=(i,)) for i in range(USERS)]
        for t in threads:
            t.start()
        wait_for(lambda: acked >= USERS * len(PIZZA) // 3, "a third of the messages to be acknowledged", every=0.005)
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hooks, no flushing: a real crash
        proc.wait()
        killed_at = acked
        wait_for(lambda: failures > 0, "a delivery to fail while serve is down")  # the crash interrupts traffic
        proc = start_serve(redis_url, graph, port, log)
        try:
            deadline = time.monotonic() + 240  # bounds a failure; the users finish as soon as they can
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            assert all(not t.is_alive() for t in threads)
        finally:
            stop(proc)
        assert failures > 0 and killed_at < USERS * len(PIZZA)  # the crash really interrupted traffic
        # one recovery round finishes service calls and replies the crash cut short
        env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url, **graph.env())
        flowkit = Path(sys.executable).with_name("flowkit")
        out = subprocess.run([str(flowkit), "recover", "examples/flows", "--services", "examples.services:services",
                              "--outbox-age", "0", "--format", "json"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for i in range(USERS):
            wa = f"3168{i:07d}"
            state = store.load(wa)
            assert state is not None and state["status"] == "completed", (wa, state)
            ids = [r["message_id"] for r in store.history(wa) if r["event"] != "service_result"]
            assert ids == [f"wamid.{wa}.{n}" for n in range(len(PIZZA))]  # each exactly once, in order
            texts = [m.payload.get("text", {}).get("body", "") for m in graph.to(wa)]
            assert any(t.startswith("Order ORD-") for t in texts), texts
    report = check_store(store, FlowRegistry(EXAMPLE_FLOWS.values()))
    assert report.ok, report.violations[:5]
