"""Events into the engine and effects out of it (docs/design.md, "Session state and events").

All are frozen values with a JSON form, so effects can sit in the store's outbox and
events can be recorded in history and replayed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MessageKind = Literal["text", "button_reply", "list_reply", "location", "media", "unsupported",
                      "contacts", "order", "nfm_reply", "welcome"]
COMMANDS = ("cancel", "restart", "back", "help")
ADMIN_COMMANDS = ("reset", "rollback", "migrate", "recover", "fail")


# ---------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class Start:
    """Start ``flow`` for the session (by trigger keyword or explicitly). ``text`` is the triggering message."""

    flow: str
    message_id: str | None = None
    text: str | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    args: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "runtime"
    #: a business-initiated start: this approved template (name, language, body params) is
    #: the opening message, in place of what the flow says before its first wait
    template: tuple[str, str, tuple[str, ...]] | None = None

    kind: Literal["start"] = "start"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"flow": self.flow}
        if self.text is not None:
            d["text"] = self.text
        if self.args:
            d["args"] = dict(self.args)
        if self.template is not None:
            d["template"] = {"name": self.template[0], "language": self.template[1], "params": list(self.template[2])}
        return d


@dataclass(frozen=True, kw_only=True)
class UserMessage:
    """A user's message. ``reply_id`` is the id of a tapped button or list row."""

    text: str | None = None
    type: MessageKind = "text"
    reply_id: str | None = None
    location: Mapping[str, Any] | None = None
    media: Mapping[str, Any] | None = None
    message_id: str | None = None
    profile: Mapping[str, Any] | None = None
    actor: str = "runtime"

    kind: Literal["message"] = "message"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for key in ("text", "reply_id", "location", "media"):
            v = getattr(self, key)
            if v is not None:
                d[key] = dict(v) if isinstance(v, Mapping) else v
        return d


@dataclass(frozen=True, kw_only=True)
class ServiceResult:
    """The outcome of a :class:`CallService` effect, matched by ``call_id``."""

    call_id: str
    ok: bool
    value: Any = None
    error: str | None = None
    actor: str = "runtime"

    kind: Literal["service_result"] = "service_result"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"call_id": self.call_id, "ok": self.ok}
        if self.ok:
            d["value"] = self.value
        else:
            d["error"] = self.error
        return d

    @property
    def message_id(self) -> str:
        # The call id doubles as the dedupe key: a result delivered twice applies once.
        return f"result:{self.call_id}"


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """A scheduled deadline came due. The engine works out which one from the state and ``now``."""

    actor: str = "runtime"
    kind: Literal["timeout"] = "timeout"
    message_id: None = None

    def payload(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class Command:
    """A global command (cancel, restart, back, help) or an admin one (reset, rollback, migrate, recover, fail).

    Admin commands carry their data in ``args``: rollback/recover ``{"state": {...}, "to_version": N}``,
    migrate ``{"step": "new_step"}`` (with the new flow passed to the engine), fail ``{"reason": "..."}``.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    actor: str = "runtime"

    kind: Literal["command"] = "command"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"command": self.name}
        extra = {k: v for k, v in self.args.items() if k != "state"}
        if extra:
            d["args"] = extra
        return d


Event = Start | UserMessage | ServiceResult | Timeout | Command


# ---------------------------------------------------------------- effects


@dataclass(frozen=True, kw_only=True)
class Reply:
    """Send a message to the session's user: text, with up to 3 buttons or a list menu, or a template."""

    text: str | None = None
    buttons: tuple[tuple[str, str], ...] = ()
    list_button: str | None = None
    sections: tuple[tuple[str, tuple[tuple[str, str, str | None], ...]], ...] = ()
    template: tuple[str, str, tuple[str, ...]] | None = None  # (name, language, params)
    header: str | None = None
    footer: str | None = None
    media: tuple[str, str] | None = None  # (kind, https URL or uploaded media id); text is its caption
    cta: tuple[str, str] | None = None  # (button text, url): a call-to-action URL button
    location_request: bool = False  # a "Send location" button under the text
    actor: Literal["bot", "agent"] = "bot"  # who speaks: the flow, or a person during a hand-off

    kind: Literal["reply"] = "reply"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "reply"}
        if self.text is not None:
            d["text"] = self.text
        if self.buttons:
            d["buttons"] = [list(b) for b in self.buttons]
        if self.sections:
            d["list_button"] = self.list_button
            d["sections"] = [[title, [list(r) for r in rows]] for title, rows in self.sections]
        if self.template is not None:
            d["template"] = [self.template[0], self.template[1], list(self.template[2])]
        d.update(self._parts())
        if self.location_request:
            d["location_request"] = True
        if self.actor != "bot":
            d["actor"] = self.actor
        return d

    def _parts(self) -> dict[str, Any]:
        """The header, footer, media and call-to-action that are set."""
        d: dict[str, Any] = {key: getattr(self, key) for key in ("header", "footer") if getattr(self, key) is not None}
        d.update({key: list(getattr(self, key)) for key in ("media", "cta") if getattr(self, key) is not None})
        return d


@dataclass(frozen=True, kw_only=True)
class CallService:
    """Ask the runtime to call ``service`` with ``args``; ``call_id`` is the idempotency key."""

    call_id: str
    service: str
    args: Mapping[str, Any]
    timeout: float

    kind: Literal["call"] = "call"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "call", "call_id": self.call_id, "service": self.service, "args": dict(self.args), "timeout": self.timeout}


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Wake the session at ``at`` (epoch ms) with a :class:`Timeout` event."""

    at: int
    reason: str

    kind: Literal["schedule"] = "schedule"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "schedule", "at": self.at, "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class End:
    """The session ended with ``status``."""

    status: str

    kind: Literal["end"] = "end"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "end", "status": self.status}


Effect = Reply | CallService | Schedule | End


def effect_from_dict(d: Mapping[str, Any]) -> Effect:
    """The inverse of ``effect.to_dict()`` (effects come back from the store's outbox)."""
    kind = d.get("kind")
    if kind == "reply":
        tpl = d.get("template")
        return Reply(
            text=d.get("text"),
            buttons=tuple((b[0], b[1]) for b in d.get("buttons", ())),
            list_button=d.get("list_button"),
            sections=tuple((s[0], tuple((r[0], r[1], r[2]) for r in s[1])) for s in d.get("sections", ())),
            template=(tpl[0], tpl[1], tuple(tpl[2])) if tpl else None,
            header=d.get("header"),
            footer=d.get("footer"),
            media=(d["media"][0], d["media"][1]) if d.get("media") else None,
            cta=(d["cta"][0], d["cta"][1]) if d.get("cta") else None,
            location_request=bool(d.get("location_request")),
            actor="agent" if d.get("actor") == "agent" else "bot",
        )
    if kind == "call":
        return CallService(call_id=d["call_id"], service=d["service"], args=d["args"], timeout=float(d["timeout"]))
    if kind == "schedule":
        return Schedule(at=int(d["at"]), reason=d["reason"])
    if kind == "end":
        return End(status=d["status"])
    raise ValueError(f"unknown effect kind {kind!r}")


def event_to_json(event: Event) -> str:
    return json.dumps(event.payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def __getattr__(name: str) -> Any:
    # `Message` named both what the user sent and what the bot says; kept for users' code.
    if name == "Message":
        from flowkit._lazy import renamed

        renamed(__name__, "Message", "UserMessage")
        return UserMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
