"""The virtual clock coverage runs and stories run on: the runtime reads it, the test moves it."""

from __future__ import annotations

TEST_EPOCH_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: conversations run on this virtual clock
THINK_MS = 1_000  # a user answers one (virtual) second after the question


class VirtualClock:
    """A clock the runtime calls (``clock()`` -> epoch ms) and the test sets (``clock.now = ...``)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
