"""The engine's commands: what ``cancel``, ``restart``, ``back``, ``help``, ``reset``, ``rollback``,
``recover``, ``migrate``, ``fail`` and ``delivery_failed`` do to a transition's working copy
(:class:`~flowkit.engine.run.Run`). The hand-off commands live in engine/handoff.py.
Each returns the history record's event name, or None when nothing changes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flowkit.engine import handoff
from flowkit.engine.events import Command, Reply
from flowkit.engine.plan import plan_of
from flowkit.engine.replies import CANCELLED_TEXT, NO_BACK_TEXT, default_help
from flowkit.engine.state import PROFILE, State
from flowkit.errors import EngineError
from flowkit.flow.model import HELD_STATUSES, AskStep

if TYPE_CHECKING:  # run.py imports this module; the type is only needed by mypy
    from flowkit.engine.run import Run


def command(run: Run, cmd: Command) -> str | None:
    """Apply ``cmd``: the record's event name, or None when nothing changes."""
    name = cmd.name
    assert run.prev is not None
    if name in handoff.COMMANDS:
        return handoff.command(run, cmd)
    if name in ("cancel", "restart", "back", "help") and run.prev.terminal:
        raise EngineError(f"session {run.session_id!r} has ended ({run.prev.status}); {name} needs an active session")
    if name in _USER:
        _USER[name](run)
        return "command"
    if name in ("restart", "reset"):
        run.root_reset()
        run.flow_version = run.root.version_id if name == "reset" else run.flow_version
        run.enter(run.root.start)
        return "command"
    return _operator(run, cmd)


def _operator(run: Run, cmd: Command) -> str | None:
    """The commands an operator or the runtime sends (never a user's words)."""
    name = cmd.name
    assert run.prev is not None
    if name in ("rollback", "recover"):
        target = cmd.args.get("state")
        if not isinstance(target, Mapping):
            raise EngineError(f"{name} needs the target state in args['state']")
        restore(run, State.from_dict(target))
        return "rollback" if name == "rollback" else "recovery"
    if name == "migrate":
        migrate(run, cmd.args.get("step"))
        return "migrate"
    if name == "delivery_failed":
        return undeliverable(run, cmd)
    if name == "fail":
        run.error = str(cmd.args.get("reason") or "failed")[:500]
        if run.prev.terminal:
            return None
        run.finish("failed")
        return "command"
    raise EngineError(f"unknown command {name!r} (known: cancel, restart, back, help, reset, rollback, migrate, recover, fail, "
                      "delivery_failed)")


def cancel(run: Run) -> None:
    run.effects.append(Reply(text=CANCELLED_TEXT))
    run.finish("cancelled")


def help_(run: Run) -> None:
    text = run.render(run.root.help, "help") or default_help(run.root)
    run.effects.append(Reply(text=text))
    reprompt(run)


def undeliverable(run: Run, cmd: Command) -> str:
    """A reply could not be delivered (a failed status, a permanent send error, or a
    free-form message outside the 24-hour window): record it; follow the step's or the
    flow's ``on_undeliverable`` only if the failed reply belongs to the current version
    (a late status about an old question must not move the session) and the session is
    not already there (its own message failing must not loop)."""
    assert run.prev is not None
    run.error = str(cmd.args.get("error") or "undeliverable")[:200]
    if (run.prev.terminal or cmd.args.get("version") != run.prev.version or not run.step_name
            or cmd.args.get("route") is False):
        return "delivery_failed"
    st = run.current_step()
    target = getattr(st, "on_undeliverable", None) or getattr(run.flow, "on_undeliverable", None)
    if target and target != run.local(run.step_name):
        run.attempts = {}
        run.enter(target)
    return "delivery_failed"


def back(run: Run) -> None:
    # At a sub-flow's first question, `back` leaves the sub-flow for the caller's last question.
    levels, trail = 0, run.trail
    while not trail and levels < len(run.stack):
        levels += 1
        trail = run.stack[-levels]["trail"]
    if not trail or (run.pending or {}).get("wait") != "input":
        run.effects.append(Reply(text=NO_BACK_TEXT))
        reprompt(run)
        return
    for _ in range(levels):
        frame = run.stack.pop()
        profile = run.slots.get(PROFILE)
        run.replace_slots(dict(frame["slots"]))
        run.attempts, run.trail = dict(frame["attempts"]), list(frame["trail"])
        if profile is not None:
            run.put(PROFILE, profile)
    target = run.trail[-1]
    run.trail = run.trail[:-1]
    run.attempts = {}
    run.enter(run.local(target))


def reprompt(run: Run) -> None:
    if (run.pending or {}).get("wait") == "input":
        st = run.current_step()
        if isinstance(st, AskStep):
            run.say(st.ask, "ask", extra=st)


def restore(run: Run, target: State) -> None:
    if target.session_id != run.session_id or target.flow != run.root.name:
        raise EngineError(f"the target state is session {target.session_id!r} in flow {target.flow!r}, "
                          f"not session {run.session_id!r} in flow {run.root.name!r}")
    if target.flow_version != run.root.version_id:
        # The restored state is pinned to its own flow version: validate it (and run the
        # session from now on) under that version, not the one the session had moved to.
        run.root = run.resolve(run.root.name, target.flow_version)
        run.root_plan = plan_of(run.root)
    run.step_name, run.status = target.step, target.status
    run.replace_slots(dict(target.slots))
    run.attempts = dict(target.attempts)
    run.stack = [dict(f) for f in target.stack]
    run.pending = dict(target.pending) if target.pending is not None else None
    run.trail = list(run.pending.get("trail", [])) if run.pending else []
    run.flow_version, run.started_at = target.flow_version, target.started_at
    if run.step_name and run.step_name != (run.prev.step if run.prev else None):
        run.path.append(run.step_name)


def migrate(run: Run, new_step: Any) -> None:
    if run.stack:
        raise EngineError("cannot migrate a session inside a sub-flow; wait until it returns or map the calling step")
    run.flow_version = run.root.version_id
    target = new_step or (run.local(run.step_name) if run.step_name else None)
    if run.prev is not None and (run.prev.terminal or run.prev.status in HELD_STATUSES):
        return  # re-pinned only: an ended session stays ended, a held one stays with people
    if not isinstance(target, str) or target not in run.root.steps:
        raise EngineError(f"step {target!r} does not exist in flow {run.root.name!r} version {run.root.version_id}; give a step mapping")
    run.replace_slots({k: v for k, v in run.slots.items() if k == PROFILE or k in run.root.slots})
    run.attempts, run.pending = {}, None
    # `back` must only lead to questions of the new version, and never forward past the
    # step the session is moved to: keep the earlier answered ask steps that still exist.
    trail = [s for s in run.trail if isinstance(run.root.steps.get(s), AskStep)]
    if target in trail:
        trail = trail[: trail.index(target)]
    run.trail = trail
    run.enter(target)



#: the commands a user's words name (flow.commands): they need a live session
_USER: dict[str, Callable[[Run], None]] = {"cancel": cancel, "back": back, "help": help_}
