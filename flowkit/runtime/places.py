"""Which flow and step produced an outbox entry's replies, kept in memory until they are sent.

Why in memory: a WhatsApp status names only the wamid, and the dashboard's "Delivery by step"
needs the flow and step of that message. The runtime knows them when a commit is applied
(the outcome), the sender knows the wamid a moment later; this bounded map bridges the two
in-process, so neither the engine's Reply nor the store's commit changes. Replies sent by
another process (recovery after a crash) are not found here: their statuses count in the
deployment-wide totals only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

#: Entries kept at most; the oldest go first. A send follows its commit within seconds, so
#: this covers thousands of concurrent conversations while bounding memory.
MAX_PLACES = 10_000


def step_of(record: Mapping[str, Any] | None) -> str | None:
    """The step the replies of an applied commit are attributed to: the commit's ``to_step``
    (the step the session reached, which asked or said them), as ``flowkit analytics -t
    delivery`` attributes them, so the dashboard and the export agree; else the last step of
    its path, else the step it stayed at."""
    if not record:
        return None
    path: Sequence[Any] = record.get("path") or ()
    step = record.get("to_step") or (path[-1] if path else record.get("from_step"))
    return str(step) if step else None


class SentPlaces:
    """(session id, outbox version) -> (flow, step); thread-safe, bounded."""

    def __init__(self, limit: int = MAX_PLACES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._places: OrderedDict[tuple[str, int], tuple[str, str]] = OrderedDict()

    def note(self, sid: str, version: int | None, flow: str | None, record: Mapping[str, Any] | None) -> None:
        step = step_of(record)
        if version is None or not flow or step is None:
            return
        with self._lock:
            self._places[(sid, version)] = (flow, step)
            self._places.move_to_end((sid, version))
            while len(self._places) > self.limit:
                self._places.popitem(last=False)

    def get(self, sid: str, version: int) -> tuple[str, str] | None:
        with self._lock:
            return self._places.get((sid, version))

    def __len__(self) -> int:
        return len(self._places)
