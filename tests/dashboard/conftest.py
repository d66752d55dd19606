"""Dashboard fixtures: real traffic from the example flows, written by the real runtime.

``traffic`` runs a handful of conversations through :class:`flowkit.runtime.Runtime`
(with :class:`flowkit.metrics.RedisMetrics` counting) on a clock that ends at the real
time, so the app — which reads the wall clock — sees recent minutes and old idle sessions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from flowkit.engine import UserMessage
from flowkit.metrics import RedisMetrics
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock


@dataclass
class Traffic:
    store: Store
    runtime: Runtime
    clock: Clock
    now: int  # the clock's time when the traffic ended (about the wall clock)
    stuck: list[str]  # live sessions idle for over an hour
    recent: list[str]  # live sessions active in the last minutes


def talk(rt: Runtime, sid: str, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        rt.handle(sid, UserMessage(text=text, message_id=f"{sid}.{i}.{text}"))


def make_traffic(store: Store, *, end_ms: int | None = None) -> Traffic:
    end = time.time_ns() // 1_000_000 if end_ms is None else end_ms
    clock = Clock(end - 2 * 3_600_000)
    metrics = RedisMetrics(store.client, flush_every=3600, clock=clock)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock,
                 metrics=metrics)
    # two hours ago: sessions that are still waiting now (stuck)
    talk(rt, "stuck-1", ["pizza", "large"])  # waits at upsell
    talk(rt, "stuck-2", ["pizza", "small", "3"])  # waits at ask_address
    clock.advance(600)
    talk(rt, "done-1", ["pizza", "huge", "large", "yes", "2", "12 Main Street"])  # completed, one invalid size
    talk(rt, "cancel-1", ["pizza", "cancel"])  # cancelled at ask_size
    talk(rt, "refund-bad", ["refund", "X1234567"])  # payments.lookup fails
    clock.advance(5_400)  # 1h40 later: recent traffic
    talk(rt, "done-2", ["pizza", "medium", "1", "7 Side Road"])
    talk(rt, "recent-1", ["pizza"])  # waits at ask_size
    talk(rt, "recent-2", ["support"])
    clock.now = end - 30_000
    talk(rt, "recent-3", ["pizza", "medium"])  # waits at ask_qty
    metrics.flush()
    return Traffic(store, rt, clock, clock.now, ["stuck-1", "stuck-2"], ["recent-1", "recent-2", "recent-3"])


@pytest.fixture
def traffic(store: Store) -> Traffic:
    return make_traffic(store)


def registered(client: Any) -> None:
    """Put the example flows in Redis, as ``flowkit serve`` does, so the dashboard can draw them."""
    from flowkit.runtime import FlowRegistry

    FlowRegistry(EXAMPLE_FLOWS.values(), client=client)
