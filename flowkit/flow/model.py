"""The flow model: frozen values that a flow file (or the builder) turns into.

A :class:`Flow` is a named set of :class:`Step` objects, one subclass per kind. Models
compare by content (source locations are excluded), so a flow built in Python, saved as
YAML and loaded again is equal to the original.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from flowkit.flow.expr import Expr
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


@dataclass(frozen=True)
class Loc:
    """Where something was written: 1-based line and column in ``file``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NOWHERE = Loc("<memory>", 0, 0)


def _loc() -> Any:
    return field(default=NOWHERE, compare=False, repr=False)


# ---------------------------------------------------------------- durations

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """``"30m"``, ``"1h30m"``, ``"10s"``, ``"500ms"``, ``"2d"`` or a number of seconds -> seconds.

    Raises ``ValueError`` with a message meant for the user.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: use a number of seconds or text like 30s, 10m, 1h30m, 2d")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"duration must be positive, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: use text like 30s, 10m, 1h30m, 2d")
    text = value.strip().replace(" ", "")
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {value!r}: use text like 30s, 10m, 1h30m, 2d (units ms, s, m, h, d)")
    if total <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return total


def _approx_duration(seconds: float) -> str:
    d, s = divmod(int(seconds), 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if h:
        parts.append(f"{h}h")
    if m and not d:
        parts.append(f"{m}m")
    return "".join(parts) or f"{s}s"


def format_duration(seconds: float, *, approx: bool = False) -> str:
    """The canonical text of a duration (``1800`` -> ``"30m"``); ``approx``: for people, the
    two largest units that matter (``93784`` -> ``"1d2h"``, ``3725`` -> ``"1h2m"``)."""
    if approx:
        return _approx_duration(seconds)
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    return "".join(out)


# ---------------------------------------------------------------- slots and inputs


@dataclass(frozen=True, kw_only=True)
class SlotSpec:
    """One slot of the session state, validated on every commit."""

    name: str
    type: str = "any"
    options: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    sensitive: bool = False
    loc: Loc = _loc()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for key in ("options", "min", "max", "min_length", "max_length", "pattern"):
            v = getattr(self, key)
            if v is not None:
                d[key] = list(v) if key == "options" else _num_out(v)
        if self.sensitive:
            d["sensitive"] = True
        return d


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What an ``ask`` step accepts. ``min``/``max`` bound numbers (or ISO dates for ``date``)."""

    type: str
    options: tuple[str, ...] | None = None
    min: float | str | None = None
    max: float | str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    media: tuple[str, ...] | None = None
    loc: Loc = _loc()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for key in ("options", "min", "max", "min_length", "max_length", "pattern", "media"):
            v = getattr(self, key)
            if v is not None:
                d[key] = list(v) if isinstance(v, tuple) else _num_out(v)
        return d


def _num_out(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Button:
    id: str
    title: str


@dataclass(frozen=True)
class ListRow:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True)
class ListSection:
    title: str
    rows: tuple[ListRow, ...]


@dataclass(frozen=True)
class ListMenu:
    button: str
    sections: tuple[ListSection, ...]


@dataclass(frozen=True)
class TemplateMessage:
    """A pre-approved WhatsApp template; ``params`` fill its body placeholders in order."""

    name: str
    language: str = "en_US"
    params: tuple[Template, ...] = ()


@dataclass(frozen=True)
class MediaRef:
    """An image, audio, video, document or sticker: ``ref`` is an https URL or an uploaded media id."""

    kind: str
    ref: str


@dataclass(frozen=True)
class CtaButton:
    """A call-to-action button that opens ``url``."""

    text: str
    url: Template


