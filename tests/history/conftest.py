"""Shared synthetic histories (generated once per test session: they run the real engine).
Redis fixtures (``store``, ``redis_url``, ``cluster_client``) come from ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """A real Dask cluster (scheduler and two worker processes) for the dask engine; its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address
