"""Service calls as effects: timeouts, retries with backoff, idempotency keys, sync and async callables."""

from __future__ import annotations

import asyncio
import threading
import time

from flowkit.engine import CallService, UserMessage
from flowkit.runtime import RecordingChannel, Retryable, RetryPolicy, Runtime, ServiceRegistry
from flowkit.store import Store
from tests.runtime.conftest import EXAMPLE_FLOWS, Clock


def call(service: str, timeout: float = 2.0, **args: object) -> CallService:
    return CallService(call_id="s1/5/place_order", service=service, args=args, timeout=timeout)


def test_sync_and_async_services_get_args_and_the_idempotency_key() -> None:
    reg = ServiceRegistry()
    seen: list[tuple[int, str]] = []

    @reg.register("sync")
    def sync(n: int, idempotency_key: str) -> int:
        seen.append((n, idempotency_key))
        return n * 2

    @reg.register("async")
    async def not_blocking(n: int) -> int:  # no idempotency_key parameter: none is passed
        await asyncio.sleep(0)
        return n * 3

    assert reg.call(call("sync", n=2)).value == 4 and seen == [(2, "s1/5/place_order")]
    assert reg.call(call("async", n=2)).value == 6
    assert asyncio.run(reg.acall(call("sync", n=5))).value == 10
    assert asyncio.run(reg.acall(call("async", n=5))).value == 15
    assert reg.call(call("nope")).error == "unknown_service:nope"


def test_transient_errors_are_retried_with_backoff_and_other_errors_are_not() -> None:
    reg = ServiceRegistry()
    attempts = {"flaky": 0, "broken": 0}

    @reg.register("flaky", retry=RetryPolicy(attempts=3, backoff=0.01))
    def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise Retryable("503 from upstream")
        return "ok"

    @reg.register("broken", retry=RetryPolicy(attempts=3, backoff=0.01))
    def broken() -> str:
        attempts["broken"] += 1
        raise ValueError("card declined")

    delays: list[float] = []
    assert reg.call(call("flaky"), sleep=delays.append).value == "ok"
    assert attempts["flaky"] == 3 and len(delays) == 2 and delays[1] > delays[0] * 0.9  # backoff grows
    res = reg.call(call("broken"))
    assert (res.ok, res.error, attempts["broken"]) == (False, "ValueError: card declined", 1)
    attempts["flaky"] = -10
    assert asyncio.run(reg.acall(call("flaky"))).error == "Retryable: 503 from upstream"  # attempts used up


def test_a_slow_service_times_out_within_the_call_timeout() -> None:
    reg = ServiceRegistry()
    release = threading.Event()

    @reg.register("slow")
    def slow() -> str:
        release.wait(60)  # far beyond the call's timeout: only a working timeout returns early
        return "late"

    @reg.register("slow_async")
    async def slow_async() -> str:
        await asyncio.sleep(60)
        return "late"

    t0 = time.monotonic()
    assert reg.call(call("slow", timeout=0.2)).error == "timeout"
    assert asyncio.run(reg.acall(call("slow_async", timeout=0.2))).error == "timeout"
    assert time.monotonic() - t0 < 30  # not a speed check: the services would have taken 60 s
    release.set()
    reg.close()


def test_service_errors_and_timeouts_take_the_flows_error_path(store: Store, clock: Clock) -> None:
    reg = ServiceRegistry()

    @reg.register("orders.create")
    def create_order(**_: object) -> str:
        raise RuntimeError("kitchen closed")

    channel = RecordingChannel()
    rt = Runtime(store, EXAMPLE_FLOWS, channel=channel, services=reg, clock=clock)
    for i, text in enumerate(["pizza", "small", "1", "12 Main Street"]):
        rt.handle("u1", UserMessage(text=text, message_id=f"m{i}"))
    state = store.load("u1")
    assert state["status"] == "failed" and state["step"] == "sorry"
    last = store.history("u1")[-1]
    assert last["event"] == "service_result" and last["error"] == "service_error:RuntimeError: kitchen closed"
    assert channel.texts("u1")[-1].startswith("Sorry, we couldn't place your order")


def test_the_same_call_retried_by_recovery_is_not_done_twice(store: Store, clock: Clock) -> None:
    from examples.services import services

    crashed = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=services, clock=clock,
                      run_services=False)
    for i, text in enumerate(["pizza", "small", "1", "12 Main Street"]):
        crashed.handle("u1", UserMessage(text=text, message_id=f"m{i}"))
    pending = store.load("u1")["pending"]
    [[effect]] = [[e for e in fx if e["kind"] == "call"] for fx in store.pending_effects("u1").values()]
    first = services.call(CallService(**{k: v for k, v in effect.items() if k != "kind"}))
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=services, clock=clock)
    rt.recover(outbox_age_ms=0)
    assert store.load("u1")["slots"]["order_id"] == first.value  # same key, same order: not placed twice
    assert pending["call_id"] == effect["call_id"]
