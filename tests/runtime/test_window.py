"""The 24-hour customer-service window and ``on_undeliverable``: the sync runtime sending
through the real WhatsApp sender to the Graph API imitation, on a settable clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.channels.whatsapp import WhatsAppSender
from flowkit.engine import Reply, UserMessage
from flowkit.flow import load_flow
from flowkit.metrics import Metrics
from flowkit.runtime import Runtime, WhatsAppChannel
from flowkit.store import Store
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import Clock

REMIND = load_flow(Path(__file__).resolve().parents[1] / "data" / "flows_sending" / "remind.yaml")
HOUR = 3600.0


@pytest.fixture
def graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI() as g:
        yield g


@pytest.fixture
def rt(store: Store, graph: FakeGraphAPI, clock: Clock) -> Iterator[Runtime]:
    sender = WhatsAppSender(config=graph.config(), max_attempts=1)
    yield Runtime(store, [REMIND], channel=WhatsAppChannel(sender), clock=clock, metrics=Metrics())
    sender.close()


def test_a_reminder_after_the_window_closed_is_not_sent_and_takes_the_error_path(
        rt: Runtime, graph: FakeGraphAPI, store: Store, clock: Clock) -> None:
    rt.handle("u1", UserMessage(text="remind", message_id="m1"))
    assert [m.text for m in graph.to("u1")] == ["What is your name?"]
    clock.advance(30 * HOUR)  # the ask step's timeout: the reminder would leave 30 h after the user wrote
    assert rt.fire_due_timeouts() == 1
    assert [m.text for m in graph.to("u1")] == ["What is your name?"]  # no free-form message Graph would refuse
    history = store.history("u1")
    assert [h["event"] for h in history] == ["start", "timeout", "delivery_failed"]
    assert history[-1]["error"] == "outside_window"
    assert history[-1]["from_step"] == "reminder" and history[-1]["to_step"] == "gave_up"  # on_undeliverable
    assert store.load("u1")["status"] == "handoff" and not store.pending_effects("u1")
    assert 'flowkit_delivery_failures_total{error="outside_window"} 1.0' in rt.metrics.render().decode()


def test_a_template_may_leave_outside_the_window(rt: Runtime, graph: FakeGraphAPI, store: Store, clock: Clock) -> None:
    rt.handle("u1", UserMessage(text="remind", message_id="m1"))
    clock.advance(25 * HOUR)
    template = Reply(template=("order_update", "en_US", ("AB123",)))
    assert rt.deliver("u1", 1, [template, Reply(text="free-form")]) is True
    sent = graph.to("u1")
    assert sent[-1].type == "template" and sent[-1].payload["template"]["name"] == "order_update"
    assert store.history("u1")[-1]["error"] == "outside_window"  # the free-form one after it was not sent
    assert len(sent) == 2


def test_graph_refusing_with_131047_is_recorded_once_not_retried(rt: Runtime, graph: FakeGraphAPI,
                                                                 store: Store) -> None:
    graph.fail_next(1, 400, code=131047)
    rt.handle("u1", UserMessage(text="remind", message_id="m1"))
    assert graph.requests == 1 and graph.sent == []
    last = store.history("u1")[-1]
    assert last["event"] == "delivery_failed" and last["error"] == "whatsapp:131047"
    assert last["to_step"] == "gave_up" and not store.pending_effects("u1")
    assert rt.recover(outbox_age_ms=0).outbox_redelivered == 0 and graph.requests == 1


def test_a_failure_of_the_undeliverable_steps_own_reply_does_not_loop(store: Store, graph: FakeGraphAPI,
                                                                       clock: Clock, tmp_path: Path) -> None:
    text = Path(REMIND.source).read_text().replace(
        "  gave_up:\n    end: handoff\n",
        "  gave_up:\n    say: \"We could not reach you.\"\n    next: wait_more\n"
        "  wait_more:\n    ask: \"Reply to go on.\"\n    input: {type: text}\n    next: done\n")
    (tmp_path / "remind.yaml").write_text(text)
    flow = load_flow(tmp_path / "remind.yaml")
    assert flow.steps["wait_more"].on_undeliverable == "gave_up"  # the flow-wide default reaches it too
    sender = WhatsAppSender(config=graph.config(), max_attempts=1)
    rt = Runtime(store, [flow], channel=WhatsAppChannel(sender), clock=clock)
    graph.fail_next(5, 400, code=131026)  # every send to this user fails
    rt.handle("u2", UserMessage(text="remind", message_id="m1"))
    history = store.history("u2")
    assert [(h["event"], h["to_step"]) for h in history] == [
        ("start", "ask_name"), ("delivery_failed", "wait_more"), ("delivery_failed", "wait_more")]
    assert graph.requests == 2 and not store.pending_effects("u2")
    sender.close()


def test_erasing_a_session_erases_its_delivery_records(rt: Runtime, graph: FakeGraphAPI, store: Store) -> None:
    rt.handle("u3", UserMessage(text="remind", message_id="m1"))
    rt.drain()
    wamid = graph.to("u3")[0].id
    assert store.lookup_wamid(wamid) == ("u3", 1, 0) and store.last_inbound("u3") is not None
    assert store.delete_session("u3")
    assert store.lookup_wamid(wamid) is None and store.last_inbound("u3") is None
    assert list(store.client.scan_iter("fk:*u3*")) == []
