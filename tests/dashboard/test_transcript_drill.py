"""The dashboard's session drill-down shows the chat both ways and why each record went where it went."""

from __future__ import annotations

import json

import pytest

from flowkit import dashboard as D
from flowkit.history.chat import chat_text
from tests.dashboard.conftest import Traffic, registered
from tests.dashboard.test_app import app


def test_session_detail_has_the_transcript_and_why(traffic: Traffic) -> None:
    d = D.session_detail(traffic.store, "stuck-2")
    assert d is not None
    assert d["transcript"] == traffic.store.transcript("stuck-2")
    assert [m["dir"] for m in d["transcript"]][:2] == ["in", "out"] and d["transcript"][0]["actor"] == "user"
    explained = [json.loads(w) for w in d["history"]["why"] if isinstance(w, str)]
    assert explained and all(set(w) <= {"branches", "invalid", "service"} for w in explained)


def test_the_drill_down_shows_the_chat(traffic: Traffic, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    registered(traffic.store.client)
    at = app(monkeypatch, redis_url)
    at.selectbox(key="pick_sid").set_value("stuck-2").run()
    assert not at.exception
    chat = chat_text(traffic.store.transcript("stuck-2"))
    assert any(c.value == chat for c in at.code)
    assert any("Transcript" in m.value for m in at.markdown)


def test_delivery_and_read_rates_from_whatsapps_statuses(traffic: Traffic, redis_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from flowkit.metrics import RedisMetrics, totals

    metrics = RedisMetrics(traffic.store.client, autoflush=False)
    for status, n in (("sent", 10), ("delivered", 8), ("read", 5), ("played", 1), ("failed", 1)):
        for _ in range(n):
            metrics.delivery_status(status)  # what the webhook counts for every status it receives
    metrics.flush()
    got = D.delivery_summary(totals(traffic.store.client))
    assert (got["sent"], got["delivered_rate"], got["read_rate"], got["failed_rate"]) == (10, 0.8, 0.6, 0.1)
    assert D.delivery_summary({})["read_rate"] is None  # no statuses yet: no rate, not 0%
    registered(traffic.store.client)
    at = app(monkeypatch, redis_url)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Delivered"] == "80%" and shown["Read"] == "60%" and shown["Replies sent (WhatsApp)"] == "10"
