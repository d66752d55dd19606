"""Hand-off in the sync runtime on a real Redis: the timeout index, recovery, the queue, the Python API."""

from __future__ import annotations

import pytest

from flowkit.engine import UserMessage
from flowkit.errors import NotHeldError, SessionNotFound
from flowkit.runtime import Runtime
from flowkit.runtime.channel import RecordingChannel
from flowkit.runtime.handoff import QUEUE
from flowkit.store import Store
from tests.runtime.conftest import Clock

HOUR = 3600.0


def to_agent(rt: Runtime, who: str) -> None:
    for i, text in enumerate(["support", "other", "5"]):
        rt.handle(who, UserMessage(text=text, message_id=f"{who}.{i}"))
    assert rt.store.load(who)["status"] == "handoff"


def test_an_idle_handoff_comes_back_to_the_bot_through_the_timeout_index(
        runtime: Runtime, store: Store, clock: Clock, channel: RecordingChannel) -> None:
    to_agent(runtime, "u1")
    clock.advance(3 * HOUR)  # past the flow's 2h inactivity timeout: people have their own clock
    report = runtime.recover()
    assert report.timeouts_fired == 0 and report.expired == 0
    assert store.load("u1")["status"] == "handoff"
    runtime.handle("u1", UserMessage(text="still there?", message_id="u1.9"))  # restarts the 4h clock
    clock.advance(4 * HOUR - 1)
    assert runtime.fire_due_timeouts() == 0
    clock.advance(2)
    assert runtime.fire_due_timeouts() == 1
    state = store.load("u1")
    assert (state["status"], state["step"]) == ("waiting_input", "ask_details")
    assert channel.texts("u1")[-2:] == [
        "Sorry, nobody on the team is free right now. I'll open a ticket for you instead.",
        "Tell us what happened in a few words."]
    last = store.history("u1")[-1]
    assert (last["event"], last["error"]) == ("timeout", "handoff_timeout")
    assert runtime.waiting() == [] and store.client.zcard(QUEUE) == 0


def test_the_python_api_hands_off_replies_and_releases(runtime: Runtime, store: Store,
                                                        channel: RecordingChannel) -> None:
    runtime.handle("u2", UserMessage(text="support", message_id="u2.0"))
    runtime.handoff("u2", "asked for a person")
    [w] = runtime.waiting()
    assert (w.session_id, w.flow, w.step, w.reason) == ("u2", "support_triage", "ask_topic", "asked for a person")
    out = runtime.agent_reply("u2", "Hello, Ana here", agent="ana")
    assert out.status == "applied" and channel.texts("u2")[-1] == "Hello, Ana here"
    assert store.history("u2")[-1]["actor"] == "agent"
    runtime.release("u2", "ask_topic")
    assert store.load("u2")["status"] == "waiting_input" and runtime.waiting() == []
    with pytest.raises(NotHeldError, match="not in hand-off"):
        runtime.agent_reply("u2", "again")
    with pytest.raises(SessionNotFound):
        runtime.release("nobody")
    with pytest.raises(SessionNotFound):
        runtime.handoff("nobody")


def test_the_queue_drops_sessions_ended_another_way(runtime: Runtime, store: Store) -> None:
    to_agent(runtime, "u3")
    store.expire("u3", reason="closed by an operator")  # not through a release
    assert store.client.zcard(QUEUE) == 1
    assert runtime.waiting() == [] and store.client.zcard(QUEUE) == 0


def test_redis_gone_after_the_commit_does_not_turn_the_handoff_into_an_error(
        runtime: Runtime, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # The commit that hands off is done; if Redis goes away before the queue is written, the
    # delivery must still succeed (its redelivery would only be a duplicate): the bookkeeping
    # is logged as not written. (A simulated Redis restart found the raw ConnectionError.)
    import redis

    from flowkit.runtime import handoff
    from flowkit.store.server import free_port

    for i, text in enumerate(["support", "other"]):
        runtime.handle("u7", UserMessage(text=text, message_id=f"u7.{i}"))
    out = runtime.handle("u7", UserMessage(text="5", message_id="u7.2"))
    assert out.status == "applied" and store.load("u7")["status"] == "handoff"
    gone = redis.Redis(port=free_port(), socket_connect_timeout=1)
    handoff.after_sync(gone, out)  # nothing listens there: no exception
    assert "hand-off bookkeeping not written" in caplog.text


def test_the_async_bookkeeping_tolerates_redis_gone_too(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    import redis.asyncio

    from flowkit.runtime import handoff
    from flowkit.store.server import free_port

    for i, text in enumerate(["support", "other", "5"]):
        out = runtime.handle("u8", UserMessage(text=text, message_id=f"u8.{i}"))

    async def main() -> None:
        gone = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=1)
        try:
            await handoff.after_async(gone, out)
        finally:
            await gone.aclose()

    asyncio.run(main())
    assert "hand-off bookkeeping not written" in caplog.text
