"""What a simulated user sends at a question: a command (cancel, back, help), an invalid
answer, or a valid one, drawn from the user's own seeded generator in a fixed order (so
the same seed gives the same conversation)."""

from __future__ import annotations

import datetime as dt

from flowkit.engine import UserMessage
from flowkit.flow.model import AskStep, Flow
from flowkit.sim.answers import invalid_answer, valid_answer
from flowkit.sim.config import Persona
from flowkit.sim.events import User
from flowkit.sim.result import SimResult


def choose_message(user: User, p: Persona, owner: Flow, st: AskStep, step: str, at: int, result: SimResult) -> UserMessage:
    """The message ``user`` (behaving as ``p``) sends at question ``st`` of ``owner``, asked at ``at``;
    counts commands and invalid answers in ``result``."""
    r = user.rng
    roll = r.random()
    for rate, word in ((p.cancel_rate, "cancel"), (p.back_rate, "back"), (p.help_rate, "help")):
        if roll < rate:
            result.commands_sent += 1
            return UserMessage(text=word)
        roll -= rate
    if r.random() < p.invalid_rate:
        result.invalid_sent += 1
        return invalid_answer(st, r)
    slot = owner.slots.get(st.save) if st.save else None
    # asked again after a number was accepted (a "more than you paid" loop): people go lower
    upper = user.numbers[step] / 4 if step in user.numbers else None
    msg = valid_answer(st, slot, r, dt.datetime.fromtimestamp(at / 1000, dt.UTC).date(), upper=upper)
    if st.input.type in ("int", "number") and msg.text:
        user.numbers[step] = float(msg.text.replace(",", "."))
    return msg
