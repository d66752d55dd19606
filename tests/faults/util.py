"""Helpers of the fault tests: statuses, stopping processes and running the CLI.
``wait_for`` (a condition with a deadline, never a fixed time) is tests/waiting.py's, re-exported
here; ``spawn_serve`` (a `flowkit serve` that need not become ready) is tests/runtime/webutil.py's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from flowkit.store import RedisServer
from tests.runtime.webutil import ROOT
from tests.waiting import wait_for

__all__ = ["FLOWKIT", "own_redis_server", "run_cli", "status", "stop", "wait_for"]

FLOWKIT = str(Path(sys.executable).with_name("flowkit"))


def status(port: int, path: str, timeout: float = 10.0) -> int | None:
    """The HTTP status of GET ``path``, None if nothing answers."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout).status_code
    except httpx.TransportError:
        return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_cli(redis_url: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWKIT, *args], cwd=ROOT, env=dict(os.environ, FLOWKIT_REDIS_URL=redis_url, **(env or {})),
                          capture_output=True, text=True, timeout=timeout)


@contextmanager
def own_redis_server(data_dir: Path, *, appendonly: bool) -> Iterator[RedisServer]:
    """A redis-server of one test alone (it gets stopped, paused and starved), resumed before
    it is stopped: a paused server cannot stop."""
    server = RedisServer(data_dir, appendonly=appendonly).start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()
