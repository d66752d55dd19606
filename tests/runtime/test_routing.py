"""Routing, commands, the CAS retry loop and structured logs of the runtime."""

from __future__ import annotations

import json
import logging

import pytest

from flowkit.engine import UserMessage
from flowkit.errors import ConflictError
from flowkit.log import JsonFormatter
from flowkit.metrics import Metrics
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock


def msg(text: str, mid: str) -> UserMessage:
    return UserMessage(text=text, message_id=mid)


def test_trigger_words_start_flows_and_unknown_input_gets_help(runtime: Runtime, channel: RecordingChannel,
                                                               store: Store) -> None:
    out = runtime.handle("u1", msg("hello?", "m1"))
    assert out.status == "unrouted" and store.load("u1") is None
    assert "pizza" in channel.texts("u1")[0] and "refund" in channel.texts("u1")[0]
    runtime.handle("u1", msg("hello?", "m1"))  # redelivered: still nothing stored
    assert store.load("u1") is None
    assert runtime.handle("u1", msg("I want my money back please", "m2")).status == "applied"
    assert store.load("u1")["flow"] == "refund"  # a multi-word trigger inside a sentence


def test_default_flow_catches_everything_else(store: Store, clock: Clock) -> None:
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), default_flow="support_triage", clock=clock)
    assert rt.handle("u1", msg("good morning", "m1")).status == "applied"
    assert store.load("u1")["flow"] == "support_triage"


def test_messages_go_to_the_active_flow_even_if_they_look_like_triggers(runtime: Runtime, store: Store) -> None:
    runtime.handle("u1", msg("pizza", "m1"))
    runtime.handle("u1", msg("refund", "m2"))  # an answer to "What size?", not a new flow
    state = store.load("u1")
    assert state["flow"] == "order_pizza" and state["step"] == "ask_size" and state["attempts"] == {"ask_size": 1}


def test_global_commands(runtime: Runtime, channel: RecordingChannel, store: Store) -> None:
    for i, text in enumerate(["pizza", "large", "yes"]):
        runtime.handle("u1", msg(text, f"m{i}"))
    runtime.handle("u1", msg("back", "m3"))
    assert store.load("u1")["step"] == "upsell"
    runtime.handle("u1", msg("help", "m4"))
    assert "pizza order" in channel.texts("u1")[-2] and store.load("u1")["step"] == "upsell"
    assert channel.texts("u1")[-1] == "Large it is! Add a drink for 2 EUR?"  # and the question again
    runtime.handle("u1", msg("cancel", "m5"))
    assert store.load("u1")["status"] == "cancelled"
    assert runtime.handle("u1", msg("pizza", "m6")).status == "applied"  # a finished session starts over
    state = store.load("u1")
    assert state["status"] == "waiting_input" and state["step"] == "ask_size" and state["version"] == 7


def test_a_stale_cache_conflicts_and_the_engine_reruns_on_fresh_state(store: Store, clock: Clock) -> None:
    a = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    b = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    a.handle("u1", msg("pizza", "m1"))  # a caches version 1
    b.handle("u1", msg("large", "m2"))  # another process moves the session to version 2
    out = a.handle("u1", msg("no", "m3"))  # a computes from its stale version 1 first
    assert (out.status, out.conflicts, out.version) == ("applied", 1, 3)
    state = store.load("u1")
    assert state["slots"]["size"] == "large" and state["slots"]["drink"] is False  # both updates kept


def test_conflicts_are_bounded(store: Store, clock: Clock) -> None:
    metrics = Metrics()
    a = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), clock=clock, max_conflicts=0, metrics=metrics)
    b = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), clock=clock)
    a.handle("u1", msg("pizza", "m1"))
    b.handle("u1", msg("large", "m2"))
    with pytest.raises(ConflictError, match="WhatsApp will redeliver"):
        a.handle("u1", msg("no", "m3"))
    assert store.load("u1")["version"] == 2 and a.stats["conflicts"] == 1
    assert b"flowkit_commit_conflicts_total 1.0" in metrics.render()
    assert a.handle("u1", msg("no", "m3")).status == "applied"  # the redelivery goes through


def test_every_handled_event_is_one_json_log_line(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flowkit.runtime"):
        runtime.handle("u1", msg("pizza", "wamid.X1"))
    [rec] = [r for r in caplog.records if r.getMessage() == "event handled"]
    line = json.loads(JsonFormatter().format(rec))
    assert line["session_id"] == "u1" and line["flow"] == "order_pizza" and line["version"] == 1
    assert line["message_id"] == "wamid.X1" and line["outcome"] == "applied"
    assert isinstance(line["latency_ms"], float) and line["level"] == "info"
