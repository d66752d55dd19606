"""What ends a wait: a service's result (``ServiceResult``) and a deadline (``Timeout``),
applied to a transition's working copy (:class:`~flowkit.engine.run.Run`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit.engine.events import Reply, ServiceResult
from flowkit.engine.replies import EXPIRED_TEXT
from flowkit.engine.state import slot_problem
from flowkit.engine.values import json_value
from flowkit.errors import EngineError
from flowkit.flow.model import AskStep, CallStep

if TYPE_CHECKING:  # run.py imports this module; the type is only needed by mypy
    from flowkit.engine.run import Run


def service_result(run: Run, res: ServiceResult) -> bool:
    """Save a good result and move on, or follow the call's ``on_error``; False for a result of
    a call the session no longer waits on (nothing changes)."""
    p = run.pending
    if not p or p.get("wait") != "service" or p.get("call_id") != res.call_id:
        return False  # late or duplicated result for a call the session no longer waits on
    st = run.current_step()
    assert isinstance(st, CallStep)
    slot = run.flow.slots.get(st.save) if st.save else None
    run.redact = bool(slot and slot.sensitive)
    run.why["service"] = {"call": st.call, "ok": res.ok, "error": res.error}
    if res.ok:
        try:
            value = json_value(res.value, "the service result")
            why = slot_problem(slot, value) if slot is not None else None
        except EngineError:
            why = "not JSON (only text, numbers, true/false, null, lists and maps with text keys)"
        if why is None:
            if st.save:
                run.put(st.save, value, checked=slot is not None)  # (slot_problem passed it)
            run.follow(st)
            return True
        run.error = f"service_error:bad_result ({why})"
        run.why["service"]["error"] = f"bad_result ({why})"
    else:
        run.error = f"service_error:{res.error or 'unknown'}"
    call_failed(run, st, timeout=False)
    return True


def call_failed(run: Run, st: CallStep, *, timeout: bool) -> None:
    """Go to the call's ``on_timeout`` / ``on_error`` step, or fail the session."""
    target = (st.on_timeout or st.on_error) if timeout else st.on_error
    if target:
        run.enter(target)
    else:
        run.finish("failed")


def timeout(run: Run) -> str | None:
    """The record's event name for a deadline that is due (the step's or the flow's
    inactivity timeout), or None when none is (nothing changes)."""
    p = run.pending or {}
    deadline = p.get("deadline")
    if deadline is not None and run.now >= deadline:
        st = run.current_step()
        run.error = "timeout"
        if isinstance(st, CallStep):
            call_failed(run, st, timeout=True)
            return "timeout"
        if isinstance(st, AskStep) and st.on_timeout:
            run.attempts = {}
            run.enter(st.on_timeout)
            return "timeout"
        run.effects.append(Reply(text=EXPIRED_TEXT))
        run.finish("expired")
        return "expire"
    if run.root.timeout is not None and run.prev is not None and run.now >= run.prev.updated_at + int(run.root.timeout * 1000):
        run.error = "inactive"
        run.effects.append(Reply(text=EXPIRED_TEXT))
        run.finish("expired")
        return "expire"
    return None
