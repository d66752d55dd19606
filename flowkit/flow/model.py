"""The flow model: frozen values that a flow file (or the builder) turns into.

A :class:`Flow` is a named set of :class:`Step` objects, one subclass per kind. Models
compare by content (source locations are excluded), so a flow built in Python, saved as
YAML and loaded again is equal to the original.

Each part lives in a module named for what it holds (re-exported here, the import path
users know): :mod:`~flowkit.flow.location`, :mod:`~flowkit.flow.durations`,
:mod:`~flowkit.flow.specs`, :mod:`~flowkit.flow.messages`, :mod:`~flowkit.flow.steps`,
:mod:`~flowkit.flow.canonical`. This module keeps the flow itself and its constants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from flowkit.flow.canonical import canonical_body
from flowkit.flow.durations import MAX_DURATION_S, format_duration, parse_duration
from flowkit.flow.location import NOWHERE, Loc, loc_field
from flowkit.flow.messages import (
    BotMessage,
    Button,
    CtaButton,
    ListMenu,
    ListRow,
    ListSection,
    MediaRef,
    TemplateMessage,
)
from flowkit.flow.specs import InputSpec, SlotSpec
from flowkit.flow.steps import (
    STEP_KINDS,
    AskStep,
    Branch,
    BranchStep,
    CallStep,
    EndStep,
    FlowStep,
    SayStep,
    SetStep,
    SplitStep,
    Step,
    Variant,
)
from flowkit.flow.template import Template

STATUSES = ("active", "waiting_input", "waiting_service", "completed", "failed", "cancelled", "handoff", "expired")
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})
#: held by people: the bot stops answering until an agent releases the session (docs/handoff.md)
HELD_STATUSES = frozenset({"handoff"})
END_KINDS = ("completed", "failed", "cancelled", "handoff")
INPUT_TYPES = ("text", "int", "number", "choice", "yes_no", "regex", "email", "phone", "date", "location", "media")
SLOT_TYPES = ("text", "int", "number", "bool", "choice", "email", "phone", "date", "location", "media", "any")
MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
COMMAND_NAMES = ("cancel", "restart", "back", "help")

# Names an expression may read besides the flow's slots.
BUILTIN_NAMES = frozenset({"profile", "now", "today", "session"})


# ---------------------------------------------------------------- flow


@dataclass(frozen=True, kw_only=True)
class Commands:
    """Keywords of the global commands, matched case-insensitively against the whole message."""

    cancel: tuple[str, ...] = ("cancel", "stop")
    restart: tuple[str, ...] = ("restart",)
    back: tuple[str, ...] = ("back",)
    help: tuple[str, ...] = ("help",)

    def match(self, text: str) -> str | None:
        word = text.strip().lower()
        for name in COMMAND_NAMES:
            if word in getattr(self, name):
                return name
        return None

    def to_dict(self) -> dict[str, list[str]]:
        default = Commands()
        return {n: list(getattr(self, n)) for n in COMMAND_NAMES if getattr(self, n) != getattr(default, n)}


@dataclass(frozen=True)
class HandoffPolicy:
    """How long a session may wait for a person (``handoff: {timeout: 2h, on_timeout: step}``):
    idle that long in hand-off, the bot takes it back at ``on_timeout``."""

    timeout: float
    on_timeout: str

    def to_dict(self) -> dict[str, Any]:
        return {"timeout": format_duration(self.timeout), "on_timeout": self.on_timeout}


@dataclass(frozen=True, kw_only=True)
class Flow:
    """A validated conversation flow. Build one with :func:`flowkit.load_flow` or :class:`FlowBuilder`."""

    name: str
    start: str
    steps: Mapping[str, Step]
    slots: Mapping[str, SlotSpec] = field(default_factory=dict)
    version: str | None = None
    description: str | None = None
    triggers: tuple[str, ...] = ()
    timeout: float | None = None
    commands: Commands = field(default_factory=Commands)
    help: Template | None = None
    source: str = field(default="<memory>", compare=False)
    loc: Loc = loc_field()
    handoff: HandoffPolicy | None = None

    def __hash__(self) -> int:
        return hash(self.content_hash)

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the canonical content: stable across key order, YAML or JSON, comments,
        quoting, shorthands and spacing inside expressions; the version label is excluded."""
        body = canonical_body(self)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def version_id(self) -> str:
        """What sessions are pinned to: the version label, else the first 12 hex digits of the hash."""
        return self.version if self.version else self.content_hash[:12]

    @property
    def sensitive_slots(self) -> frozenset[str]:
        return frozenset(n for n, s in self.slots.items() if s.sensitive)

    def step(self, name: str) -> Step:
        return self.steps[name]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"flow": self.name}
        if self.version is not None:
            d["version"] = self.version
        if self.description:
            d["description"] = self.description
        d["start"] = self.start
        if self.triggers:
            d["triggers"] = list(self.triggers)
        if self.timeout is not None:
            d["timeout"] = format_duration(self.timeout)
        commands = self.commands.to_dict()
        if commands:
            d["commands"] = commands
        if self.help is not None:
            d["help"] = self.help.source
        if self.slots:
            d["slots"] = {n: s.to_dict() for n, s in self.slots.items()}
        d["steps"] = {n: s.to_dict() for n, s in self.steps.items()}
        if self.handoff is not None:
            d["handoff"] = self.handoff.to_dict()
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


__all__ = [
    "BUILTIN_NAMES", "COMMAND_NAMES", "END_KINDS", "HELD_STATUSES", "INPUT_TYPES", "MEDIA_KINDS", "NOWHERE",
    "SLOT_TYPES", "STATUSES", "STEP_KINDS", "TERMINAL_STATUSES",
    "AskStep", "Branch", "BranchStep", "Button", "CallStep", "Commands", "CtaButton", "EndStep", "Flow", "FlowStep",
    "HandoffPolicy", "InputSpec", "ListMenu", "ListRow", "ListSection", "Loc", "MediaRef", "BotMessage", "SayStep",
    "SetStep", "SlotSpec", "SplitStep", "Step", "TemplateMessage", "Variant",
    "MAX_DURATION_S", "format_duration", "loc_field", "parse_duration",
]


def __getattr__(name: str) -> Any:
    # `Message` named both what the user sent and what the bot says; kept for users' code.
    if name == "Message":
        from flowkit._lazy import renamed

        renamed(__name__, "Message", "BotMessage")
        return BotMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
