"""What a simulation did: counts of every kind, and the log of what was sent (each
delivery, and how many replies each user got) that ``flowkit check --sent`` reads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Sent:
    """One delivery the simulator made (a duplicate or redelivery is another Sent with the same message_id)."""

    session_id: str
    message_id: str
    ts: int
    text: str | None
    acked: bool
    outcome: str  # applied, duplicate, noop, unrouted, crashed, unavailable (over HTTP: applied/not_applied)
    delivery: str = "first"  # first, duplicate, redelivery


@dataclass
class SimResult:
    """What a run did. ``sent`` and ``replies`` are the log the history checker reads."""

    users: int = 0
    started: int = 0
    completed: int = 0
    abandoned: int = 0
    failed: int = 0
    other_end: int = 0  # cancelled, handoff, expired without the user leaving
    still_active: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # terminal status -> sessions (users who did not leave)
    messages: int = 0  # deliveries handled, duplicates and redeliveries included
    invalid_sent: int = 0
    commands_sent: int = 0
    duplicates_sent: int = 0
    duplicates_absorbed: int = 0
    out_of_order: int = 0
    conflicts: int = 0
    crashes: int = 0
    redis_restarts: int = 0
    unavailable: int = 0
    redeliveries: int = 0
    timeouts_fired: int = 0
    service_calls: int = 0
    service_errors: int = 0
    service_slow: int = 0
    service_timeouts: int = 0
    engine_errors: int = 0  # events the runtime refused (EngineError): nothing stored
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    sent: list[Sent] = field(default_factory=list, repr=False)
    replies: dict[str, int] = field(default_factory=dict, repr=False)  # session -> replies the channel got
    inexact: set[str] = field(default_factory=set, repr=False)  # sessions whose reply count is only at-least-once

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("sent", "replies", "inexact")}
        d["seconds"] = round(self.seconds, 3)
        d["messages_per_second"] = round(self.messages_per_second, 1)
        d["users_per_second"] = round(self.users_per_second, 1)
        return d

    def log_records(self) -> Iterator[dict[str, Any]]:
        """The sent-message log: one ``{"kind": "in", ...}`` per delivery, then one
        ``{"kind": "replies", "session_id", "count", "exact"}`` per session (in-process runs)."""
        for s in self.sent:
            yield {"kind": "in", **dataclasses.asdict(s)}
        for sid in sorted(self.replies):
            yield {"kind": "replies", "session_id": sid, "count": self.replies[sid], "exact": sid not in self.inexact}

    def write_log(self, path: str | Path) -> Path:
        """The sent-message log as JSON lines (what ``flowkit check --sent`` reads)."""
        p = Path(path)
        with p.open("w", encoding="utf-8") as f:
            for rec in self.log_records():
                f.write(json.dumps(rec) + "\n")
        return p
