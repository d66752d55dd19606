"""The WhatsApp webhook delivery that carries a simulated user's message (over HTTP)."""

from __future__ import annotations

from typing import Any

from flowkit.engine import Message
from flowkit.sim.events import User


def webhook_payload(user: User, msg: Message, at: int) -> dict[str, Any]:
    """The WhatsApp webhook delivery that carries ``msg``."""
    from flowkit.channels.whatsapp import payloads as P

    opts: dict[str, Any] = {"message_id": msg.message_id, "timestamp": at // 1000,
                            "profile_name": f"Sim user {user.index}"}
    wa = user.session_id
    if msg.type == "button_reply" and msg.reply_id:
        return P.button_reply_payload(wa, msg.reply_id, msg.text or msg.reply_id, **opts)
    if msg.type == "list_reply" and msg.reply_id:
        return P.list_reply_payload(wa, msg.reply_id, msg.text or msg.reply_id, **opts)
    if msg.type == "location" and msg.location:
        loc = msg.location
        return P.location_payload(wa, loc["latitude"], loc["longitude"], name=loc.get("name"), **opts)
    if msg.type == "media" and msg.media:
        return P.media_payload(wa, str(msg.media.get("id")), kind=str(msg.media.get("kind") or "image"), **opts)
    if msg.type == "unsupported" or msg.text is None:
        return P.message_payload(wa, "unsupported", None, **opts)
    return P.text_payload(wa, msg.text, **opts)

