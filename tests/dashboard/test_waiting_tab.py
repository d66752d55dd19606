"""The dashboard's "Waiting for a person" tab on a real Redis, in Streamlit's AppTest: the
sessions held by people with their wait, and a plain sentence when nobody waits."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from flowkit.engine import UserMessage
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store
from tests.dashboard.browser import ROOT
from tests.dashboard.conftest import registered
from tests.runtime.conftest import EXAMPLE_FLOWS

APP = str(ROOT / "dashboards" / "app.py")


def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_tab_lists_who_waits_for_a_person(store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel())
    for sid in ("u-held-1", "u-held-2"):
        for i, text in enumerate(["support", "other", "5"]):
            rt.handle(sid, UserMessage(text=text, message_id=f"{sid}-{i}"))
    rt.handle("u-held-2", UserMessage(text="hello? anyone?", message_id="u-held-2-9"))
    rt.handle("u-bot", UserMessage(text="support", message_id="b1"))  # talking to the bot: not in the queue
    registered(store.client)
    at = app(redis_url, monkeypatch)
    frames = [d.value for d in at.dataframe if "session_id" in getattr(d.value, "columns", ())]
    [queue] = [f for f in frames if "waiting_min" in f.columns]
    assert sorted(queue["session_id"]) == ["u-held-1", "u-held-2"]
    assert set(queue["flow"]) == {"support_triage"} and "hello? anyone?" in set(queue["last_message"])
    assert any("2 in hand-off" in c.value for c in at.caption)
    rt.release("u-held-1", None)
    rt.release("u-held-2", "ask_details")
    at = app(redis_url, monkeypatch)
    assert any(s.value == "Nobody is waiting for a person." for s in at.success)
