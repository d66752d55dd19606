"""`flowkit serve`'s app under real uvicorn in a thread of this process, with a probe that
measures how late the event loop wakes up (a blocked loop shows as lag).

The machine running the tests may be busy (other test runs share its cores): a thread
that only sleeps measures how late *any* thread of this process wakes up at the same
moment, and only the loop's lag beyond that counts. A loop blocked by our code (a
blocking call, a long computation, a collection that stops the world) is late while the
control thread is not: it sleeps without the GIL and needs it only for a few bytecodes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from flowkit.metrics import Metrics, RedisCollector, RedisMetrics, Tee
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime
from flowkit.store import AsyncStore, Store, connect, connect_async
from flowkit.store.server import free_port
from flowkit.web import create_app
from flowkit.webserver import ServerLimits, uvicorn_config
from tests.faults.util import status, wait_for
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, TOKEN

PROBE_EVERY = 0.01


@dataclass
class Served:
    port: int
    runtime: AsyncRuntime | None = None
    lags: list[tuple[float, float, str]] = field(default_factory=list)  # (woke at, seconds late, phase)
    control: list[tuple[float, float]] = field(default_factory=list)  # (woke at, seconds late) of a plain thread
    phase: str = "start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def excess(self) -> list[tuple[float, float, float, str]]:
        """(loop lag beyond the control thread's, loop lag, control lag, phase) per probe."""
        control = sorted(self.control)
        out = []
        for woke, lag, phase in list(self.lags):
            start = woke - lag - PROBE_EVERY
            # control wake-ups within this probe's interval, plus the first one after it
            near = [c for t, c in control if start <= t <= woke + 4 * PROBE_EVERY]
            c = max(near, default=0.0)
            out.append((lag - c, lag, c, phase))
        return out

    def worst(self) -> tuple[float, str]:
        """The longest lag the machine does not explain, and the five longest (for the failure message)."""
        top = sorted(self.excess(), reverse=True)[:5]
        return (top[0][0] if top else 0.0), "; ".join(
            f"{e * 1000:.0f} ms (loop {lag * 1000:.0f}, control {c * 1000:.0f}) in {what}" for e, lag, c, what in top)


@contextmanager
def serve_in_thread(redis_url: str, *, limits: ServerLimits | None = None, **app_kw: Any) -> Iterator[Served]:
    served = Served(free_port())
    stop = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        store = AsyncStore(connect_async(redis_url))
        sync_client = connect(redis_url)
        rt = AsyncRuntime(store, EXAMPLE_FLOWS, channel=AsyncRecordingChannel(), services=EXAMPLE_SERVICES)
        served.runtime = rt
        prom = Metrics(remote=[RedisCollector(Store(sync_client))])
        metrics = Tee(prom, RedisMetrics(sync_client, autoflush=False))
        app = create_app(rt, verify_token=TOKEN, app_secret=SECRET, metrics=metrics, **app_kw)
        server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", served.port, limits or ServerLimits()))

        async def probe() -> None:
            while not stop.is_set():
                t = time.monotonic()
                await asyncio.sleep(PROBE_EVERY)
                woke = time.monotonic()
                served.lags.append((woke, woke - t - PROBE_EVERY, served.phase))

        async def stopper() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.02)
            server.should_exit = True

        tasks = [asyncio.create_task(probe()), asyncio.create_task(stopper())]
        try:
            await server.serve()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.client.aclose()
            sync_client.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    def control() -> None:
        while not stop.is_set():
            t = time.monotonic()
            time.sleep(PROBE_EVERY)
            woke = time.monotonic()
            served.control.append((woke, woke - t - PROBE_EVERY))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    threading.Thread(target=control, daemon=True).start()
    try:
        wait_for(lambda: status(served.port, "/healthz") == 200 or failure, "the in-process server")
        if failure:
            raise failure[0]
        served.lags.clear()  # start-up (imports, first connections) is not serving
        served.control.clear()
        yield served
    finally:
        stop.set()
        thread.join(timeout=30)
    if failure:
        raise failure[0]
