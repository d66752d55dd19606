"""One settings object from a Redis URL, and the clients flowkit uses.

    connect()                                   # $FLOWKIT_REDIS_URL, else the embedded server
    connect("redis://user:secret@host:6379/0")  # ACL user and password
    connect("rediss://host:6380/0?ssl_cert_reqs=none")
    connect("redis+cluster://h1:7000,h2:7001")  # Redis Cluster (also: redis://h1:7000?cluster=true)

Clients never retry by themselves (``retry`` with 0 retries): a commit whose connection
broke either applied or not, and retrying is the caller's decision (it is always safe —
see :class:`~flowkit.errors.StoreUnavailable`). Timeouts are short so an unreachable Redis
turns into ``StoreUnavailable`` quickly; ``?socket_timeout=`` in the URL overrides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowkit.errors import ConfigError

ENV_URL = "FLOWKIT_REDIS_URL"
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
_SCHEMES = {"redis": False, "rediss": True, "redis+cluster": False, "rediss+cluster": True}
_TRUE = ("1", "true", "yes", "on")


def redis_url_from_env() -> str | None:
    """``$FLOWKIT_REDIS_URL`` if set and not empty."""
    return os.environ.get(ENV_URL) or None


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to connect, parsed from a URL (``RedisSettings.from_url``)."""

    url: str = field(repr=False)  # may hold the password; see ``redacted``
    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 6379),)
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    cluster: bool = False
    unix_socket: str | None = None
    options: tuple[tuple[str, str], ...] = ()  # other query parameters, passed to redis-py
    client_name: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisSettings:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        query = dict(parse_qsl(parts.query))
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if scheme == "unix":
            return cls(url, (), int(query.pop("db", 0)), username, password or query.pop("password", None),
                       unix_socket=unquote(parts.path), options=tuple(sorted(query.items())))
        if scheme not in _SCHEMES:
            raise ConfigError(f"unsupported Redis URL scheme {scheme!r} in {_redact(url)}: use redis://, rediss://, "
                              "redis+cluster:// or unix://")
        cluster = scheme.endswith("+cluster") or query.pop("cluster", "").lower() in _TRUE
        hostpart = parts.netloc.rpartition("@")[2]
        nodes = []
        for item in hostpart.split(","):
            host, sep, port = item.rpartition(":")
            if not sep or "]" in port:  # no port given (or a bare IPv6 address)
                host, port = item, "6379"
            try:
                nodes.append((host.strip("[]") or "127.0.0.1", int(port)))
            except ValueError:
                raise ConfigError(f"bad port {port!r} in Redis URL {_redact(url)}") from None
        path = parts.path.strip("/")
        db = int(query.pop("db", path or 0))
        if cluster and db:
            raise ConfigError("Redis Cluster has only database 0")
        return cls(url, tuple(nodes), db, username, password, _SCHEMES[scheme], cluster,
                   options=tuple(sorted(query.items())))

    def __repr__(self) -> str:
        return f"RedisSettings({self.redacted!r}, cluster={self.cluster}, nodes={self.nodes!r})"

    @property
    def redacted(self) -> str:
        """The URL without its password (for logs and messages)."""
        return _redact(self.url)

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "socket_timeout": DEFAULT_SOCKET_TIMEOUT,
            "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
            "username": self.username,
            "password": self.password,
        }
        if self.client_name:
            kw["client_name"] = self.client_name
        for k, v in self.options:
            kw[k] = _coerce(v)
        return kw

    def _single_url(self) -> str:
        scheme = "rediss" if self.ssl else "redis"
        host, port = self.nodes[0]
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/{self.db}"

    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        kw = self._kwargs()
        if self.unix_socket:
            return redis.Redis(unix_socket_path=self.unix_socket, db=self.db, **kw)
        if self.cluster:
            kw.pop("retry")  # the cluster client counts its own attempts; keep them at zero
            return redis.cluster.RedisCluster(
                startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in self.nodes], ssl=self.ssl,
                retry=Retry(NoBackoff(), 0), **kw)
        return redis.Redis.from_url(self._single_url(), **kw)

    def async_client(self) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        kw = self._kwargs()
        # redis-py 8 warns (an error under our filterwarnings) when an async client gets the sync Retry
        kw["retry"] = AsyncRetry(NoBackoff(), 0)
        if self.unix_socket:
            return redis.asyncio.Redis(unix_socket_path=self.unix_socket, db=self.db, **kw)
        if self.cluster:
            kw.pop("retry")
            return redis.asyncio.cluster.RedisCluster(
                startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in self.nodes], ssl=self.ssl,
                retry=AsyncRetry(NoBackoff(), 0), **kw)
        return redis.asyncio.Redis.from_url(self._single_url(), **kw)


def _coerce(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for typ in (int, float):
        try:
            return typ(v)
        except ValueError:
            pass
    return v


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = quote(parts.username or "")
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, "***" if "password" in k else v) for k, v in parse_qsl(parts.query)])
    return parts._replace(netloc=f"{user}:***@{host}", query=query).geturl()


def settings(url: str | None = None) -> RedisSettings:
    """Settings for ``url``; None: ``$FLOWKIT_REDIS_URL``, else the embedded server (started if needed)."""
    url = url or redis_url_from_env()
    if url:
        return RedisSettings.from_url(url)
    from flowkit.store.server import client_name, embedded_server

    server = embedded_server()
    assert server is not None
    return replace(RedisSettings.from_url(server.url), client_name=client_name())


def connect(url: str | None = None) -> redis.Redis | redis.cluster.RedisCluster:
    """A client for ``url`` (None: ``$FLOWKIT_REDIS_URL``, else the embedded server, started if
    not running; data dir ``$FLOWKIT_DATA_DIR`` or ``./.flowkit``)."""
    return settings(url).client()


def connect_async(url: str | None = None) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """:func:`connect` for asyncio."""
    return settings(url).async_client()
