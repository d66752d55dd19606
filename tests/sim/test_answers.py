"""Simulated users' answers: valid ones are accepted by the engine, invalid ones rejected."""

import datetime as dt
import random
from pathlib import Path

import pytest

from flowkit.engine import InvalidInput, parse_input
from flowkit.flow import AskStep, load_flows
from flowkit.sim import invalid_answer, valid_answer

FLOWS = load_flows(Path(__file__).resolve().parents[2] / "examples" / "flows")
ASKS = [(f, s) for f in FLOWS.values() for s in f.steps.values() if isinstance(s, AskStep)]
TODAY = dt.date(2026, 10, 1)


@pytest.mark.parametrize("flow,step", ASKS, ids=lambda x: getattr(x, "name", ""))
def test_valid_answers_are_accepted(flow, step) -> None:
    rng = random.Random(7)
    slot = flow.slots.get(step.save) if step.save else None
    for _ in range(50):
        msg = valid_answer(step, slot, rng, TODAY)
        parse_input(step.input, msg, slot=slot, today=TODAY)


@pytest.mark.parametrize("flow,step", ASKS, ids=lambda x: getattr(x, "name", ""))
def test_invalid_answers_are_rejected(flow, step) -> None:
    rng = random.Random(7)
    slot = flow.slots.get(step.save) if step.save else None
    for _ in range(20):
        msg = invalid_answer(step, rng)
        with pytest.raises(InvalidInput):
            parse_input(step.input, msg, slot=slot, today=TODAY)
