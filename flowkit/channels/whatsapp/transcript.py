"""WhatsApp messages that answer nothing (reactions, edits, revokes, system notices,
unsupported types) as transcript entries: the webhook never hands them to the engine, so
it records them itself (:mod:`flowkit.runtime.transcript` records the rest)."""

from __future__ import annotations

from typing import Any

from flowkit.channels.whatsapp.webhook import InboundMessage
from flowkit.runtime.transcript import TranscriptStore, inbound_entry
from flowkit.store import transcript as tx
from flowkit.store.driver import Batch


def non_answer_entry(m: InboundMessage, now: int) -> dict[str, Any]:
    """``text`` is what a reader sees (the emoji, the edited text); ``payload.refers_to`` the
    message it is about."""
    payload: dict[str, Any] = {"raw_type": m.raw_type}
    if m.refers_to is not None:
        payload["refers_to"] = m.refers_to
    text = m.text
    if m.reaction is not None:
        payload["emoji"] = m.reaction.emoji  # None: the reaction was taken back
        text = m.reaction.emoji
    if m.system is not None:
        payload["system"] = {"type": m.system.type, "body": m.system.body}
        text = m.system.body
    if m.unsupported_type is not None:
        payload["unsupported_type"] = m.unsupported_type
    return inbound_entry(wamid=m.message_id, ts=now, kind=m.kind, text=text, payload=payload, version=None)


def non_answer_commands(store: TranscriptStore, m: InboundMessage, now: int, session_id: str | None = None) -> Batch:
    """The transcript entry of a non-answer, on ``session_id`` (default: the user's bare id)."""
    return tx.append_commands(session_id or m.wa_id, [non_answer_entry(m, now)], store.transcript_keep,
                              store.transcript_ttl_ms)


__all__ = ["non_answer_commands", "non_answer_entry"]
