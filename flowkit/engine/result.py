"""What one step of the engine returns: :class:`Transition`."""

from __future__ import annotations

from dataclasses import dataclass

from flowkit.engine.events import Effect
from flowkit.engine.state import Record, State


@dataclass(frozen=True)
class Transition:
    """What one event does to a session: the new state, the effects to run after the
    commit, and the history record. ``record`` is None when nothing changes (a late
    service result or a timeout that is no longer due): do not commit then."""

    state: State
    effects: tuple[Effect, ...]
    record: Record | None

    @property
    def changed(self) -> bool:
        return self.record is not None

