"""Over HTTP: the WhatsApp webhook delivery that carries a simulated user's message, signed
and posted to a running ``flowkit serve``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flowkit.engine import UserMessage
from flowkit.sim.config import HttpTarget
from flowkit.sim.events import Done, Item, Kind, User

if TYPE_CHECKING:  # httpx is imported when a run posts, not with the simulator
    import httpx


def webhook_payload(user: User, msg: UserMessage, at: int) -> dict[str, Any]:
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


def post_delivery(client: httpx.Client, target: HttpTarget, at: int, kind: Kind, item: Item) -> Done:
    """Post ``item``'s message as a signed delivery; acknowledged only on a 200 (WhatsApp
    redelivers anything else)."""
    import httpx

    from flowkit.channels.whatsapp import sign

    assert isinstance(item.event, UserMessage)
    body = json.dumps(webhook_payload(item.user, item.event, at)).encode()
    headers = {"content-type": "application/json", "x-hub-signature-256": sign(body, target.app_secret)}
    try:
        r = client.post("/webhook", content=body, headers=headers)
    except httpx.TransportError:
        return Done(at, kind, item, "unavailable", False)
    if r.status_code != 200:
        return Done(at, kind, item, "unavailable", False)
    return Done(at, kind, item, "applied" if r.json().get("applied") else "not_applied", True)
