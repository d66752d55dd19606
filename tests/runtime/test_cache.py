"""The runtime's state cache never decides on a stale state: a commit whose answer was lost
leaves nothing cached, and a "nothing to do" decided on a cached state is checked against
Redis (another process, or a lost answer, may have moved the session on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkit.engine import Timeout, UserMessage
from flowkit.errors import StoreUnavailable
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import RedisServer, Store, connect
from flowkit.store.server import free_port
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock


def test_a_commit_that_met_a_dead_redis_leaves_nothing_cached(tmp_path: Path, clock: Clock) -> None:
    with RedisServer(tmp_path, port=free_port()) as server:
        store = Store(connect(server.url))
        rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
        rt.handle("u1", UserMessage(text="refund", message_id="m1"))
        assert rt.cached("u1") is not None
        server.stop()
        with pytest.raises(StoreUnavailable):
            rt.handle("u1", UserMessage(text="AB1234", message_id="m2"))
        assert rt.cached("u1") is None  # applied or not, nobody knows: the next event loads


def test_a_timeout_is_fired_even_when_this_process_cached_an_older_state(store: Store, clock: Clock) -> None:
    web = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    other = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock,
                    run_services=False)  # another process: its commit leaves a call waiting for its deadline
    web.handle("u1", UserMessage(text="refund", message_id="m1"))  # web caches the session at ask_order
    other.handle("u1", UserMessage(text="AB1234", message_id="m2"))  # now waiting_service at lookup, deadline in 5 s
    assert web.cached("u1") is not None and web.cached("u1")["step"] == "ask_order"  # stale
    clock.advance(6)
    out = web.handle("u1", Timeout())
    assert out.status == "applied" and out.record is not None and out.record["from_step"] == "lookup"
    assert store.load("u1")["step"] != "lookup"  # on_timeout moved it on


def test_the_cache_keeps_the_engines_own_state_so_the_next_answer_checks_only_what_it_changes(
        store: Store, clock: Clock) -> None:
    from flowkit.engine.plan import plan_of

    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    rt.handle("u1", UserMessage(text="pizza", message_id="m1"))
    state = rt.cached_state("u1")
    assert state is not None and state.step == "ask_size"
    flow = rt.registry.get(state.flow, state.flow_version)
    assert plan_of(flow).trusts(state)  # the engine's own object: no re-validation of its slots
    out = rt.handle("u1", UserMessage(text="large", message_id="m2"))
    assert out.status == "applied" and store.load("u1")["slots"]["size"] == "large"  # type: ignore[index]
    assert rt.cached("u1") == store.load("u1")  # the cached state is exactly the stored one
