"""Recovery repairs what a crash, a failed send or a lost index entry left behind."""

from __future__ import annotations

from flowkit.engine import UserMessage
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store
from flowkit.store import keys as K
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock

PIZZA = ["pizza", "medium", "2", "12 Main Street"]


def talk(rt: Runtime, sid: str, texts: list[str], start: int = 0) -> None:
    for i, text in enumerate(texts, start):
        assert rt.handle(sid, UserMessage(text=text, message_id=f"{sid}.m{i}")).status == "applied"


def test_a_failed_send_is_resent_once(runtime: Runtime, channel: RecordingChannel, store: Store) -> None:
    talk(runtime, "u1", ["pizza"])
    channel.fail_next(1)
    talk(runtime, "u1", ["medium"], 1)
    assert channel.texts("u1") == ["Hi there! Let's get you a pizza.", "What size?"]
    assert store.pending_effects("u1")  # kept in the outbox
    report = runtime.recover(outbox_age_ms=0)
    assert report.outbox_redelivered == 1
    assert channel.texts("u1")[-1] == "How many pizzas? (1-20)"
    assert runtime.recover(outbox_age_ms=0).outbox_redelivered == 0  # acknowledged: never sent again
    assert not store.pending_effects("u1")


def test_an_old_reply_is_not_resent_after_the_user_moved_on(runtime: Runtime, channel: RecordingChannel,
                                                            store: Store) -> None:
    talk(runtime, "u1", ["pizza"])
    channel.fail_next(1)
    talk(runtime, "u1", ["medium", "2"], 1)
    report = runtime.recover(outbox_age_ms=0)
    assert (report.outbox_redelivered, report.outbox_superseded) == (0, 1)
    assert "How many pizzas? (1-20)" not in channel.texts("u1")
    assert not store.pending_effects("u1")


def test_a_service_call_cut_short_by_a_crash_is_resumed(store: Store, clock: Clock) -> None:
    # A runtime that commits the call step but dies before running the call.
    crashed = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock,
                      run_services=False)
    talk(crashed, "u1", PIZZA)
    assert store.load("u1")["status"] == "waiting_service"
    channel = RecordingChannel()
    fresh = Runtime(store, EXAMPLE_FLOWS, channel=channel, services=EXAMPLE_SERVICES, clock=clock)
    report = fresh.recover(outbox_age_ms=0)
    assert report.calls_resumed == 1
    state = store.load("u1")
    assert state["status"] == "completed" and state["slots"]["order_id"].startswith("ORD-")
    last = store.history("u1")[-1]
    assert last["actor"] == "recovery" and last["event"] == "service_result"
    assert channel.texts("u1")[-1].startswith("Order ORD-")
    assert fresh.recover(outbox_age_ms=0).calls_resumed == 0


def test_due_timeouts_fire(runtime: Runtime, channel: RecordingChannel, store: Store, clock: Clock) -> None:
    talk(runtime, "u1", ["pizza", "small", "1"])  # now at ask_address, which times out after 10 minutes
    assert runtime.recover().timeouts_fired == 0
    clock.advance(11 * 60)
    assert runtime.recover().timeouts_fired == 1
    state = store.load("u1")
    assert state["status"] == "cancelled"
    assert channel.texts("u1")[-1].startswith("We didn't hear back")


def test_sessions_missing_from_the_timeout_index_still_expire(runtime: Runtime, store: Store, clock: Clock) -> None:
    talk(runtime, "u1", ["pizza"])
    store.client.delete(K.IDX_TIMEOUTS)  # a lost index entry
    clock.advance(29 * 60)
    assert runtime.recover().expired == 0
    clock.advance(3 * 60)  # past the flow's 30 minutes and the grace period
    assert runtime.recover().expired == 1
    assert store.load("u1")["status"] == "expired"


def test_a_scan_quarantines_and_restores_corrupt_states(runtime: Runtime, store: Store) -> None:
    talk(runtime, "u1", ["pizza", "small"])
    talk(runtime, "u2", ["pizza"])
    key = K.session_keys("u1").state
    store.client.hset(key, "state", b"{\"broken\": ")
    report = runtime.recover(scan=True)
    assert (report.scanned, report.quarantined_restored) == (2, 1)
    assert store.load("u1")["step"] == "ask_qty"
    assert store.history("u1")[-1]["actor"] == "recovery"
