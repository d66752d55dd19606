"""flowkit.store: session state in Redis that never loses an update.

One Lua script commits a session change atomically in one round trip (version check,
state + checksum, history entry with a delta, dedupe, outbox, snapshots); history is a
per-session list of compact binary elements (:mod:`flowkit.store.entries` reads and writes
one); derived indexes (active sessions, timeouts, counters, outbox) are written by the
commit on a single server, beside it on Cluster, and rebuilt by :func:`reconcile`. Works on
a standalone Redis, the embedded ``redis-server`` flowkit starts itself, and Redis Cluster.

    from flowkit.store import Store, connect
    store = Store(connect())
"""

from flowkit.store import entries
from flowkit.store.aio import AsyncStore
from flowkit.store.backup import BackupReport, RestoreReport, backup, restore
from flowkit.store.connection import (
    RedisSettings,
    connect,
    connect_async,
    mask_url,
    redis_url_from_env,
    settings,
)
from flowkit.store.find import FindStats, compile_query, find_sessions
from flowkit.store.reconcile import ReconcileReport, reconcile
from flowkit.store.server import (
    LocalCluster,
    RedisServer,
    embedded_server,
    embedded_status,
    find_redis_cli,
    find_redis_server,
    start_cluster,
    stop_embedded,
)
from flowkit.store.store import Store
from flowkit.store.values import CommitResult, StoreConfig

__all__ = [
    "AsyncStore", "BackupReport", "CommitResult", "FindStats", "compile_query", "find_sessions", "LocalCluster", "ReconcileReport", "RedisServer", "RedisSettings",
    "RestoreReport", "Store", "StoreConfig", "backup", "connect", "connect_async", "embedded_server",
    "embedded_status", "entries", "find_redis_cli", "find_redis_server", "mask_url", "reconcile", "redis_url_from_env", "restore",
    "settings", "start_cluster", "stop_embedded",
]
