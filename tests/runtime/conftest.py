"""Runtime fixtures: the example flows and services on a real Redis (``store`` from tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowkit.flow import load_flows
from flowkit.flow.model import Flow
from flowkit.runtime import RecordingChannel, Runtime, ServiceRegistry
from flowkit.store import Store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from examples.services import services as EXAMPLE_SERVICES  # noqa: E402

EXAMPLE_FLOWS: dict[str, Flow] = load_flows(ROOT / "examples" / "flows")


class Clock:
    """A settable clock in epoch ms, so timeouts are tested without sleeping."""

    def __init__(self, now: int = 1_790_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += int(seconds * 1000)
        return self.now


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def services() -> ServiceRegistry:
    return EXAMPLE_SERVICES


@pytest.fixture
def runtime(store: Store, channel: RecordingChannel, clock: Clock, services: ServiceRegistry) -> Runtime:
    return Runtime(store, EXAMPLE_FLOWS, channel=channel, services=services, clock=clock)
