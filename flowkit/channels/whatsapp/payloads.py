"""Builders for webhook deliveries exactly as the WhatsApp Cloud API sends them.

For tests, the simulator and the demo: ``parse_webhook(text_payload("15551234567", "hi"))``
gives the message back. ``combine`` puts several of them into one delivery the way Meta
batches (one entry per business account, one change per phone number and kind).

    body = json.dumps(combine(text_payload(a, "pizza"), button_reply_payload(b, "large", "Large"))).encode()
    headers = {"X-Hub-Signature-256": sign(body, app_secret)}
"""

from __future__ import annotations

import base64
import copy
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack

# Shaped like real ids so that code which logs or stores them sees realistic values.
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_DISPLAY_PHONE_NUMBER = "15550783881"
DEFAULT_WABA_ID = "102290129340398"
DEFAULT_PROFILE_NAME = "Test User"

_MIME = {"image": "image/jpeg", "audio": "audio/ogg; codecs=opus", "video": "video/mp4",
         "document": "application/pdf", "sticker": "image/webp"}


class MessageOptions(TypedDict, total=False):
    """Keyword options every message builder takes."""

    message_id: str               # default: a fresh random wamid
    timestamp: int                # unix seconds; default: now
    profile_name: str | None      # the sender's WhatsApp name; None leaves out the contact's profile
    context_id: str | None        # the wamid this message replies to
    phone_number_id: str
    display_phone_number: str
    waba_id: str                  # the entry id (WhatsApp Business Account)


def new_message_id() -> str:
    """A fresh, unique ``wamid.…`` id."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18" + os.urandom(22)).decode("ascii")


def envelope(*, messages: Sequence[Mapping[str, Any]] = (), statuses: Sequence[Mapping[str, Any]] = (),
             contacts: Sequence[Mapping[str, Any]] = (), phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
             display_phone_number: str = DEFAULT_DISPLAY_PHONE_NUMBER, waba_id: str = DEFAULT_WABA_ID) -> dict[str, Any]:
    """One delivery holding raw message / status / contact objects in a single ``messages`` change."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
    }
    if contacts:
        value["contacts"] = [dict(c) for c in contacts]
    if messages:
        value["messages"] = [dict(m) for m in messages]
    if statuses:
        value["statuses"] = [dict(s) for s in statuses]
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}]}


