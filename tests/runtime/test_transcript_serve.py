"""End to end through `flowkit serve`, Redis and the Graph API imitation (issue #20, point 5):
the exported ``messages`` table is what the Graph API stand-in received, with the statuses
posted to serve as signed webhooks like WhatsApp does; reactions, edits and revokes (real
payloads from tests/data/whatsapp) are in it too, and `flowkit session transcript` reads it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from flowkit.channels.whatsapp import sign
from flowkit.channels.whatsapp.payloads import (
    DEFAULT_PHONE_NUMBER_ID,
    button_reply_payload,
    status_payload,
    text_payload,
)
from flowkit.history.columns import read_history
from flowkit.history.messages import read_messages
from flowkit.store import Store, connect
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import ROOT, SECRET, start_serve
from tests.waiting import DEADLINE, stop

DATA = Path(__file__).resolve().parents[1] / "data" / "whatsapp"
WHO = "31700000777"
T = 1_790_000_000  # status times (epoch s), distinct per status


def _sample(name: str, **fields: Any) -> dict[str, Any]:
    """A real WhatsApp payload (tests/data/whatsapp, see SOURCES.md) sent by WHO, with ``fields``
    set on its message's ``type`` object."""
    p = copy.deepcopy(json.loads((DATA / name).read_text()))
    value = p["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = DEFAULT_PHONE_NUMBER_ID  # addressed to this deployment
    for c in value.get("contacts", ()):
        c["wa_id"] = WHO
    m = value["messages"][0]
    m["from"], m["id"] = WHO, f"wamid.{name}.{time.monotonic_ns()}"
    m[m["type"]].update(fields)
    return p


def _until(cond: Callable[[], Any], what: str, log: Path, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _flowkit(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url)
    return subprocess.run([str(Path(sys.executable).with_name("flowkit")), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_exported_messages_are_what_graph_received_with_the_statuses_whatsapp_reported(
        redis_url: str, tmp_path: Path, fmt: str) -> None:
    client = connect(redis_url)
    client.flushall()
    store = Store(client)
    log = tmp_path / "serve.log"
    with FakeGraphAPI() as graph:
        proc = start_serve(redis_url, graph, free_port(), log)
        try:
            port = int(proc.args[proc.args.index("--port") + 1])  # type: ignore[union-attr, arg-type]
            url = f"http://127.0.0.1:{port}/webhook"

            def post(payload: Any) -> None:
                body = json.dumps(payload).encode()
                r = httpx.post(url, content=body, timeout=10, headers={
                    "content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)})
                assert r.status_code == 200, r.text

            post(text_payload(WHO, "pizza", message_id="wamid.in.pizza"))
            _until(lambda: len(graph.to(WHO)) >= 2, "the welcome and the size question", log)
            post(button_reply_payload(WHO, "large", "Large", message_id="wamid.in.large"))
            sent = _until(lambda: graph.to(WHO) if len(graph.to(WHO)) >= 3 else None, "the upsell", log)
            # statuses name wamids serve has mapped to the session (written beside its next round trip)
            _until(lambda: all(store.lookup_wamid(m.id) for m in sent), "the wamid map", log)
            reported: dict[str, list[tuple[str, int]]] = {
                sent[0].id: [("sent", T + 1), ("delivered", T + 2), ("read", T + 3)],
                sent[1].id: [("sent", T + 4), ("delivered", T + 5)],
                sent[2].id: [("failed", T + 6)],
            }
            for wamid, statuses in reported.items():
                for status, ts in statuses:
                    post(status_payload(wamid, WHO, status, timestamp=ts))
            post(_sample("pywa__message__reaction.json", message_id=sent[0].id, emoji="👍"))
            post(_sample("pywa__edited_message__image.json", original_message_id="wamid.in.pizza"))
            post(_sample("pywa__deleted_message__revoke.json", original_message_id="wamid.in.large"))
            # the failure routes the session on (on_undeliverable or not): wait until it is recorded
            _until(lambda: any(h["event"] == "delivery_failed" for h in store.history(WHO)), "the failure", log)
            sent = graph.to(WHO)
            _until(lambda: sum(m["dir"] == "out" for m in store.transcript(WHO)) == len(sent)
                   and sum(m["dir"] == "in" for m in store.transcript(WHO)) == 5, "the whole transcript", log)
        finally:
            stop(proc)
        out = tmp_path / "export"
        r = _flowkit("export", str(out), "--format", fmt, "-q", redis_url=redis_url)
        assert r.returncode == 0, r.stderr
        chat = _flowkit("session", "transcript", WHO, redis_url=redis_url)
        assert chat.returncode == 0, chat.stderr
    client.close()

    msgs = read_messages(out)
    msgs = msgs[msgs.session_id == WHO].reset_index(drop=True)
    outbound = msgs[msgs.direction == "out"].reset_index(drop=True)
    # exactly what the Graph API stand-in received, in order
    assert outbound.wamid.tolist() == [m.id for m in sent]
    assert outbound.text.tolist() == [m.text for m in sent]
    assert (outbound.actor == "bot").all()
    for row in outbound.itertuples():
        got = reported.get(row.wamid, [])
        assert ([] if pd.isna(row.status) else [row.status]) == ([got[-1][0]] if got else [])
        for status, ts in got:
            assert getattr(row, f"{status}_ts") == pd.Timestamp(ts, unit="s", tz="UTC")
    assert outbound.error[2] == "whatsapp:131026"
    inbound = msgs[msgs.direction == "in"].reset_index(drop=True)
    assert inbound.kind.tolist() == ["text", "button_reply", "reaction", "edit", "revoke"]
    assert inbound.text.tolist()[:4] == ["pizza", "Large", "👍", "Updated image caption"]
    refers = [json.loads(p).get("refers_to") for p in inbound.payload]
    assert refers[2:] == [sent[0].id, "wamid.in.pizza", "wamid.in.large"]
    # each answer is linked to the version it produced; the non-answers produced none
    history = read_history(out)
    versions = dict(zip(history[history.session_id == WHO].message_id, history[history.session_id == WHO].version,
                        strict=True))
    assert inbound.version.tolist()[:2] == [versions["wamid.in.pizza"], versions["wamid.in.large"]]
    assert inbound.version[2:].isna().all()
    # and the chat reads like one
    lines = chat.stdout.splitlines()
    assert lines[0] == f"session {WHO}: {len(msgs)} messages"
    assert any("✓✓ read" in line for line in lines) and any("✗ failed (whatsapp:131026)" in line for line in lines)
    assert any("reacted 👍" in line for line in lines)