@dataclass(frozen=True, kw_only=True)
class Message:
    """Something the bot says: text, optionally with reply buttons or a list menu, or a template;
    optionally with a header and footer, a media attachment or a call-to-action URL button."""

    text: Template | None = None
    buttons: tuple[Button, ...] = ()
    list: ListMenu | None = None
    template: TemplateMessage | None = None
    header: Template | None = None
    footer: Template | None = None
    media: MediaRef | None = None
    cta: CtaButton | None = None
    loc: Loc = _loc()

    def templates(self) -> builtins.list[Template]:  # `list` is a field of this class
        out = [self.text] if self.text is not None else []
        if self.template is not None:
            out.extend(self.template.params)
        out += [t for t in (self.header, self.footer) if t is not None]
        if self.cta is not None:
            out.append(self.cta.url)
        return out

    @property
    def plain(self) -> bool:
        """Only text: written as a bare string in a flow file."""
        return (not self.buttons and self.list is None and self.template is None and self.header is None
                and self.footer is None and self.media is None and self.cta is None)

    def to_data(self) -> Any:
        if self.text is not None and self.plain:
            return self.text.source
        d: dict[str, Any] = {}
        if self.text is not None:
            d["text"] = self.text.source
        if self.buttons:
            d["buttons"] = [{"id": b.id, "title": b.title} for b in self.buttons]
        if self.list is not None:
            def rows(section: ListSection) -> list[dict[str, str]]:
                return [{"id": r.id, "title": r.title, **({"description": r.description} if r.description else {})}
                        for r in section.rows]

            secs = self.list.sections
            if len(secs) == 1 and not secs[0].title:  # the `rows:` shorthand
                d["list"] = {"button": self.list.button, "rows": rows(secs[0])}
            else:
                d["list"] = {"button": self.list.button,
                             "sections": [{**({"title": s.title} if s.title else {}), "rows": rows(s)} for s in secs]}
        if self.template is not None:
            d["template"] = {
                "name": self.template.name,
                "language": self.template.language,
                **({"params": [p.source for p in self.template.params]} if self.template.params else {}),
            }
        if self.header is not None:
            d["header"] = self.header.source
        if self.footer is not None:
            d["footer"] = self.footer.source
        if self.media is not None:
            key = "url" if self.media.ref.startswith(("https://", "http://")) else "id"
            d["media"] = {"type": self.media.kind, key: self.media.ref}
        if self.cta is not None:
            d["cta"] = {"text": self.cta.text, "url": self.cta.url.source}
        return d


# ---------------------------------------------------------------- steps


@dataclass(frozen=True, kw_only=True)
class Branch:
    """One edge of ``next``: go to ``goto`` when ``when`` holds (``None``: always)."""

    goto: str
    when: Expr | None = None
    loc: Loc = _loc()
    when_loc: Loc = _loc()


@dataclass(frozen=True, kw_only=True)
class Step:
    """Base of every step kind. ``next`` is the ordered list of branches out of the step."""

    kind: ClassVar[str] = "step"
    name: str
    next: tuple[Branch, ...] = ()
    loc: Loc = _loc()
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
    say: Message

    def templates(self) -> list[Template]:
        return self.say.templates()

    def _body(self) -> dict[str, Any]:
        return {"say": self.say.to_data()}


@dataclass(frozen=True, kw_only=True)
class AskStep(Step):
    kind: ClassVar[str] = "ask"
    ask: Message
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
    say: Message | None = None

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
    loc: Loc = _loc()


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


def _canonical_message(msg: Message, data: Any) -> Any:
    if isinstance(data, str):
        return msg.text.canonical() if msg.text is not None else data
    if msg.text is not None:
        data["text"] = msg.text.canonical()
    if msg.template is not None and msg.template.params:
        data["template"]["params"] = [p.canonical() for p in msg.template.params]
    for key in ("header", "footer"):
        if getattr(msg, key) is not None:
            data[key] = getattr(msg, key).canonical()
    if msg.cta is not None:
        data["cta"]["url"] = msg.cta.url.canonical()
    return data


def _canonical_body(flow: Flow) -> dict[str, Any]:
    """``flow.to_dict()`` in the form the content hash reads: no version label, expressions
    and templates in canonical spelling, and ``set`` as a list of pairs (it assigns in
    order, so its order is meaning and must survive ``sort_keys``)."""
    body = flow.to_dict()
    body.pop("version", None)
    if flow.help is not None:
        body["help"] = flow.help.canonical()
    for name, step in flow.steps.items():
        d = body["steps"][name]
        if isinstance(d.get("next"), list):
            for b, bd in zip(step.next, d["next"], strict=True):
                if b.when is not None:
                    bd["if"] = b.when.canonical()
        if isinstance(step, SetStep):
            d["set"] = [[k, e.canonical()] for k, e in step.assign]
        if isinstance(step, (CallStep, FlowStep)) and step.args:
            d["args"] = {k: e.canonical() for k, e in step.args}
        if isinstance(step, (SayStep, EndStep)) and step.say is not None:
            d["say"] = _canonical_message(step.say, d["say"])
        if isinstance(step, AskStep):
            d["ask"] = _canonical_message(step.ask, d["ask"])
            if step.invalid is not None:
                d["invalid"] = step.invalid.canonical()
    return body


#: Where the engine keeps its per-flow plan (flowkit/engine/fast.py) on a Flow object.
PLAN = "_engine_plan"


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
    loc: Loc = _loc()
    handoff: HandoffPolicy | None = None

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __getstate__(self) -> dict[str, Any]:
        # the engine's plan for this flow (closures) is rebuilt where it is needed, not pickled
        return {k: v for k, v in self.__dict__.items() if k != PLAN}

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the canonical content: stable across key order, YAML or JSON, comments,
        quoting, shorthands and spacing inside expressions; the version label is excluded."""
        body = _canonical_body(self)
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
