"""Registered services: the Python callables that ``call`` steps name.

A service receives the step's ``args`` as keyword arguments plus ``idempotency_key`` if
it accepts one (the engine's call id: the same call retried or recovered carries the same
key, so a payment is never taken twice). Sync and async callables both work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowkit.engine.events import CallService, ServiceResult
from flowkit.errors import Retryable
from flowkit.retry import RetryPolicy

Service = Callable[..., Any] | Callable[..., Awaitable[Any]]


@dataclass
class _Entry:
    fn: Service
    retry: RetryPolicy
    takes_key: bool
    is_async: bool


class ServiceRegistry:
    """Name -> callable. ``@services.register("orders.create")`` or ``services.add(name, fn)``."""

    def __init__(self) -> None:
        self._services: dict[str, _Entry] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._rng = random.Random()

    def add(self, name: str, fn: Service, *, retry: RetryPolicy | None = None) -> None:
        params = inspect.signature(fn).parameters
        takes_key = "idempotency_key" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        self._services[name] = _Entry(fn, retry or RetryPolicy(), takes_key, inspect.iscoroutinefunction(fn))

    def register(self, name: str, *, retry: RetryPolicy | None = None) -> Callable[[Service], Service]:
        def deco(fn: Service) -> Service:
            self.add(name, fn, retry=retry)
            return fn

        return deco

    def copy(self) -> ServiceRegistry:
        """A registry with the same services, to add to or override without touching this one."""
        other = ServiceRegistry()
        other._services = dict(self._services)
        return other

    def __contains__(self, name: str) -> bool:
        return name in self._services

    def names(self) -> list[str]:
        return sorted(self._services)

    def _kwargs(self, entry: _Entry, call: CallService) -> dict[str, Any]:
        kwargs = dict(call.args)
        if entry.takes_key:
            kwargs["idempotency_key"] = call.call_id
        return kwargs

    def call(self, call: CallService, *, sleep: Callable[[float], None] = time.sleep) -> ServiceResult:
        """Run ``call`` synchronously within its timeout, retrying transient errors."""
        entry = self._services.get(call.service)
        if entry is None:
            return ServiceResult(call_id=call.call_id, ok=False, error=f"unknown_service:{call.service}")
        deadline = time.monotonic() + call.timeout
        last = "error"
        for attempt in range(1, entry.retry.attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ServiceResult(call_id=call.call_id, ok=False, error="timeout")
            try:
                if entry.is_async:
                    value = asyncio.run(asyncio.wait_for(entry.fn(**self._kwargs(entry, call)), remaining))
                else:
                    if self._pool is None:
                        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="flowkit-svc")
                    value = self._pool.submit(entry.fn, **self._kwargs(entry, call)).result(timeout=remaining)
                return ServiceResult(call_id=call.call_id, ok=True, value=value)
            except (TimeoutError, concurrent.futures.TimeoutError):
                return ServiceResult(call_id=call.call_id, ok=False, error="timeout")
            except Retryable as exc:
                last = _reason(exc)
                if attempt < entry.retry.attempts:
                    sleep(min(entry.retry.delay(attempt, self._rng), max(0.0, deadline - time.monotonic())))
            except Exception as exc:  # a service's own failure is data for the flow (on_error), not a crash
                return ServiceResult(call_id=call.call_id, ok=False, error=_reason(exc))
        return ServiceResult(call_id=call.call_id, ok=False, error=last)

    async def acall(self, call: CallService) -> ServiceResult:
        """Run ``call`` on the event loop (sync services in a thread), within its timeout."""
        entry = self._services.get(call.service)
        if entry is None:
            return ServiceResult(call_id=call.call_id, ok=False, error=f"unknown_service:{call.service}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + call.timeout
        last = "error"
        for attempt in range(1, entry.retry.attempts + 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return ServiceResult(call_id=call.call_id, ok=False, error="timeout")
            try:
                kwargs = self._kwargs(entry, call)
                if entry.is_async:
                    coro = entry.fn(**kwargs)
                else:
                    coro = asyncio.to_thread(entry.fn, **kwargs)
                value = await asyncio.wait_for(coro, remaining)
                return ServiceResult(call_id=call.call_id, ok=True, value=value)
            except TimeoutError:
                return ServiceResult(call_id=call.call_id, ok=False, error="timeout")
            except Retryable as exc:
                last = _reason(exc)
                if attempt < entry.retry.attempts:
                    await asyncio.sleep(min(entry.retry.delay(attempt, self._rng), max(0.0, deadline - loop.time())))
            except Exception as exc:
                return ServiceResult(call_id=call.call_id, ok=False, error=_reason(exc))
        return ServiceResult(call_id=call.call_id, ok=False, error=last)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
