"""dashboards/app.py through Streamlit's AppTest, on a real Redis."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flowkit.store import Store
from tests.dashboard.conftest import Traffic, registered

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def app(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


def test_with_data_headline_flows_and_stuck_sessions(traffic: Traffic, redis_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    registered(traffic.store.client)
    at = app(monkeypatch, redis_url)
    assert metric(at, "Live sessions") == "5" and metric(at, "Stuck") == "2"
    assert metric(at, "Sessions stored") == "9" and metric(at, "Completion rate") == "50%"
    assert not at.error and not [i for i in at.info if "No data yet" in i.value]
    assert at.selectbox(key="flow").options == sorted(["book_appointment", "collect_contact", "feedback", "order_pizza",
                                                       "refund", "support_triage"])
    assert len(at.get("graphviz_chart")) == 1
    assert at.selectbox(key="flow").value == "order_pizza"  # the busiest flow first
    assert "live 1 · dropped 1" in at.get("graphviz_chart")[0].proto.spec
    assert at.selectbox(key="pick_sid").options == ["stuck-1", "stuck-2"]
    at.selectbox(key="pick_sid").set_value("stuck-2").run()
    assert any("stuck-2" in m.value and "version 3" in m.value for m in at.markdown)
    assert at.json[0].value and '"ask_address"' in at.json[0].value


def test_rollback_needs_a_confirmation_then_writes_a_new_version(traffic: Traffic, redis_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store: Store = traffic.store
    at = app(monkeypatch, redis_url)
    at.selectbox(key="pick_sid").set_value("stuck-2").run()
    at.selectbox(key="rb_to_stuck-2").set_value(1).run()
    at.button(key="rollback").click().run()
    assert store.load("stuck-2")["version"] == 3  # asked, not done
    assert any("Roll back **stuck-2** from version 3 to version 1" in w.value for w in at.warning)
    at.button(key="rollback_cancel").click().run()
    assert store.load("stuck-2")["version"] == 3
    assert not [b for b in at.button if b.key == "rollback_confirm"]

    at.button(key="rollback").click().run()
    at.button(key="rollback_confirm").click().run()
    assert not at.exception
    state = store.load("stuck-2")
    assert state["version"] == 4 and state["step"] == store.state_at("stuck-2", 1)["step"]
    last = store.history("stuck-2")[-1]
    assert (last["event"], last["actor"]) == ("rollback", "admin")
    assert any("now version 4" in s.value for s in at.success)
    assert any("version 4" in m.value for m in at.markdown)  # the drill-down shows the new version at once


def test_empty_redis_says_no_data_yet(redis_client: object, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app(monkeypatch, redis_url)
    assert any("No data yet" in i.value for i in at.info)
    assert not at.metric and not at.error and not at.tabs


def test_unreachable_redis_says_so_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    at = app(monkeypatch, f"redis://127.0.0.1:{port}/0")
    assert any("Redis unreachable" in e.value and str(port) in e.value for e in at.error)
    assert not at.metric and not at.tabs
