"""One settings object from a Redis URL, and the clients flowkit uses.

    connect()                                   # $FLOWKIT_REDIS_URL, else the embedded server
    connect("redis://user:secret@host:6379/0")  # ACL user and password
    connect("rediss://host:6380/0?ssl_cert_reqs=none")
    connect("redis+cluster://h1:7000,h2:7001")  # Redis Cluster (also: redis://h1:7000?cluster=true)

Secrets stay out of argv and output: ``$FLOWKIT_REDIS_URL_FILE`` names a file holding the
URL, ``$FLOWKIT_REDIS_PASSWORD`` / ``$FLOWKIT_REDIS_PASSWORD_FILE`` give the password when the
URL has none, and :func:`mask_url` is the one way a URL is shown (``***`` for passwords).

Clients never retry by themselves (``retry`` with 0 retries): a commit whose connection
broke either applied or not, and retrying is the caller's decision (it is always safe —
see :class:`~flowkit.errors.StoreUnavailable`). Timeouts are short so an unreachable Redis
turns into ``StoreUnavailable`` quickly; ``?socket_timeout=`` in the URL overrides them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowkit.envflag import parse_flag
from flowkit.errors import ConfigError
from flowkit.log import get_logger

log = get_logger("flowkit.store.connection")

ENV_URL = "FLOWKIT_REDIS_URL"
ENV_URL_FILE = "FLOWKIT_REDIS_URL_FILE"  # a file holding the URL (a mounted secret)
ENV_PASSWORD = "FLOWKIT_REDIS_PASSWORD"  # the password, when the URL carries none
ENV_PASSWORD_FILE = "FLOWKIT_REDIS_PASSWORD_FILE"
MASK = "***"
#: query parameters whose value is a secret (redis-py takes ``?password=``)
_SECRET_PARAMS = ("password", "pass", "secret", "token", "auth")
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
_SCHEMES = {"redis": False, "rediss": True, "redis+cluster": False, "rediss+cluster": True}


def _secret_file(var: str) -> str | None:
    path = os.environ.get(var)
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"${var} names {path!r}, which cannot be read ({exc.strerror}): point it at a readable "
                          "file or unset it") from None
    if not text:
        raise ConfigError(f"${var} names {path!r}, which is empty: write the secret into it or unset it")
    return text


def redis_url_from_env() -> str | None:
    """``$FLOWKIT_REDIS_URL`` if set and not empty, else the contents of ``$FLOWKIT_REDIS_URL_FILE``."""
    return os.environ.get(ENV_URL) or _secret_file(ENV_URL_FILE)


def password_from_env() -> str | None:
    """``$FLOWKIT_REDIS_PASSWORD_FILE``'s contents, else ``$FLOWKIT_REDIS_PASSWORD``: used when a
    URL carries no password, so the password stays out of URLs, argv and process lists."""
    return _secret_file(ENV_PASSWORD_FILE) or os.environ.get(ENV_PASSWORD) or None


def mask_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``: the userinfo password
    (``redis://user:pw@host``) and secret query parameters (``?password=pw``). The one helper
    for every place a Redis URL is shown (status, dashboard, logs, errors, reprs)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL (a bad port): show nothing that could be a secret
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    query = parts.query
    if query:
        items = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{quote(k, safe='')}=" + (MASK if k.lower() in _SECRET_PARAMS else quote(v, safe="/"))
                         for k, v in items)
    # by hand: geturl() drops the "//" of an empty netloc (unix:///path)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")


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
        password = password or query.pop("password", None)  # ?password= is a password too (redis-py's form)
        if scheme == "unix":
            return cls(url, (), int(query.pop("db", 0)), username, password,
                       unix_socket=unquote(parts.path), options=tuple(sorted(query.items())))
        if scheme not in _SCHEMES:
            raise ConfigError(f"unsupported Redis URL scheme {scheme!r} in {mask_url(url)}: use redis://, rediss://, "
                              "redis+cluster:// or unix://")
        cluster = scheme.endswith("+cluster") or parse_flag(query.pop("cluster", "") or "0", "the URL's cluster option")
        hostpart = parts.netloc.rpartition("@")[2]
        nodes = []
        for item in hostpart.split(","):
            host, sep, port = item.rpartition(":")
            if not sep or "]" in port:  # no port given (or a bare IPv6 address)
                host, port = item, "6379"
            try:
                nodes.append((host.strip("[]") or "127.0.0.1", int(port)))
            except ValueError:
                raise ConfigError(f"bad port {port!r} in Redis URL {mask_url(url)}") from None
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
        return mask_url(self.url)

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


def settings(url: str | None = None) -> RedisSettings:
    """Settings for ``url``; None: ``$FLOWKIT_REDIS_URL``, else the embedded server (started if needed)."""
    if url and url in sys.argv[1:] and mask_url(url) != url:
        # `--redis redis://:pw@...`: anyone on the machine sees argv (ps, /proc/<pid>/cmdline)
        log.warning("the Redis password is visible in this process's command line; put the URL in "
                    f"${ENV_URL_FILE} or the password in ${ENV_PASSWORD_FILE} instead",
                    extra={"redis": mask_url(url)})
    url = url or redis_url_from_env()
    if url:
        cfg = RedisSettings.from_url(url)
        if cfg.password is None and (password := password_from_env()) is not None:
            cfg = replace(cfg, password=password)
        return cfg
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
