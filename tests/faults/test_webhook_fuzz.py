"""Hypothesis posts properly signed, hostile or half-broken WhatsApp deliveries to the real
app on a real Redis.

Every answer must be 200, 400 or 413 (Redis is up, so never a 503, never a 500), within
1 s. Afterwards no session is stuck (no call left waiting, every live session has a
wake-up scheduled, the outbox is empty), `flowkit check` finds every acknowledged message
stored exactly once and every state replayable, and `flowkit reconcile --check` finds the
derived indexes exact.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit.channels.whatsapp.payloads import (
    button_reply_payload,
    combine,
    list_reply_payload,
    location_payload,
    media_payload,
    message_payload,
    status_payload,
    text_payload,
)
from flowkit.check import SentLog, check_store
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime, FlowRegistry
from flowkit.store import AsyncStore, Store, connect_async
from flowkit.store import keys as K
from flowkit.web import create_app
from tests.faults.util import run_cli
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, TOKEN

SENDERS = ["31611110001", "31611110002", "31611110003", "+31611110004"]
WORDS = ["pizza", "large", "small", "yes", "no", "2", "12 Main Street", "refund", "AB1234", "10", "support",
         "delivery", "appointment", "dental", "2026-12-03", "11:00", "ana@example.com", "cancel", "back", "help",
         "restart", "0", "-1", "999999999999999999999", "{{ slots }}", "'; DROP TABLE", "\u202e\u0000"]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=40))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=20)


@st.composite
def one_payload(draw: st.DrawFn) -> dict[str, Any]:
    wa = draw(st.sampled_from(SENDERS))
    mid = f"wamid.F{draw(st.integers(0, 10**9)):09d}"  # redeliveries: see delivery()
    text = draw(st.sampled_from(WORDS)) if draw(st.sampled_from([True] * 3 + [False])) else draw(st.text(max_size=300))
    kind = draw(st.sampled_from(["text"] * 6 + ["button", "list", "location", "media", "other", "status"]))
    if kind == "text":
        return text_payload(wa, text, message_id=mid)
    if kind == "button":
        return button_reply_payload(wa, draw(st.text(max_size=30)), text[:20], message_id=mid)
    if kind == "list":
        return list_reply_payload(wa, draw(st.text(max_size=30)), text[:24], message_id=mid)
    if kind == "location":
        lat = draw(st.floats(-90, 90, allow_nan=False))
        lon = draw(st.floats(-180, 180, allow_nan=False))
        return location_payload(wa, lat, lon, message_id=mid)
    if kind == "media":
        return media_payload(wa, draw(st.text(min_size=1, max_size=20)),
                             kind=draw(st.sampled_from(["image", "audio", "video", "document", "sticker"])),
                             message_id=mid)
    if kind == "status":
        return status_payload(mid, wa, draw(st.sampled_from(["sent", "delivered", "read", "failed", "weird"])))
    return message_payload(wa, draw(st.text(max_size=12)), draw(st.dictionaries(st.text(max_size=10), json_value, max_size=4)),
                           message_id=mid)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, payload: dict[str, Any]) -> Any:
    """The delivery with 0-3 random edits: a key dropped, a value replaced, a list emptied."""
    doc: Any = copy.deepcopy(payload)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(json_value)
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        what = draw(st.sampled_from(["drop", "replace"]))
        if what == "drop" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_value)
    return doc


@st.composite
def delivery(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """Body bytes, and the (sender, message id) pairs of its messages before any edit."""
    payloads = draw(st.lists(one_payload(), min_size=1, max_size=3))
    if draw(st.sampled_from([False] * 4 + [True])):
        payloads.append(payloads[0])  # the same message twice, as a redelivery batched with others
    body = combine(*payloads)
    if draw(st.sampled_from([False] * 4 + [True])):
        body = draw(mutated(body))
    raw = json.dumps(body).encode() if draw(st.sampled_from([True] * 15 + [False])) else draw(st.binary(max_size=200))
    intact = []
    for p in payloads:
        for m in p["entry"][0]["changes"][0]["value"].get("messages", []):
            intact.append((m["from"], m["id"]))
    return raw, intact


def test_fuzzed_deliveries_never_fail_the_server_or_the_store(redis_url: str, store: Store) -> None:
    runner = asyncio.Runner()
    acked: dict[str, set[str]] = {}
    slowest = [0.0]

    async def setup() -> tuple[AsyncRuntime, httpx.AsyncClient]:
        rt = AsyncRuntime(AsyncStore(connect_async(redis_url)), EXAMPLE_FLOWS, channel=AsyncRecordingChannel(),
                          services=EXAMPLE_SERVICES)
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET)
        return rt, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa")

    rt, client = runner.run(setup())

    @settings(max_examples=250, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def post(data: st.DataObject) -> None:
        raw, intact = data.draw(delivery())
        from flowkit.channels.whatsapp import sign

        headers = {"content-type": "application/json", "x-hub-signature-256": sign(raw, SECRET)}
        # CPU time of this process (the app runs in it): the bound is on flowkit's work, which
        # other processes on a busy machine cannot inflate (Redis's own time is not counted)
        t0 = time.process_time()
        r = runner.run(client.post("/webhook", content=raw, headers=headers))
        took = time.process_time() - t0
        slowest[0] = max(slowest[0], took)
        assert r.status_code in (200, 400, 413), (r.status_code, r.text, raw[:500])
        assert took < 1.0, f"a delivery took {took:.2f} s"
        if r.status_code == 200 and r.json()["applied"] == len(intact) == len(set(intact)):
            for wa, mid in intact:  # the webhook says each is stored
                acked.setdefault(wa, set()).add(mid)

    try:
        post()
        runner.run(rt.drain())
    finally:
        runner.run(client.aclose())
        runner.run(rt.store.client.aclose())
        runner.close()

    # nothing stuck: every call finished, every effect acknowledged, every live session will wake up
    for state in store.iter_sessions():
        assert state["status"] != "waiting_service", state
        if state["status"] in ("waiting_input", "active"):
            assert store.client.zscore(K.IDX_TIMEOUTS, state["session_id"]) is not None, state
    assert store.client.zcard(K.IDX_OUTBOX) == 0
    report = check_store(store, FlowRegistry(EXAMPLE_FLOWS.values()), sent=SentLog(acked=acked))
    assert report.ok, [str(v) for v in report.violations[:5]]
    assert sum(map(len, acked.values())) > 20  # the fuzz reached the flows, not only the parser
    out = run_cli(redis_url, "check", "examples/flows", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    out = run_cli(redis_url, "reconcile", "--check", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
