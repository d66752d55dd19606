"""The channel the simulator puts in front of the runtime's, to count replies per session."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

from flowkit.engine import Reply

if TYPE_CHECKING:
    from flowkit.types import Channel


class CountingChannel:
    """Forwards to the runtime's channel and counts replies per session (the checker's
    independent witness). The "I can help with ..." answer to an unrouted message is no
    commit's effect, so it is left out."""

    def __init__(self, inner: Channel, unrouted: str) -> None:
        self.inner = inner
        self.unrouted = unrouted
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def send(self, to: str, reply: Reply) -> str | None:
        out = self.inner.send(to, reply)
        if reply.text != self.unrouted:
            with self._lock:
                self.counts[to] += 1
        return out
