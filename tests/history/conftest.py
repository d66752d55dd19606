"""Shared synthetic histories (generated once per test session: they run the real engine).
Redis fixtures (``store``, ``redis_url``, ``cluster_client``) come from ``tests/conftest.py``."""

from __future__ import annotations

import pytest

from flowkit.history.flowset import FlowSet
from flowkit.history.synthetic import Synthetic, example_flows, generate


@pytest.fixture(scope="session")
def flows() -> FlowSet:
    return example_flows()


@pytest.fixture(scope="session")
def syn(flows: FlowSet) -> Synthetic:
    """500 sessions with 3 injected anomalies of every code."""
    return generate(sessions=500, seed=11, per_code=3, flows=flows)


@pytest.fixture(scope="session")
def clean(flows: FlowSet) -> Synthetic:
    """400 sessions without injected anomalies."""
    return generate(sessions=400, seed=12, per_code=0, flows=flows)


@pytest.fixture(scope="session")
def committed(flows: FlowSet) -> Synthetic:
    """Clean sessions with their states, to commit to a real store."""
    return generate(sessions=120, seed=13, per_code=0, flows=flows, keep_states=True)
