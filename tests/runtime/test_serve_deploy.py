"""A running `flowkit serve` picks up a version another process deploys, through its async
store (runtime/resolve.py ``refresh_async``), and starts new sessions on it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from flowkit.channels.whatsapp import sign
from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.flow import flow_from_dict
from flowkit.runtime import FlowRegistry
from flowkit.store import Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.engine.helpers import FLOWS
from tests.runtime.webutil import SECRET, start_serve
from tests.waiting import stop

WHO = "31612345670"


def test_serve_starts_sessions_on_a_version_deployed_while_it_runs(redis_url: str, store: Store,
                                                                   tmp_path: Path) -> None:
    client = store.client
    log = tmp_path / "serve.log"
    with FakeGraphAPI() as graph:
        port = free_port()
        proc = start_serve(redis_url, graph, port, log)
        try:
            newer = flow_from_dict({**FLOWS["feedback"].to_dict(), "version": "2", "triggers": ["opinion"]})
            FlowRegistry(client=client).register(newer)  # a deploy from another process
            deadline, n = time.monotonic() + 60, 0
            while time.monotonic() < deadline:  # serve refreshes every few seconds: poll, never sleep a fixed time
                n += 1
                body = json.dumps(text_payload(WHO, "opinion", message_id=f"wamid.dep.{n}")).encode()
                r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, timeout=10, headers={
                    "content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)})
                assert r.status_code == 200, r.text
                state = store.load(WHO)
                if state is not None:
                    break
                time.sleep(0.25)
            assert state is not None, log.read_text()[-3000:]
            assert (state["flow"], state["flow_version"]) == ("feedback", "2")
            assert "flow versions not refreshed" not in log.read_text()
        finally:
            stop(proc)
