"""What the runtime writes into a session's transcript (:mod:`flowkit.store.transcript`).

Entries are built from the engine's own values (a :class:`~flowkit.engine.UserMessage` in, a
:class:`~flowkit.engine.Reply` out), so every channel gets a transcript; the WhatsApp
webhook adds the messages that answer nothing (reactions, edits, revokes) through
:func:`inbound_entry` with their own kind and payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flowkit.engine import Reply, UserMessage
from flowkit.store import transcript as tx
from flowkit.store.driver import Batch

#: Who sent an outbound message: the flow (``bot``) or a person answering in its place (``agent``).
OUT_ACTORS = ("bot", "agent")


class TranscriptStore(Protocol):
    """The part of a store the transcript writers need (Store and AsyncStore both have it)."""

    @property
    def transcript_keep(self) -> int | None: ...

    @property
    def transcript_ttl_ms(self) -> int | None: ...


def reply_kind(reply: Reply) -> str:
    """``template``, ``media``, ``interactive`` (buttons, list, URL button, location request) or ``text``."""
    if reply.template is not None:
        return "template"
    if reply.media is not None:
        return "media"
    if reply.buttons or reply.sections or reply.cta is not None or reply.location_request:
        return "interactive"
    return "text"


def reply_text(reply: Reply) -> str | None:
    """What the user reads first: the text (a caption for media), else the template's name."""
    if reply.text is not None:
        return reply.text
    if reply.template is not None:
        name, _lang, params = reply.template
        return f"[template {name}" + (f": {', '.join(params)}" if params else "") + "]"
    return None


def outbound_entry(reply: Reply, *, wamid: str | None, ts: int, version: int | None, index: int | None,
                   actor: str = "bot") -> dict[str, Any]:
    """A reply WhatsApp accepted as ``wamid`` (its statuses are joined to it by that id)."""
    if actor not in OUT_ACTORS:
        raise ValueError(f"an outbound message is sent by one of {', '.join(OUT_ACTORS)}, not {actor!r}")
    payload = reply.to_dict()
    payload.pop("kind", None)
    payload.pop("text", None)  # the entry's own `text` (Redis memory: every byte is per message)
    return {"dir": "out", "ts": ts, "wamid": wamid, "kind": reply_kind(reply), "text": reply_text(reply),
            "payload": payload, "version": version, "index": index, "actor": actor}


def inbound_entry(*, wamid: str | None, ts: int, kind: str, text: str | None, payload: Mapping[str, Any],
                  version: int | None) -> dict[str, Any]:
    """A user's message; ``version`` is the one it produced (None: it changed nothing)."""
    return {"dir": "in", "ts": ts, "wamid": wamid, "kind": kind, "text": text, "payload": dict(payload),
            "version": version, "actor": "user"}


def message_entry(event: UserMessage, *, ts: int, version: int | None) -> dict[str, Any]:
    """The transcript entry of an engine message (text, tapped button or row, location, media)."""
    payload = event.payload()
    kind = payload.pop("type", "text")
    payload.pop("text", None)  # the entry's own `text`
    return inbound_entry(wamid=event.message_id, ts=ts, kind=str(kind), text=event.text, payload=payload,
                         version=version)


def inbound_commands(store: TranscriptStore, sid: str, event: object, status: str, version: int | None,
                     record: Mapping[str, Any] | None, now: int) -> Batch:
    """The write recording a handled user message, at its commit's time (nothing for other
    events, or a duplicate: its first delivery recorded it)."""
    if not isinstance(event, UserMessage) or status == "duplicate":
        return []
    applied = status == "applied"
    ts = int((record or {}).get("ts") or now) if applied else now
    entry = message_entry(event, ts=ts, version=version if applied else None)
    return tx.append_commands(sid, [entry], store.transcript_keep, store.transcript_ttl_ms)


def reply_actor(reply: Reply) -> str:
    """``agent`` for a reply a person wrote (a Reply that says so), else ``bot``."""
    actor = getattr(reply, "actor", None)
    return actor if isinstance(actor, str) and actor in OUT_ACTORS else "bot"


def outbound_commands(store: TranscriptStore, sid: str, reply: Reply, *, wamid: str | None, ts: int,
                      version: int | None, index: int | None, actor: str | None = None) -> Batch:
    """The write recording a reply Graph accepted (``actor`` None: :func:`reply_actor`)."""
    entry = outbound_entry(reply, wamid=wamid, ts=ts, version=version, index=index,
                           actor=actor or reply_actor(reply))
    return tx.append_commands(sid, [entry], store.transcript_keep, store.transcript_ttl_ms)


__all__ = ["OUT_ACTORS", "TranscriptStore", "inbound_commands", "inbound_entry", "message_entry", "outbound_commands",
           "outbound_entry", "reply_actor", "reply_kind", "reply_text"]
