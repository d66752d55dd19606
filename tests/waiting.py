"""Waiting in tests: for a condition, with a deadline, never for a fixed time.

The suite shares a 2-core machine with other runs, so how long anything takes is not
known: a test polls for what it needs and the deadline only bounds a failure (it is
generous, and it costs nothing when the condition comes true early). A fixed sleep is
either too short under load (a flaky failure) or too long when idle (a slow suite).
Where time itself is what a test checks, that test says so beside its wait.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEADLINE = 60.0  # seconds; bounds a failure only: a met condition returns at once


def wait_for(cond: Callable[[], T], what: str, timeout: float = DEADLINE, every: float = 0.02) -> T:
    """``cond()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


async def until(cond: Callable[[], T], what: str, timeout: float = DEADLINE, every: float = 0.01) -> T:
    """:func:`wait_for` inside an event loop: polls without blocking it."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


def stop(proc: subprocess.Popen[Any], timeout: float = DEADLINE) -> None:
    """Stop a process the test started: SIGTERM, then SIGKILL if it has not exited within
    ``timeout``. It must never outlive its test: a ``flowkit serve`` left shutting down acts on
    the next test's Redis (its scheduler, on real time, expired sessions of tests using a fixed
    clock: one slow shutdown under load failed seven later tests). How fast a graceful
    shutdown is belongs to the tests of shutdown, not to every test that starts a process."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
