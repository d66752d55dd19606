"""Fixtures shared by the whole suite: real Redis servers, started by flowkit's own code.

- ``redis_server`` / ``redis_url``: one ``redis-server`` (AOF on) for the test session, on a
  free port, files in a temp dir; stopped at the end.
- ``redis_client``: a client on it, **flushed before each test**; ``store``: a ``Store`` on it;
  ``async_store_factory``: builds ``AsyncStore``s on it inside your event loop.
- ``redis_cluster``: a local 3-master Redis Cluster, started only if a test asks for it;
  ``cluster_client``: a cluster client, flushed before each test.

The session also points ``FLOWKIT_DATA_DIR`` at a temp dir and unsets ``FLOWKIT_REDIS_URL``,
so nothing under test can touch a developer's own Redis, and stops any embedded server
started there. Every server is a real redis-server process, and no test is skipped for lack of Redis.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit.store import AsyncStore, LocalCluster, RedisServer, Store, connect, connect_async, stop_embedded


@pytest.fixture(scope="session", autouse=True)
def _isolated_redis_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = {k: os.environ.get(k) for k in ("FLOWKIT_DATA_DIR", "FLOWKIT_REDIS_URL")}
    data_dir = tmp_path_factory.mktemp("flowkit-data")
    os.environ["FLOWKIT_DATA_DIR"] = str(data_dir)
    os.environ.pop("FLOWKIT_REDIS_URL", None)
    yield data_dir
    stop_embedded(data_dir)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    client = connect(redis_url)
    client.flushall()
    client.script_flush()  # every test starts cold: NOSCRIPT paths are exercised, not assumed
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def store(redis_client: Any) -> Store:
    return Store(redis_client)


@pytest.fixture
def async_store_factory(redis_client: Any, redis_url: str) -> Callable[..., AsyncStore]:
    """``make(**store_options)`` -> an AsyncStore; call it inside the event loop that uses it."""
    def make(**kw: Any) -> AsyncStore:
        return AsyncStore(connect_async(redis_url), **kw)

    return make


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), masters=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[Any]:
    client = connect(redis_cluster.url)
    for node in client.get_primaries():
        client.flushall(target_nodes=node)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def clock() -> Any:
    """A settable clock in epoch ms (``clock.advance(seconds)``), so time is tested without sleeping."""
    from tests.runtime.conftest import Clock

    return Clock()


@pytest.fixture(autouse=True)
def _no_acknowledgement_outlives_its_test() -> Iterator[None]:
    """Deferred outbox acknowledgements (flowkit.store.driver) are flushed when a test ends:
    otherwise a flush timer of one test could HDEL an outbox entry with the same session id
    and version that the next test (same server, flushed) has just written."""
    from flowkit.store.driver import flush_all

    yield
    flush_all()