def message_payload(wa_id: str, type: str, content: Mapping[str, Any] | None, **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """A delivery with one message of any ``type`` (``reaction``, ``contacts``, ``order``...) and its ``content`` object."""
    message: dict[str, Any] = {}
    if options.get("context_id"):
        message["context"] = {"from": options.get("display_phone_number", DEFAULT_DISPLAY_PHONE_NUMBER),
                              "id": options["context_id"]}
    message.update({
        "from": wa_id,
        "id": options.get("message_id") or new_message_id(),
        "timestamp": str(options.get("timestamp", int(time.time()))),
        "type": type,
    })
    if content is not None:
        message[type] = dict(content)
    name = options.get("profile_name", DEFAULT_PROFILE_NAME)
    contact: dict[str, Any] = {"profile": {"name": name}, "wa_id": wa_id} if name is not None else {"wa_id": wa_id}
    return envelope(messages=[message], contacts=[contact], **_where(options))


def text_payload(wa_id: str, text: str, **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """A typed text message."""
    return message_payload(wa_id, "text", {"body": text}, **options)


def button_reply_payload(wa_id: str, reply_id: str, title: str, **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """A tap on a reply button of an interactive message we sent."""
    return message_payload(wa_id, "interactive", {"type": "button_reply",
                                                  "button_reply": {"id": reply_id, "title": title}}, **options)


def list_reply_payload(wa_id: str, reply_id: str, title: str, description: str | None = None,
                       **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """A row picked from a list message we sent."""
    row = {"id": reply_id, "title": title} | ({"description": description} if description is not None else {})
    return message_payload(wa_id, "interactive", {"type": "list_reply", "list_reply": row}, **options)


def template_button_payload(wa_id: str, payload: str, text: str, **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """A tap on a quick-reply button of a template message (``type: button``)."""
    return message_payload(wa_id, "button", {"payload": payload, "text": text}, **options)


def location_payload(wa_id: str, latitude: float, longitude: float, *, name: str | None = None,
                     address: str | None = None, **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """A shared location (a pin, or a place with name and address)."""
    content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        content["name"] = name
    if address is not None:
        content["address"] = address
    return message_payload(wa_id, "location", content, **options)


def media_payload(wa_id: str, media_id: str | None = None, *, kind: str = "image", mime_type: str | None = None,
                  sha256: str | None = None, caption: str | None = None, filename: str | None = None,
                  **options: Unpack[MessageOptions]) -> dict[str, Any]:
    """An image, audio, video, document or sticker (``kind``)."""
    if kind not in _MIME:
        raise ValueError(f"kind must be one of {', '.join(_MIME)}, got {kind!r}")
    content: dict[str, Any] = {"mime_type": mime_type or _MIME[kind],
                               "sha256": sha256 or base64.b64encode(os.urandom(32)).decode("ascii"),
                               "id": media_id or str(int.from_bytes(os.urandom(7), "big"))}
    if caption is not None:
        content["caption"] = caption
    if filename is not None:
        content["filename"] = filename
    return message_payload(wa_id, kind, content, **options)


def status_payload(message_id: str, recipient_id: str, status: str = "delivered", *, timestamp: int | None = None,
                   errors: Sequence[Mapping[str, Any]] | None = None, phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
                   display_phone_number: str = DEFAULT_DISPLAY_PHONE_NUMBER,
                   waba_id: str = DEFAULT_WABA_ID) -> dict[str, Any]:
    """A status update for a message we sent: ``sent``, ``delivered``, ``read`` or ``failed`` (give ``errors``)."""
    ts = int(time.time()) if timestamp is None else timestamp
    item: dict[str, Any] = {"id": message_id, "status": status, "timestamp": str(ts), "recipient_id": recipient_id}
    if status == "failed":
        item["errors"] = [dict(e) for e in errors] if errors else [{
            "code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
    else:
        conversation: dict[str, Any] = {"id": "c" + os.urandom(15).hex(), "origin": {"type": "service"}}
        if status == "sent":
            conversation["expiration_timestamp"] = str(ts + 24 * 3600)
        item["conversation"] = conversation
        item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
        if errors:
            item["errors"] = [dict(e) for e in errors]
    return envelope(statuses=[item], phone_number_id=phone_number_id,
                    display_phone_number=display_phone_number, waba_id=waba_id)


def combine(*payloads: Mapping[str, Any]) -> dict[str, Any]:
    """Several deliveries as one, batched like Meta does.

    Entries with the same business account id merge; within them, changes for the same
    phone number merge their ``messages`` (and ``contacts``, without duplicates) or their
    ``statuses``. Different accounts stay separate entries, so this also builds multi-entry
    deliveries.
    """
    entries: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for entry in payload["entry"]:
            target = entries.setdefault(entry["id"], {"id": entry["id"], "changes": []})
            for change in entry["changes"]:
                _merge_change(target["changes"], copy.deepcopy(change))
    return {"object": "whatsapp_business_account", "entry": list(entries.values())}


def _merge_change(changes: list[dict[str, Any]], change: dict[str, Any]) -> None:
    def key(c: Mapping[str, Any]) -> tuple[Any, ...]:
        v = c["value"]
        return c["field"], v.get("metadata", {}).get("phone_number_id"), "messages" in v, "statuses" in v

    for existing in changes:
        if key(existing) == key(change):
            value, new = existing["value"], change["value"]
            for name in ("messages", "statuses"):
                if name in new:
                    value[name].extend(new[name])
            known = {c.get("wa_id") for c in value.get("contacts", [])}
            for contact in new.get("contacts", []):
                if contact.get("wa_id") not in known:
                    value.setdefault("contacts", []).append(contact)
                    known.add(contact.get("wa_id"))
            return
    changes.append(change)


def _where(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in ("phone_number_id", "display_phone_number", "waba_id") if k in options}
