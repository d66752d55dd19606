"""The engine: ``step(flow, state, event, now) -> Transition``. Pure and deterministic.

No I/O, no clock, no randomness: everything that varies comes in as an argument, so a
recorded history replays to the same states, and a commit conflict is handled by simply
running ``step`` again on the fresh state.

This module is the entry point; the work is done by one interpreter for every event kind
(engine/run.py, with the commands in engine/commands.py and what ends a wait in
engine/waits.py) using a per-flow plan (engine/plan.py). The names other modules import
from here stay importable from here.
"""

from __future__ import annotations

import datetime as dt

from flowkit.engine.events import Command, Event, Start
from flowkit.engine.plan import plan_of
from flowkit.engine.replies import (
    BUSY_TEXT,
    CANCELLED_TEXT,
    EXPIRED_TEXT,
    NO_BACK_TEXT,
    build_reply,
    option_menu,
    static_text,
)
from flowkit.engine.result import Transition
from flowkit.engine.run import MAX_AUTO_STEPS, FlowSource, Run
from flowkit.engine.state import State
from flowkit.engine.values import payload_json, schedule, scope, to_ms
from flowkit.errors import EngineError
from flowkit.flow.model import Flow

__all__ = [
    "BUSY_TEXT", "CANCELLED_TEXT", "EXPIRED_TEXT", "MAX_AUTO_STEPS", "NO_BACK_TEXT", "FlowSource", "Transition",
    "build_reply", "fail", "option_menu", "payload_json", "plan_of", "schedule", "scope", "static_text", "step",
]


def step(flow: Flow, state: State | None, event: Event, now: int | dt.datetime, *,
         flows: FlowSource | None = None, session_id: str | None = None) -> Transition:
    """Apply ``event`` to ``state`` under ``flow`` (the session's root flow, at its pinned version).

    ``now`` is epoch milliseconds (or an aware datetime). ``flows`` resolves sub-flows by
    name (and pinned version). ``state`` is None only for a :class:`Start` of a new session,
    whose id is ``session_id``.
    """
    now_ms = now if type(now) is int else to_ms(now)
    if state is None:
        if not isinstance(event, Start):
            raise EngineError(f"a new session can only begin with a Start event, not {event.kind}; route the message to a flow first")
        if not session_id:
            raise EngineError("a new session needs a session_id")
    else:
        if session_id is not None and session_id != state.session_id:
            raise EngineError(f"the state belongs to session {state.session_id!r}, not {session_id!r}")
        if now_ms < state.updated_at:
            # A clock behind the last commit would make durations negative; keep time monotonic.
            now_ms = state.updated_at
    return Run(flow, state, now_ms, flows, session_id or (state.session_id if state else "")).apply(event)


def fail(flow: Flow, state: State, reason: str, now: int | dt.datetime, *, actor: str = "runtime") -> Transition:
    """End the session as failed (e.g. after an :class:`EngineError`), recording ``reason``."""
    return step(flow, state, Command(name="fail", args={"reason": reason}, actor=actor), now)


