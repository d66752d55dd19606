"""Helpers of the fault tests: waiting for conditions with a deadline (never for a fixed
time), statuses, stopping processes and running the CLI. ``spawn_serve`` (a `flowkit serve`
that need not become ready) is tests/runtime/webutil.py's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

from flowkit.store import RedisServer
from tests.runtime.webutil import ROOT

T = TypeVar("T")
FLOWKIT = str(Path(sys.executable).with_name("flowkit"))


def wait_for(cond: Callable[[], T], what: str, timeout: float = 30.0, every: float = 0.02) -> T:
    """``cond()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def status(port: int, path: str, timeout: float = 2.0) -> int | None:
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
