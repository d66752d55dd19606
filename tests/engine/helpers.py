"""Small tools shared by the engine tests: flows from YAML text, a session driver that
checks the engine's invariants after every transition, and the example flows."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowkit.engine import Event, Reply, State, Transition, UserMessage, check_slots, step
from flowkit.engine.locate import locate
from flowkit.engine.state import check_state_shape
from flowkit.flow import Flow, load_flows, parse_flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
FLOWS: dict[str, Flow] = load_flows(EXAMPLES)
T0 = 1_790_000_000_000  # 2026-09-21, epoch ms


def flow(text: str, **kw: Any) -> Flow:
    return parse_flow(textwrap.dedent(text), **kw)


def flows_of(*flows: Flow) -> dict[str, Flow]:
    return {f.name: f for f in flows}


def schema_problems(state: State, root: Flow, flows: Mapping[str, Flow] | None) -> None:
    """Check ``state`` against the slot schema independently of the engine's own check."""
    check_state_shape(state)

    def resolve(name: str, version: str | None) -> Flow:
        if name == root.name and version in (None, root.version_id):
            return root
        assert flows is not None
        f = flows[name]
        assert version is None or f.version_id == version
        return f

    owners = [root] + [resolve(fr["flow"], fr["flow_version"]) for fr in state.stack]
    check_slots(state.slots, owners[-1].slots, where="state")
    for i, frame in enumerate(state.stack):
        check_slots(frame["slots"], owners[i].slots, where=f"frame {i}")
    if state.step is not None and not state.terminal:
        locate(root, state.step, resolve, [fr["flow_version"] for fr in state.stack])


class Session:
    """Drives one session through ``step`` and checks every transition's invariants."""

    def __init__(self, root: Flow, flows: Mapping[str, Flow] | None = None, sid: str = "s1", t0: int = T0) -> None:
        self.root = root
        self.flows = flows
        self.sid = sid
        self.now = t0
        self.state: State | None = None
        self.log: list[Transition] = []

    def send(self, event: Event | str, *, dt_ms: int = 1000, root: Flow | None = None) -> Transition:
        if isinstance(event, str):
            event = UserMessage(text=event, message_id=f"m{len(self.log)}")
        self.now += dt_ms
        before = self.state
        t = step(root or self.root, self.state, event, self.now, flows=self.flows, session_id=self.sid)
        if t.changed:
            assert t.record is not None
            assert t.state.version == (before.version if before else 0) + 1
            assert t.record.version == t.state.version
            assert t.state.updated_at == self.now
            assert State.from_json(t.state.to_json()) == t.state
            schema_problems(t.state, root or self.root, self.flows)
            if t.record.path:
                assert t.record.path[-1] == t.state.step
            self.state = t.state
        else:
            assert t.state is before and t.effects == ()
        self.log.append(t)
        return t

    @property
    def last(self) -> Transition:
        return self.log[-1]

    def texts(self, t: Transition | None = None) -> list[str | None]:
        return [e.text for e in (t or self.last).effects if isinstance(e, Reply)]
