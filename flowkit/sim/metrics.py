"""The deployment-wide counters the simulator lends a runtime that has none, so simulated
traffic moves the dashboard's rates and charts exactly as real traffic does."""

from __future__ import annotations

import time

from flowkit.log import get_logger
from flowkit.metrics.redis import RedisMetrics
from flowkit.runtime import Runtime

FLUSH_EVERY_S = 1.0  # how often (wall clock) the simulator writes the runtime's counters to Redis
log = get_logger("flowkit.sim")


class LentMetrics:
    """The Redis counters ``flowkit serve`` gives its runtime, given to ``runtime`` for a run.

    The runtime counts; nothing here interprets a commit. Minutes follow the runtime's
    clock: virtual time in virtual mode, the wall clock in real time."""

    def __init__(self, runtime: Runtime) -> None:
        # The simulator flushes, not the counting call: a flush that meets a restarting
        # Redis inside rt.handle() would look like a failed delivery after a good commit.
        self.metrics = RedisMetrics(runtime.store.client, flush_every=float("inf"), clock=lambda: runtime.clock())
        runtime.metrics = self.metrics
        self._flushed = time.monotonic()

    def flush(self, *, final: bool = False) -> None:
        """Write the counts (at most every :data:`FLUSH_EVERY_S`, unless ``final``); while Redis
        restarts, keep them for the next flush (``final``: try for 10 s, then say so)."""
        if not final and time.monotonic() - self._flushed < FLUSH_EVERY_S:
            return
        self._flushed = time.monotonic()
        deadline = time.monotonic() + (10 if final else 0)
        while True:
            try:
                self.metrics.flush()
                return
            except Exception as exc:  # noqa: BLE001 - Redis restarting: RedisMetrics keeps the counts for the next flush
                if time.monotonic() >= deadline:
                    if final:  # counters are not conversations: say so and give the result back
                        log.warning("simulated traffic's metrics not written", extra={"error": type(exc).__name__})
                    return
                time.sleep(0.05)
