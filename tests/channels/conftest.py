"""Fixtures for the channel tests: one real FakeGraphAPI server for the whole session
(reset before each test), senders pointed at it, and a sleep that records instead of waiting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit.channels.whatsapp import WhatsAppSender
from flowkit.testing.fake_graph import FakeGraphAPI

PAYLOADS = Path(__file__).parent / "payloads"


def load_payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


class Sleeps(list[float]):
    """Records backoff delays; as a sync or async ``sleep`` it returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="session")
def graph_server() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI() as server:
        yield server


@pytest.fixture
def graph(graph_server: FakeGraphAPI) -> FakeGraphAPI:
    graph_server.reset()
    return graph_server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def sender(graph: FakeGraphAPI, sleeps: Sleeps) -> Iterator[WhatsAppSender]:
    with WhatsAppSender(config=graph.config(), sleep=sleeps) as s:
        yield s
