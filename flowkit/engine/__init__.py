"""The pure flow engine: ``step(flow, state, event, now) -> Transition``."""

from typing import Any

from flowkit.engine.events import (
    CallService,
    Command,
    Effect,
    End,
    Event,
    Reply,
    Schedule,
    ServiceResult,
    Start,
    Timeout,
    UserMessage,
    effect_from_dict,
)
from flowkit.engine.flowset import FlowSet
from flowkit.engine.inputs import InvalidInput, parse_input
from flowkit.engine.state import Record, State, check_slots, slot_problem
from flowkit.engine.transition import MAX_AUTO_STEPS, Transition, fail, step

__all__ = [
    "MAX_AUTO_STEPS", "CallService", "Command", "Effect", "End", "Event", "FlowSet", "InvalidInput", "UserMessage", "Record",
    "Reply", "Schedule", "ServiceResult", "Start", "State", "Timeout", "Transition", "check_slots",
    "effect_from_dict", "fail", "parse_input", "slot_problem", "step",
]


def __getattr__(name: str) -> Any:
    # `Message` named both what the user sent and what the bot says; kept for users' code.
    if name == "Message":
        from flowkit._lazy import renamed

        renamed(__name__, "Message", "UserMessage")
        return UserMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
