"""Values the store hands back (frozen, JSON-able with ``to_dict``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "conflict", "duplicate"]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one commit did.

    ``ok``: applied, ``version`` is the new version. ``conflict``: nothing written, another
    writer got there first; ``version`` is the current version and ``current`` the current
    state, checksum-verified, when it could be read in the same round trip (rerun the engine
    on it; when it is None, load). ``duplicate``: nothing written, the message id was
    applied before, by ``version``.
    """

    outcome: Outcome
    version: int
    current: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "version": self.version}


@dataclass(frozen=True)
class StoreConfig:
    """The knobs of a store, shared by :class:`Store` and :class:`AsyncStore`.

    - ``snapshot_every``: store the whole state in every Nth version's history element instead
      of a delta (0: only the first), so ``state_at`` replays at most N deltas;
    - ``history_max_len``: keep only the last N history entries in Redis (None: all); older
      versions are then only in exports;
    - ``dedupe_max``: message ids remembered per session for dedupe;
    - ``validator``: called with every state committed or loaded (e.g. the flow's slot
      schema); raising means "invalid";
    - ``now_ms``: the store's clock (recovery, expiry and outbox times);
    - ``terminal_ttl_ms``: a finished session's keys expire from Redis after this long
      (None: kept until deleted);
    - ``indexes_in_commit``: the commit script writes the derived indexes and counters itself
      (set by the stores on a single server; on a cluster they live in other slots).
    """

    snapshot_every: int = 20
    history_max_len: int | None = None
    dedupe_max: int = 1000
    validator: Callable[[dict[str, Any]], None] | None = None
    now_ms: Callable[[], int] = wall_ms
    terminal_ttl_ms: int | None = None
    indexes_in_commit: bool = False

    def __post_init__(self) -> None:
        if self.snapshot_every < 0 or self.dedupe_max < 0:
            raise ValueError("snapshot_every and dedupe_max must be >= 0")
        if self.history_max_len is not None and self.history_max_len < 1:
            raise ValueError("history_max_len must be >= 1 or None")
