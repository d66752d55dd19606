"""The pure flow engine: ``step(flow, state, event, now) -> Transition``."""

from flowkit.engine.events import (
    CallService,
    Command,
    Effect,
    End,
    Event,
    Message,
    Reply,
    Schedule,
    ServiceResult,
    Start,
    Timeout,
    effect_from_dict,
)
from flowkit.engine.flowset import FlowSet
from flowkit.engine.inputs import InvalidInput, parse_input
from flowkit.engine.state import Record, State, check_slots, slot_problem
from flowkit.engine.transition import MAX_AUTO_STEPS, Transition, fail, step

__all__ = [
    "MAX_AUTO_STEPS", "CallService", "Command", "Effect", "End", "Event", "FlowSet", "InvalidInput", "Message", "Record",
    "Reply", "Schedule", "ServiceResult", "Start", "State", "Timeout", "Transition", "check_slots",
    "effect_from_dict", "fail", "parse_input", "slot_problem", "step",
]
