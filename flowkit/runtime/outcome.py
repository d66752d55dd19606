"""What handling one event did (:class:`Outcome`), what a recovery round repaired
(:class:`RecoveryReport`), and the small decisions both runtimes take on an outcome."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowkit.engine import CallService, Event, Reply, UserMessage
from flowkit.engine.events import Effect

OutcomeStatus = Literal["applied", "duplicate", "noop", "unrouted"]


@dataclass(frozen=True)
class Outcome:
    """What handling one event did."""

    session_id: str
    status: OutcomeStatus
    version: int | None = None
    flow: str | None = None
    record: Mapping[str, Any] | None = None
    replies: tuple[Reply, ...] = ()
    conflicts: int = 0
    error: str | None = None
    effects: tuple[Effect, ...] = field(default=(), repr=False)
    flow_version: str | None = None


@dataclass(frozen=True)
class RecoveryReport:
    """What one :meth:`Runtime.recover` round repaired."""

    timeouts_fired: int
    outbox_redelivered: int
    calls_resumed: int
    outbox_superseded: int
    expired: int
    quarantined_restored: int
    scanned: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def inbound_id(event: Event) -> str | None:
    """The WhatsApp id of a user's message, to mark it read."""
    return event.message_id if isinstance(event, UserMessage) else None


def routes(outcome: Outcome) -> bool:
    """May a failure of this outcome's replies follow on_undeliverable? Not if they answer a failure."""
    return (outcome.record or {}).get("event") != "delivery_failed"


def resume_grace_ms(call: CallService) -> int:
    """How long the timeout index waits for a resumed call: its own timeout plus a margin."""
    return int(call.timeout * 1000) + 5_000


def as_duplicate(outcome: Outcome, seen_version: int | None) -> Outcome:
    """An unrouted message the session already applied (by ``seen_version``) is a duplicate."""
    return outcome if not seen_version else Outcome(outcome.session_id, "duplicate", seen_version)


__all__ = ["Outcome", "OutcomeStatus", "RecoveryReport", "as_duplicate", "inbound_id", "resume_grace_ms", "routes"]
