"""The simulator's bookkeeping: a simulated user, and the events queued for and handled
on behalf of users (the main thread owns them; worker threads only read an item)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from flowkit.engine import ServiceResult, UserMessage
from flowkit.sim.config import Persona

UserState = Literal["active", "abandoned", "finished"]


@dataclass(eq=False)
class User:
    index: int
    session_id: str
    flow: str
    persona: Persona
    rng: random.Random
    seq: int = 0
    state: UserState = "active"
    inflight: int = 0  # own messages sent and not yet acknowledged (the user waits for them before answering)
    answered: int = -1  # session version of the last question answered (one answer per question)
    calls: set[str] = field(default_factory=set)  # call ids the simulated services took on
    fresh: bool = False  # the runtime's cache holds this session's current state
    polls: int = 0
    asked: Counter[str] = field(default_factory=Counter)  # how often each question was asked
    numbers: dict[str, float] = field(default_factory=dict)  # last number given to each question

    def next_id(self) -> str:
        self.seq += 1
        return f"wamid.sim.{self.session_id}.{self.seq}"


Kind = Literal["msg", "dup", "result", "poll"]


@dataclass(frozen=True, eq=False)
class Item:
    user: User
    event: UserMessage | ServiceResult | None
    crash: bool = False
    delivery: str = "first"


@dataclass(frozen=True)
class Done:
    at: int
    kind: Kind
    item: Item
    status: str
    acked: bool
    conflicts: int = 0
    version: int | None = None
    calls: bool = False  # the commit asked for a service call (which the simulator runs)
    absorbed: bool = False  # a crashed delivery whose commit found the message already applied



def race_key(entry: tuple[int, int, Kind, Item]) -> tuple[str, str]:
    _, _, kind, item = entry
    ev = item.event
    ident = getattr(ev, "message_id", None) or getattr(ev, "call_id", None) or kind
    return item.user.session_id, str(ident)

