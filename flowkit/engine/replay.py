"""Rebuild events from history records and replay them through the engine.

Because the engine is pure, a session's history replays to the same states (Temporal's
``Replayer`` idea): a difference means corruption, a lost update, or non-determinism.
Records whose payload was redacted (sensitive slots) or that carry an admin state
(rollback, recovery) cannot be rebuilt from the record alone; :func:`event_from_record`
returns None for them and callers take the stored state at that version instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flowkit.engine.events import Command, Event, ServiceResult, Start, Timeout, UserMessage
from flowkit.engine.state import State
from flowkit.engine.transition import Transition, step
from flowkit.errors import EngineError
from flowkit.flow.model import Flow

NOT_REPLAYABLE = frozenset({"rollback", "recovery", "migrate"})


def event_from_record(record: Mapping[str, Any]) -> Event | None:
    """The event that produced ``record``, or None when the record does not hold enough to rebuild it."""
    kind = record.get("event")
    if kind in NOT_REPLAYABLE:
        return None
    raw = record.get("input")
    payload: dict[str, Any] = json.loads(raw) if isinstance(raw, str) and raw else (dict(raw) if isinstance(raw, Mapping) else {})
    if payload.get("redacted"):
        return None
    actor = record.get("actor") or "runtime"
    mid = record.get("message_id")
    if kind == "start":
        return Start(flow=payload.get("flow") or record.get("flow") or "", message_id=mid, text=payload.get("text"),
                     args=payload.get("args") or {}, actor=actor)
    if kind in ("timeout", "expire"):
        return Timeout(actor=actor)
    if kind == "service_result":
        return ServiceResult(call_id=payload["call_id"], ok=bool(payload.get("ok")), value=payload.get("value"),
                             error=payload.get("error"), actor=actor)
    if kind in ("command", "delivery_failed") and "command" in payload:
        return Command(name=payload["command"], args=payload.get("args") or {}, message_id=mid, actor=actor)
    if kind in ("message", "command"):
        return UserMessage(text=payload.get("text"), type=payload.get("type", "text"), reply_id=payload.get("reply_id"),
                       location=payload.get("location"), media=payload.get("media"), message_id=mid, actor=actor)
    return None


@dataclass(frozen=True)
class ReplayStep:
    record: Mapping[str, Any]
    transition: Transition | None  # None when the record could not be replayed
    error: str | None = None


def replay(records: Iterable[Mapping[str, Any]], flow_for: Callable[[str, str | None], Flow],
           flows: Callable[[str, str | None], Flow], *, session_id: str,
           state_at: Callable[[int], Mapping[str, Any] | None] | None = None,
           initial: State | None = None, profile: Mapping[str, Any] | None = None) -> Iterator[ReplayStep]:
    """Replay ``records`` (in version order) and yield each record with the engine's transition.

    ``flow_for(name, version)`` gives the root flow each record ran under (a what-if
    replay passes a different version here). Unreplayable records take ``state_at(version)``.
    The profile is not in the history (it is personal data), so ``profile`` stands in for it.
    """
    state = initial
    for rec in records:
        event = event_from_record(rec)
        if event is None:
            restored = state_at(int(rec["version"])) if state_at else None
            state = State.from_dict(restored) if restored else state
            yield ReplayStep(rec, None, "not replayable")
            continue
        if isinstance(event, Start) and profile:
            event = Start(flow=event.flow, message_id=event.message_id, text=event.text, args=event.args,
                          profile=profile, actor=event.actor)
        flow_name = event.flow if isinstance(event, Start) else (state.flow if state else str(rec.get("flow") or ""))
        version = rec.get("flow_version") or (state.flow_version if state else None)
        try:
            flow = flow_for(flow_name, version)
            t = step(flow, state, event, int(rec["ts"]), flows=flows, session_id=session_id)
        except EngineError as exc:
            yield ReplayStep(rec, None, str(exc))
            restored = state_at(int(rec["version"])) if state_at else None
            state = State.from_dict(restored) if restored else state
            continue
        yield ReplayStep(rec, t)
        if t.changed:
            state = t.state
