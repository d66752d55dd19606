"""`flowkit session transcript SID` on a real Redis: the chat as a person reads it, and --format json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowkit.engine import UserMessage
from flowkit.history.chat import chat_lines
from flowkit.runtime import Runtime
from flowkit.store import Store, delivery
from tests.cli.test_store_cmds import bad_input, env, run  # noqa: F401 - fixtures
from tests.history.test_messages import WamidChannel
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES


def test_transcript_reads_like_a_chat(env: str, store: Store, clock: Any) -> None:  # noqa: F811
    rt = Runtime(store, EXAMPLE_FLOWS, channel=WamidChannel(), services=EXAMPLE_SERVICES, clock=clock)
    rt.handle("u1", UserMessage(text="pizza", message_id="wamid.in1"))
    rt.handle("u1", UserMessage(text="large", message_id="wamid.in2"))
    rt.drain()
    store.defer(delivery.status_commands("u1", {"wamid": "wamid.out2", "status": "read", "ts": clock() + 5_000}))
    store.defer(delivery.status_commands("u1", {"wamid": "wamid.out3", "status": "failed", "ts": clock() + 6_000,
                                                "error": "whatsapp:131026"}))
    store.flush()
    data = json.loads(run("session", "transcript", "u1", "--format", "json", code=0).stdout)
    assert data == store.transcript("u1")
    assert [(m["dir"], m["actor"]) for m in data][:3] == [("in", "user"), ("out", "bot"), ("out", "bot")]
    text = run("session", "transcript", "u1", code=0).stdout
    lines = text.splitlines()
    assert lines[0] == f"session u1: {len(data)} messages" and lines[1:] == chat_lines(data)
    assert "user  › pizza" in lines[1]
    assert any("bot   ‹ What size?" in line for line in lines)
    assert any(line.strip().lower() == "[small] [medium] [large]" for line in lines)  # the options offered
    assert any(line.strip().startswith("✓✓ read") for line in lines)
    assert any("✗ failed (whatsapp:131026)" in line for line in lines)


def test_transcript_of_an_unknown_session_exits_2(env: str) -> None:  # noqa: F811
    bad_input("session", "transcript", "nobody", message="no session 'nobody'")
    bad_input("session", "transcript", "nobody", "-f", "json", message="no session 'nobody'")
    bad_input("session", "transcript", "", message="give a session id")


def test_session_history_shows_why(env: str, store: Store, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    rt = Runtime(store, EXAMPLE_FLOWS, channel=WamidChannel(), services=EXAMPLE_SERVICES, clock=clock)
    for i, text in enumerate(["pizza", "huge", "large"]):
        rt.handle("u3", UserMessage(text=text, message_id=f"m{i}"))
    records = json.loads(run("session", "history", "u3", "-f", "json", code=0).stdout)
    assert json.loads(records[2]["why"])["branches"][0]["if"] == "size == 'large'"
    assert json.loads(records[1]["why"])["invalid"]["input"] == "huge"
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: rich wraps the table at 80
    text = run("session", "history", "u3", code=0).stdout
    assert "size == 'large'" in text and "upsell" in text and "'huge'" in text


def test_a_transcript_with_a_lone_surrogate_prints(env: str, store: Store, clock: Any) -> None:  # noqa: F811
    rt = Runtime(store, EXAMPLE_FLOWS, channel=WamidChannel(), services=EXAMPLE_SERVICES, clock=clock)
    rt.handle("u4", UserMessage(text="pizza", message_id="m1"))
    rt.handle("u4", UserMessage(text="\ud800", message_id="m2"))  # a hostile client's text: no UTF-8 form
    rt.drain()
    assert "user  › \ufffd" in run("session", "transcript", "u4", code=0).stdout
    data = json.loads(run("session", "transcript", "u4", "-f", "json", code=0).stdout)
    assert [m["text"] for m in data if m["dir"] == "in"] == ["pizza", "\ud800"]  # JSON keeps it, escaped
