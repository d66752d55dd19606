"""The step kinds of a flow (one class each, :data:`STEP_KINDS`) and their ``next`` branches:
what each step holds, where it can go, its expressions and templates, and its flow-file form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowkit.flow.durations import format_duration
from flowkit.flow.expr import Expr
from flowkit.flow.location import Loc, loc_field
from flowkit.flow.messages import BotMessage
from flowkit.flow.specs import InputSpec
from flowkit.flow.template import Template


@dataclass(frozen=True, kw_only=True)
class Branch:
    """One edge of ``next``: go to ``goto`` when ``when`` holds (``None``: always)."""

    goto: str
    when: Expr | None = None
    loc: Loc = loc_field()
    when_loc: Loc = loc_field()


@dataclass(frozen=True, kw_only=True)
class Step:
    """Base of every step kind. ``next`` is the ordered list of branches out of the step."""

    kind: ClassVar[str] = "step"
    name: str
    next: tuple[Branch, ...] = ()
    loc: Loc = loc_field()
    # Where each field's value was written ("say", "on_fail", "set.total", ...), for errors.
    locs: Mapping[str, Loc] = field(default_factory=dict, compare=False, repr=False)

    def loc_of(self, key: str) -> Loc:
        return self.locs.get(key, self.loc)

    @property
    def waits(self) -> bool:
        """True when the engine stops here until an outside event arrives."""
        return False

    def targets(self) -> list[tuple[str, str]]:
        """Every (label, target step) this step can go to, in definition order."""
        out = [((f"if {b.when.source}" if b.when is not None else "next"), b.goto) for b in self.next]
        for attr in ("on_fail", "on_error", "on_timeout", "on_undeliverable"):
            target = getattr(self, attr, None)
            if target:
                out.append((attr, target))
        return out

    def expressions(self) -> list[Expr]:
        return [b.when for b in self.next if b.when is not None]

    def templates(self) -> list[Template]:
        return []

    def to_dict(self) -> dict[str, Any]:
        d = self._body()
        if self.next:
            if len(self.next) == 1 and self.next[0].when is None:
                d["next"] = self.next[0].goto
            else:
                d["next"] = [
                    ({"if": b.when.source, "goto": b.goto} if b.when is not None else {"goto": b.goto})
                    for b in self.next
                ]
        return d

    def _body(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class SayStep(Step):
    kind: ClassVar[str] = "say"
    say: BotMessage

    def templates(self) -> list[Template]:
        return self.say.templates()

    def _body(self) -> dict[str, Any]:
        return {"say": self.say.to_data()}


@dataclass(frozen=True, kw_only=True)
class AskStep(Step):
    kind: ClassVar[str] = "ask"
    ask: BotMessage
    input: InputSpec
    save: str | None = None
    retries: int = 2
    invalid: Template | None = None
    on_fail: str | None = None
    timeout: float | None = None
    on_timeout: str | None = None
    on_undeliverable: str | None = None  # where a reply WhatsApp could not deliver leads (runtime/sender.py)

    @property
    def waits(self) -> bool:
        return True

    def targets(self) -> list[tuple[str, str]]:
        return [("retry", self.name), *super().targets()]

    def templates(self) -> list[Template]:
        return self.ask.templates() + ([self.invalid] if self.invalid is not None else [])

    def _body(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ask": self.ask.to_data(), "input": self.input.to_dict()}
        if self.save:
            d["save"] = self.save
        if self.retries != 2:
            d["retries"] = self.retries
        if self.invalid is not None:
            d["invalid"] = self.invalid.source
        if self.on_fail:
            d["on_fail"] = self.on_fail
        if self.timeout is not None:
            d["timeout"] = format_duration(self.timeout)
        if self.on_timeout:
            d["on_timeout"] = self.on_timeout
        if self.on_undeliverable:
            d["on_undeliverable"] = self.on_undeliverable
        return d


@dataclass(frozen=True, kw_only=True)
class SetStep(Step):
    kind: ClassVar[str] = "set"
    assign: tuple[tuple[str, Expr], ...]

    def expressions(self) -> list[Expr]:
        return [e for _, e in self.assign] + super().expressions()

    def _body(self) -> dict[str, Any]:
        return {"set": {k: e.source for k, e in self.assign}}


@dataclass(frozen=True, kw_only=True)
class BranchStep(Step):
    """A step that only chooses where to go (``next`` with conditions)."""

    kind: ClassVar[str] = "branch"


@dataclass(frozen=True, kw_only=True)
class CallStep(Step):
    """Calls a registered service. The engine only emits the call; the runtime runs it."""

    kind: ClassVar[str] = "call"
    call: str
    args: tuple[tuple[str, Expr], ...] = ()
    save: str | None = None
    timeout: float = 10.0
    on_error: str | None = None
    on_timeout: str | None = None
    on_undeliverable: str | None = None

    @property
    def waits(self) -> bool:
        return True

    def expressions(self) -> list[Expr]:
        return [e for _, e in self.args] + super().expressions()

    def _body(self) -> dict[str, Any]:
        d: dict[str, Any] = {"call": self.call}
        if self.args:
            d["args"] = {k: e.source for k, e in self.args}
        if self.save:
            d["save"] = self.save
        if self.timeout != 10.0:
            d["timeout"] = format_duration(self.timeout)
        if self.on_error:
            d["on_error"] = self.on_error
        if self.on_timeout:
            d["on_timeout"] = self.on_timeout
        if self.on_undeliverable:
            d["on_undeliverable"] = self.on_undeliverable
        return d


@dataclass(frozen=True, kw_only=True)
class FlowStep(Step):
    """Runs another flow as a sub-flow, then returns here and follows ``next``.

    ``args`` sets the sub-flow's slots from this flow's expressions; ``save`` copies
    (this flow's slot, sub-flow's slot) pairs back on return. If the sub-flow ends other
    than ``completed``, the session goes to ``on_fail`` or ends with the same status.
    """

    kind: ClassVar[str] = "flow"
    flow: str
    args: tuple[tuple[str, Expr], ...] = ()
    save: tuple[tuple[str, str], ...] = ()
    on_fail: str | None = None

    @property
    def waits(self) -> bool:
        return True

    def expressions(self) -> list[Expr]:
        return [e for _, e in self.args] + super().expressions()

    def targets(self) -> list[tuple[str, str]]:
        # The sub-flow's return follows `next`; label it so the graph shows where it comes back.
        return [("return" if label == "next" else label, target) for label, target in super().targets()]

    def _body(self) -> dict[str, Any]:
        d: dict[str, Any] = {"flow": self.flow}
        if self.args:
            d["args"] = {k: e.source for k, e in self.args}
        if self.save:
            d["save"] = dict(self.save)
        if self.on_fail:
            d["on_fail"] = self.on_fail
        return d


@dataclass(frozen=True, kw_only=True)
class EndStep(Step):
    """Ends the session with ``end`` (completed, failed, cancelled, handoff), saying ``say`` first."""

    kind: ClassVar[str] = "end"
    end: str = "completed"
    say: BotMessage | None = None

    def templates(self) -> list[Template]:
        return self.say.templates() if self.say is not None else []

    def _body(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.say is not None:
            d["say"] = self.say.to_data()
        d["end"] = self.end
        return d


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One arm of a ``split``: users assigned ``name`` (in proportion to ``weight``) go to ``goto``."""

    name: str
    weight: int
    goto: str
    loc: Loc = loc_field()


@dataclass(frozen=True, kw_only=True)
class SplitStep(Step):
    """An experiment: each session goes to one variant, the same one every time
    (flowkit/engine/experiments.py assigns it from a hash; docs/decisions.md, "Experiments")."""

    kind: ClassVar[str] = "split"
    split: tuple[Variant, ...]

    def targets(self) -> list[tuple[str, str]]:
        return [(f"variant {v.name}", v.goto) for v in self.split]

    def _body(self) -> dict[str, Any]:
        return {"split": [{"variant": v.name, "weight": v.weight, "goto": v.goto} for v in self.split]}


STEP_KINDS: tuple[type[Step], ...] = (SayStep, AskStep, SetStep, BranchStep, CallStep, FlowStep, EndStep, SplitStep)
