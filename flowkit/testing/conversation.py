"""What a coverage run works with and produces: the actions of a scripted conversation,
the conversation, how its run went, and the report over all of them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from flowkit.engine import UserMessage
from flowkit.testing.edges import Edge


@dataclass(frozen=True)
class Action:
    """One thing that happens to a session: the user says something (``say``; the first
    ``say`` of a flow with triggers is its trigger), a flow is started directly (``start``,
    for flows without triggers), the service answers (``result``: ok with ``value``, or
    ``error``), or nothing happens until the deadline (``timeout``)."""

    kind: Literal["start", "say", "result", "timeout"]
    at: int  # virtual time (epoch ms)
    message: UserMessage | None = None
    flow: str | None = None
    ok: bool = True
    value: Any = None
    error: str | None = None

    def describe(self) -> str:
        if self.kind == "start":
            return f"start {self.flow}"
        if self.kind == "say":
            m = self.message
            assert m is not None
            if m.type == "text":
                return f"say {m.text!r}"
            return f"send {m.type}" + (f" {m.reply_id!r}" if m.reply_id else "")
        if self.kind == "result":
            return f"service ok {json.dumps(self.value, default=str)}" if self.ok else f"service error {self.error!r}"
        return "no answer until the deadline"


@dataclass(frozen=True)
class Conversation:
    """A scripted session: actions, the edges the engine said they traverse, and the end
    the runtime must reach (step, status and version of the last commit)."""

    name: str
    flow: str
    actions: tuple[Action, ...]
    covers: frozenset[Edge]
    step: str | None
    status: str
    version: int
    variants: tuple[tuple[str, str], ...] = ()  # (qualified split step, variant) taken; testing/variants.py

    def describe(self) -> list[str]:
        return [a.describe() for a in self.actions]


@dataclass
class ConversationResult:
    conversation: Conversation
    session_id: str
    covered: set[Edge] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        c = self.conversation
        return {"name": c.name, "flow": c.flow, "session_id": self.session_id, "passed": self.passed,
                "actions": c.describe(), "covers": sorted(str(e) for e in c.covers), "problems": self.problems}


@dataclass
class CoverageReport:
    """Edge coverage of a set of flows and how each generated conversation went."""

    edges: list[Edge] = field(default_factory=list)
    covered: set[Edge] = field(default_factory=set)
    uncovered: dict[Edge, str] = field(default_factory=dict)  # edge -> why no conversation takes it
    results: list[ConversationResult] = field(default_factory=list)
    engine_errors: list[str] = field(default_factory=list)  # answers that make the engine fail a session
    states_explored: int = 0

    @property
    def total(self) -> int:
        return len(self.edges)

    @property
    def ratio(self) -> float:
        return len(self.covered) / self.total if self.total else 1.0

    @property
    def failed(self) -> list[ConversationResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        """Every edge covered, every conversation passed, and no answer made the engine fail."""
        return not self.uncovered and not self.failed and not self.engine_errors and len(self.covered) == self.total

    def by_flow(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for e in self.edges:
            cov, tot = out.get(e.flow, (0, 0))
            out[e.flow] = (cov + (e in self.covered), tot + 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "covered": len(self.covered), "total": self.total, "ratio": round(self.ratio, 4),
            "flows": {f: {"covered": c, "total": t} for f, (c, t) in sorted(self.by_flow().items())},
            "uncovered": [{**e.to_dict(), "reason": why} for e, why in self.uncovered.items()],
            "conversations": len(self.results), "passed": sum(r.passed for r in self.results),
            "failed": [r.to_dict() for r in self.failed],
            "engine_errors": self.engine_errors, "states_explored": self.states_explored,
        }

    def text(self) -> str:
        lines = [f"edge coverage {len(self.covered)}/{self.total} ({self.ratio:.0%}); "
                 f"{len(self.results) - len(self.failed)}/{len(self.results)} conversations passed"]
        for flow, (c, t) in sorted(self.by_flow().items()):
            lines.append(f"  {flow}: {c}/{t}")
        return "\n".join(lines + self.findings())

    def findings(self) -> list[str]:
        """One line per uncovered edge, failed conversation (and its actions) and engine error."""
        lines = [f"uncovered {e}: {why}" for e, why in self.uncovered.items()]
        for r in self.failed:
            lines.append(f"FAILED {r.conversation.name} ({r.session_id}): " + "; ".join(r.problems))
            lines.append("  actions: " + " | ".join(r.conversation.describe()))
        return lines + [f"engine error: {msg}" for msg in self.engine_errors]

