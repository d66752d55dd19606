"""A conversation story and what running one gives: the story, its turns and what each
expects of the bot (:class:`Expect`), the per-turn and per-story results, the report over
a file of stories, and :func:`render` (a bot message on one line, as a person reads it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowkit.engine import Reply
from flowkit.flow.patterns import compile_pattern
from flowkit.testing.edges import Edge


@dataclass(frozen=True)
class Expect:
    """One message the bot must send: ``mode`` is ``contains``, ``regex`` or ``exact``."""

    mode: Literal["contains", "regex", "exact"]
    text: str

    def matches(self, reply: Reply) -> bool:
        if self.mode == "exact":
            return any(s == self.text for s in reply_strings(reply))
        if self.mode == "regex":
            return any(compile_pattern(self.text).search(s) is not None for s in reply_strings(reply))
        return any(self.text.casefold() in s.casefold() for s in reply_strings(reply))

    def describe(self) -> str:
        return {"contains": "a message containing", "regex": "a message matching /",
                "exact": "a message that is exactly"}[self.mode] + (f" {self.text!r}" if self.mode != "regex"
                                                                   else f"{self.text}/")


@dataclass(frozen=True)
class Turn:
    """One user action and what must follow it. ``line`` is its line in the stories file."""

    action: Literal["user", "tap", "start", "wait"]
    value: str
    line: int
    expect: tuple[Expect, ...] = ()
    silent: bool = False
    slots: Mapping[str, Any] | None = None
    status: str | None = None
    step: str | None = None
    wait_s: float = 0.0

    def describe(self) -> str:
        return f"{self.action}: {self.value!r}"


@dataclass(frozen=True)
class Story:
    name: str
    file: str
    line: int
    turns: tuple[Turn, ...]
    slots: Mapping[str, Any] | None = None
    status: str | None = None
    step: str | None = None
    services: Mapping[str, Any] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)  # split step -> variant the story's user gets

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class TurnResult:
    turn: Turn
    sent: list[Reply] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class StoryResult:
    story: Story
    session_id: str
    turns: list[TurnResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # end-of-story checks and the history checker
    covered: set[Edge] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return not self.problems and all(t.passed for t in self.turns)

    def text(self) -> str:
        """The story turn by turn, with what was expected and what the bot said where it differs."""
        head = f"story {self.story.name!r} ({self.story.where}) " + ("passed" if self.passed else "FAILED")
        lines = [head]
        for i, t in enumerate(self.turns, 1):
            lines.append(f"  turn {i} (line {t.turn.line}) {t.turn.describe()}" + ("" if t.passed else "  <-- FAILED"))
            for r in t.sent:
                lines.append(f"      bot: {render(r)}")
            if not t.sent:
                lines.append("      bot: (nothing)")
            for p in t.problems:
                lines.extend("    " + ln for ln in p.splitlines())
        for p in self.problems:
            lines.append(f"  at the end: {p}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.story.name, "where": self.story.where, "session_id": self.session_id,
                "passed": self.passed, "problems": list(self.problems),
                "turns": [{"line": t.turn.line, "action": t.turn.action, "value": t.turn.value,
                           "bot": [render(r) for r in t.sent], "problems": list(t.problems)} for t in self.turns]}


@dataclass
class StoryReport:
    results: list[StoryResult] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    covered: set[Edge] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[StoryResult]:
        return [r for r in self.results if not r.passed]

    @property
    def uncovered(self) -> list[Edge]:
        return [e for e in self.edges if e not in self.covered]

    def text(self) -> str:
        out = [r.text() for r in self.failed]
        passed = len(self.results) - len(self.failed)
        out.append(f"{passed}/{len(self.results)} stories passed; {len(self.covered & set(self.edges))}/"
                   f"{len(self.edges)} flow edges taken")
        entered = {e.flow for e in self.covered}
        untouched = sorted({e.flow for e in self.edges} - entered)
        out.extend(f"  not taken by any story: {e}" for e in self.uncovered if e.flow in entered)
        if untouched:
            out.append(f"  flows no story enters: {', '.join(untouched)}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": len(self.results) - len(self.failed), "total": len(self.results),
                "stories": [r.to_dict() for r in self.results],
                "edges": len(self.edges), "covered": len(self.covered & set(self.edges)),
                "uncovered": [e.to_dict() for e in self.uncovered]}


def render(reply: Reply) -> str:
    """A bot message on one line, as a person reads it: text, then [buttons] or [list rows]."""
    if reply.template is not None:
        name, lang, params = reply.template
        return f"template {name} ({lang}) {list(params)}"
    parts = [repr(reply.text or "")]
    if reply.buttons:
        parts.append("[" + " | ".join(title for _, title in reply.buttons) + "]")
    if reply.sections:
        parts.append("[" + " | ".join(r[1] for _, rows in reply.sections for r in rows) + "]")
    return " ".join(parts)


def reply_strings(reply: Reply) -> list[str]:
    out = [reply.text] if reply.text else []
    out += [title for _, title in reply.buttons]
    out += [r[1] for _, rows in reply.sections for r in rows]
    if reply.template is not None:
        out.append(reply.template[0])
    return out
