"""The one retry policy: how often and how fast something that failed for a transient reason
is tried again (a service call inside its step's timeout, a send to the Graph API)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowkit.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1: no retry). ``backoff`` is the first delay in seconds; it doubles
    per attempt up to ``max_backoff``, times a random 0.5–1 so that many sessions retrying at
    once spread out. A ``Retry-After`` longer than ``max_retry_after`` seconds (an HTTP API
    asking to wait) is not waited for: the caller gives up with the error instead."""

    attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 2.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"a retry policy needs at least 1 attempt, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ConfigError("retry delays cannot be negative")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


__all__ = ["RetryPolicy"]
