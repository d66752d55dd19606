"""Hand-off to a person: the engine's part (pure: the time is the event's ``now``).

A session in ``handoff`` is live but held by people. The bot says nothing: a user's
message is recorded (event ``message``, status ``handoff``, no reply) so agents and
transcripts see it; an agent's reply is a ``Reply`` effect like any other (the outbox,
the 24-hour window and delivery statuses apply); ``release`` gives the session back to
the bot at a named step, or ends it (``completed``). The flow's ``handoff`` policy
(``timeout``, ``on_timeout``) bounds how long a held session may stay idle; each message
and agent reply restarts that clock (docs/handoff.md).

The functions work on the transition's working copy (``_Run`` in transition.py), which
imports this module lazily, so they only use its attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from flowkit.engine.events import Command, Event, Reply, ServiceResult, Timeout, UserMessage
from flowkit.errors import EngineError
from flowkit.flow.model import HELD_STATUSES, TERMINAL_STATUSES, Flow

#: the commands of this module: an agent or an operator sends them, never a user's text
COMMANDS = frozenset({"handoff", "agent_reply", "release"})
#: WhatsApp's limit for a text message body
MAX_TEXT = 4096
MAX_REASON = 500


class _Run(Protocol):
    """What this module reads and writes of the engine's working copy."""

    root: Flow
    prev: Any
    now: int
    status: str
    pending: Mapping[str, Any] | None
    step_name: str | None
    attempts: dict[str, int]
    trail: Sequence[str]
    slots: Mapping[str, Any]
    effects: list[Any]
    error: str | None
    path: list[str]

    def enter(self, local: str) -> None: ...

    def put(self, name: str, value: Any, *, checked: bool = False) -> None: ...

    def finish(self, status: str) -> None: ...


def held_pending(run: _Run, reason: str | None, since: int | None = None) -> dict[str, Any]:
    """What a held session waits for: a person, since when, why, and until when (the flow's
    ``handoff.timeout`` after the last activity; None: no limit)."""
    policy = run.root.handoff
    return {"wait": "agent", "step": run.step_name, "since": run.now if since is None else since,
            "reason": reason, "deadline": run.now + int(policy.timeout * 1000) if policy is not None else None,
            "trail": []}


def hold(run: _Run, reason: str | None) -> None:
    """Put the session in people's hands (an ``end: handoff`` step or a ``handoff`` command)."""
    run.status = "handoff"
    run.attempts = {}
    run.trail = []
    run.pending = held_pending(run, reason)


def touch(run: _Run) -> None:
    """Activity on a held session: the idle clock starts again; since and reason stay."""
    old = run.pending or {}
    run.pending = held_pending(run, old.get("reason"), since=old.get("since"))


def on_event(run: _Run, event: Event) -> str | None:
    """An event (not a command) for a held session; None: nothing changes."""
    if isinstance(event, UserMessage):
        if event.type == "welcome":
            return None
        profile = event.profile
        if profile and profile != run.slots.get("profile"):
            run.put("profile", dict(profile))
        touch(run)
        return "message"  # recorded with the user's input; no reply: people answer
    if isinstance(event, Timeout):
        deadline = (run.pending or {}).get("deadline")
        policy = run.root.handoff
        if deadline is None or run.now < int(deadline) or policy is None:
            return None
        run.error = "handoff_timeout"
        run.pending = None
        run.enter(policy.on_timeout)
        return "timeout"
    if isinstance(event, ServiceResult):
        return None  # a call that was running when the session was handed off: stale
    raise EngineError(f"a session in hand-off cannot take a {event.kind} event")


def command(run: _Run, cmd: Command) -> str | None:
    """``handoff``, ``agent_reply`` or ``release``; None: nothing changes. Their records are
    ``command`` records (the input names which one), an event every history reader knows."""
    status = run.prev.status
    held = status in HELD_STATUSES
    if cmd.name == "handoff":
        if held:
            return None  # already with people
        if status in TERMINAL_STATUSES:
            raise EngineError(f"session {run.prev.session_id!r} has ended ({status}); start a flow before handing it off")
        hold(run, _text(cmd.args.get("reason"), "reason", MAX_REASON, required=False))
        if run.step_name:  # the record's path says where it was handed off (counted as a hand-off)
            run.path.append(run.step_name)
        return "command"
    if not held:
        raise EngineError(f"session {run.prev.session_id!r} is not in hand-off (it is {status}); "
                          f"{cmd.name.replace('_', ' ')} needs a session held by people")
    if cmd.name == "agent_reply":
        text = _text(cmd.args.get("text"), "text", MAX_TEXT, required=True)
        run.effects.append(Reply(text=text, actor="agent"))
        touch(run)
        return "command"
    to_step = cmd.args.get("to_step")
    run.pending = None
    run.attempts = {}
    run.trail = []
    if to_step is None:
        run.finish("completed")
        return "command"
    if not isinstance(to_step, str) or to_step not in run.root.steps:
        raise EngineError(f"flow {run.root.name!r} has no step {to_step!r} to release the session to; "
                          f"name one of: {', '.join(sorted(run.root.steps))}")
    run.enter(to_step)
    return "command"


def _text(value: Any, what: str, limit: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise EngineError(f"the {what} must be non-empty text")
    if len(value) > limit:
        raise EngineError(f"the {what} is {len(value)} characters; WhatsApp allows {limit}")
    return value


def is_held(pending: Mapping[str, Any] | None) -> bool:
    return pending is not None and pending.get("wait") == "agent"


__all__ = ["COMMANDS", "command", "held_pending", "hold", "is_held", "on_event", "touch"]
