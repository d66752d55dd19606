"""The content object of an inbound message, by its ``type``: the fields of
:class:`~flowkit.channels.whatsapp.inbound.InboundMessage` it fills. Strict where flowkit
acts on a value (answers), loose where it only reports it (decoration)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from flowkit.channels.whatsapp.inbound import (
    MEDIA_TYPES,
    FlowReply,
    Location,
    Media,
    Order,
    OrderItem,
    Reaction,
    SharedContact,
    SystemChange,
)
from flowkit.channels.whatsapp.shape import bad, describe, loose_num, loose_str, optional, required

CONTENT_TYPES = frozenset({"text", "interactive", "button", "location", "contacts", "order", "reaction", "edit",
                           "revoke", "system", "request_welcome", *MEDIA_TYPES})


# One reader per content type: (content object, JSON path) -> the message's fields.
_Reader = Callable[[Mapping[str, Any], str], dict[str, Any]]


def _text(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"kind": "text", "text": required(content, "body", str, path)}


def _button(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A template's quick-reply button."""
    return {"kind": "button", "reply_id": optional(content, "payload", str, path),
            "reply_title": required(content, "text", str, path)}


def _location(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"kind": "location", "location": location_of(content, path)}


def _order(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    items = content.get("product_items")
    return {"kind": "order", "order": Order(
        catalog_id=loose_str(content, "catalog_id"), text=loose_str(content, "text"),
        items=tuple(OrderItem(loose_str(i, "product_retailer_id"), loose_num(i, "quantity"),
                              loose_num(i, "item_price"), loose_str(i, "currency"))
                    for i in (items if isinstance(items, list) else ()) if isinstance(i, dict)))}


def _reaction(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"kind": "reaction", "refers_to": loose_str(content, "message_id"),
            "reaction": Reaction(loose_str(content, "message_id"), loose_str(content, "emoji") or None)}


def _revoke(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"kind": "revoke", "refers_to": loose_str(content, "original_message_id")}


def _edit(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The new version of an earlier message: reported (text or caption), never re-applied."""
    inner = content.get("message")
    fields: dict[str, Any] = {"kind": "edit", "refers_to": loose_str(content, "original_message_id")}
    if isinstance(inner, dict):
        inner_type = loose_str(inner, "type")
        body = inner.get(inner_type) if inner_type else None
        fields["text"] = loose_str(body, "body") if inner_type == "text" else loose_str(body, "caption")
    return fields


def _system(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"kind": "system", "system": SystemChange(
        type=loose_str(content, "type"), body=loose_str(content, "body"),
        new_wa_id=loose_str(content, "wa_id") or loose_str(content, "new_wa_id"),
        new_user_id=loose_str(content, "user_id"))}


def _request_welcome(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"kind": "request_welcome"}


def content_fields(raw_type: str, content: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The fields of a message of ``raw_type`` (one of :data:`CONTENT_TYPES`) from its content
    object. Strict where flowkit acts on a value (answers), loose (decoration) where it only
    reports it."""
    if raw_type in MEDIA_TYPES:
        return {"kind": "media", "media": media_of(raw_type, content, path)}
    return _READERS[raw_type](content, path)


def media_of(raw_type: str, content: Mapping[str, Any], path: str) -> Media:
    return Media(
        id=required(content, "id", str, path),
        mime_type=optional(content, "mime_type", str, path),
        sha256=optional(content, "sha256", str, path),
        caption=optional(content, "caption", str, path),
        filename=optional(content, "filename", str, path),
        voice=raw_type == "audio" and content.get("voice") is True,
        animated=raw_type == "sticker" and content.get("animated") is True,
    )


def shared_contacts(cards: object) -> tuple[SharedContact, ...]:
    out = []
    for card in cards if isinstance(cards, list) else ():
        if not isinstance(card, dict):
            continue
        phones = card.get("phones")
        out.append(SharedContact(
            name=loose_str(card.get("name"), "formatted_name"),
            phones=tuple((loose_str(p, "phone"), loose_str(p, "wa_id"))
                         for p in (phones if isinstance(phones, list) else ()) if isinstance(p, dict)),
        ))
    return tuple(out)


def interactive_fields(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    itype = required(content, "type", str, path)
    if itype == "nfm_reply":
        reply = content.get("nfm_reply")
        return {"kind": "nfm_reply", "flow_reply": FlowReply(
            loose_str(reply, "name"), loose_str(reply, "body"), loose_str(reply, "response_json"))}
    if itype not in ("button_reply", "list_reply"):
        return {"kind": "unsupported", "unsupported_type": f"interactive.{itype}"}
    reply_path = f"{path}.{itype}"
    reply = required(content, itype, dict, path)
    return {
        "kind": itype,
        "reply_id": required(reply, "id", str, reply_path),
        "reply_title": required(reply, "title", str, reply_path),
        "reply_description": optional(reply, "description", str, reply_path),
    }


def location_of(content: Mapping[str, Any], path: str) -> Location:
    coords = []
    for key, limit in (("latitude", 90.0), ("longitude", 180.0)):
        v = content.get(key)
        if key not in content:
            bad(f"{path}.{key} is missing")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or abs(v) > limit:
            bad(f"{path}.{key} must be a number between -{limit:g} and {limit:g}, got {describe(v)}")
        coords.append(float(v))
    return Location(coords[0], coords[1], name=optional(content, "name", str, path),
                    address=optional(content, "address", str, path), url=optional(content, "url", str, path))


_READERS: dict[str, _Reader] = {
    "text": _text, "interactive": interactive_fields, "button": _button, "location": _location, "order": _order,
    "reaction": _reaction, "revoke": _revoke, "edit": _edit, "system": _system, "request_welcome": _request_welcome,
}
