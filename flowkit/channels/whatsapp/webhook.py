"""Inbound side of the WhatsApp Cloud API: the subscription handshake, the
``X-Hub-Signature-256`` check and the parser for ``messages`` webhook deliveries.

The parser reads every update type the Cloud API sends on the ``messages`` field
(docs/whatsapp.md has the table). It is strict about what flowkit acts on (message ids,
senders, timestamps, the content of answers): a message or status with those fields
missing or of the wrong type is left out and listed in :attr:`WebhookBatch.skipped` with
the JSON path of the problem, and the rest of the delivery is processed. Only a body that
is not a WhatsApp delivery envelope at all is a 400. It is lenient about everything else:
unknown fields, unknown message types, non-``messages`` changes and decoration (profile
names, error details, pricing, reactions, system messages) that does not have the
expected type are ignored, because Meta adds fields and types over time.

The values a delivery holds live in ``inbound.py``, the handshake and the signature check
in ``signature.py``, the content of each message type in ``content.py`` and the getters that
name the JSON path of a problem in ``shape.py``; this module walks the envelope (and keeps
every name importable from here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowkit.channels.whatsapp.content import CONTENT_TYPES, content_fields, shared_contacts
from flowkit.channels.whatsapp.inbound import (
    MEDIA_TYPES,
    NON_ANSWER_KINDS,
    Context,
    ErrorDetail,
    FlowReply,
    InboundMessage,
    Location,
    Media,
    MessageKind,
    Order,
    OrderItem,
    Reaction,
    Referral,
    SharedContact,
    Skipped,
    StatusUpdate,
    SystemChange,
    WebhookBatch,
)
from flowkit.channels.whatsapp.shape import as_object, bad, loose_str, optional, required, unix_seconds
from flowkit.channels.whatsapp.signature import SIGNATURE_HEADER, sign, verify_signature, verify_subscription
from flowkit.errors import WebhookError

__all__ = [
    "MEDIA_TYPES", "NON_ANSWER_KINDS", "SIGNATURE_HEADER", "Context", "ErrorDetail", "FlowReply", "InboundMessage",
    "Location", "Media", "MessageKind", "Order", "OrderItem", "Reaction", "Referral", "SharedContact", "Skipped",
    "StatusUpdate", "SystemChange", "WebhookBatch", "clean_surrogates", "parse_webhook", "parse_webhook_body", "sign",
    "verify_signature", "verify_subscription",
]


def parse_webhook_body(body: bytes) -> WebhookBatch:
    """Parse a raw delivery body: malformed JSON is a 400 ``bad_json``, a body that is not a
    WhatsApp delivery envelope a 400 ``bad_payload``; bad items inside are skipped (see :func:`parse_webhook`)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, bad UTF-8 and integers over Python's digit limit;
        # RecursionError a hostile, deeply nested document.
        raise WebhookError(f"body is not valid JSON: {exc}", status=400, reason="bad_json") from None
    return parse_webhook(payload)


def parse_webhook(payload: object) -> WebhookBatch:
    """Parse a decoded WhatsApp Cloud API webhook delivery (``object: whatsapp_business_account``).

    Only an envelope that is not a WhatsApp delivery at all (not an object, another
    ``object``, no ``entry`` array) raises :class:`WebhookError` (400, ``bad_payload``).
    An entry, change, message or status of the wrong shape is left out and listed in
    :attr:`WebhookBatch.skipped` with the JSON path of its first problem (e.g.
    ``entry[0].changes[0].value.messages[1].id is missing``), so one bad message never
    costs the good ones next to it (WhatsApp would redeliver the whole batch for days).
    Lone UTF-16 surrogates anywhere in the payload become U+FFFD first.
    """
    root = as_object(clean_surrogates(payload), "payload")
    kind = root.get("object")
    if kind != "whatsapp_business_account":
        if "object" not in root:
            bad("object is missing")
        bad(f"object is {kind!r}, expected 'whatsapp_business_account'")
    out = _Collector()
    for i, entry in enumerate(required(root, "entry", list, "")):
        entry_path = f"entry[{i}]"
        try:
            changes = required(as_object(entry, entry_path), "changes", list, entry_path)
        except WebhookError as exc:
            out.skip(entry_path, exc)
            continue
        for j, change in enumerate(changes):
            change_path = f"{entry_path}.changes[{j}]"
            try:
                change = as_object(change, change_path)
                field = required(change, "field", str, change_path)
                # Other fields (account_update, message_template_status_update...) are not ours.
                if field != "messages":
                    out.other_fields.append(field)
                    continue
                value_path = f"{change_path}.value"
                value = required(change, "value", dict, change_path)
                metadata = required(value, "metadata", dict, value_path)
                phone_number_id = required(metadata, "phone_number_id", str, f"{value_path}.metadata")
            except WebhookError as exc:
                out.skip(change_path, exc)
                continue
            _parse_value(value, value_path, phone_number_id, out)
    return WebhookBatch(tuple(out.messages), tuple(out.statuses), tuple(out.errors), tuple(out.skipped),
                        tuple(out.other_fields))


class _Collector:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.statuses: list[StatusUpdate] = []
        self.errors: list[ErrorDetail] = []
        self.skipped: list[Skipped] = []
        self.other_fields: list[str] = []

    def skip(self, path: str, exc: WebhookError, raw: object = None) -> None:
        self.skipped.append(Skipped(path, str(exc), loose_str(raw, "id")))


def clean_surrogates(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate (``"\\ud83d"`` without its pair, which JSON
    allows and UTF-8 cannot encode) replaced by U+FFFD, in strings and keys at any depth.
    Valid pairs were already joined into one character by the JSON decoder."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")  # the common case: no lone surrogate, nothing to copy
            return value
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
    if isinstance(value, dict):
        return {clean_surrogates(k): clean_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_surrogates(v) for v in value]
    return value


def _parse_value(value: Mapping[str, Any], path: str, phone_number_id: str, out: _Collector) -> None:
    names: dict[str, str] = {}
    usernames: dict[str, str] = {}
    contacts = value.get("contacts")
    for contact in contacts if isinstance(contacts, list) else ():
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile")
        name, username = loose_str(profile, "name"), loose_str(profile, "username")
        for ident in (loose_str(contact, "wa_id"), loose_str(contact, "user_id")):
            if ident is not None and name is not None:
                names[ident] = name
            if ident is not None and username is not None:
                usernames[ident] = username
    # A message's `from` can differ from its contact's `wa_id` (numbers that WhatsApp
    # normalises, e.g. in Brazil), so with a single contact its name is the sender's.
    only_name = next(iter(names.values())) if len(set(names.values())) == 1 else None

    for k, raw in enumerate(_items(value, "messages", path, out)):
        item_path = f"{path}.messages[{k}]"
        try:
            out.messages.append(_parse_message(raw, item_path, phone_number_id, names, only_name, usernames))
        except WebhookError as exc:
            out.skip(item_path, exc, raw)
    for k, raw in enumerate(_items(value, "statuses", path, out)):
        item_path = f"{path}.statuses[{k}]"
        try:
            out.statuses.append(_parse_status(raw, item_path, phone_number_id))
        except WebhookError as exc:
            out.skip(item_path, exc, raw)
    out.errors.extend(_error_details(value.get("errors")))


def _items(value: Mapping[str, Any], key: str, path: str, out: _Collector) -> list[Any]:
    """``value[key]`` when it is an array (absent: empty); anything else is skipped whole."""
    try:
        return optional(value, key, list, path) or []
    except WebhookError as exc:
        out.skip(f"{path}.{key}", exc)
        return []


def _parse_message(raw: object, path: str, phone_number_id: str, names: Mapping[str, str],
                   only_name: str | None, usernames: Mapping[str, str]) -> InboundMessage:
    m = as_object(raw, path)
    message_id = required(m, "id", str, path)
    user_id = optional(m, "from_user_id", str, path)
    sender = optional(m, "from", str, path) or user_id
    if not sender:
        bad(f"{path}.from is missing")
    timestamp = unix_seconds(m, path)
    raw_type = required(m, "type", str, path)

    fields: dict[str, Any] = {"kind": "unsupported"}
    content = m.get(raw_type) if raw_type in CONTENT_TYPES else None
    content_path = f"{path}.{raw_type}"
    # A known type without its content object is what WhatsApp sends when it could not
    # render the message itself (with `errors`): unsupported, not malformed.
    if raw_type == "contacts" and content is not None:
        fields = {"kind": "contacts", "contacts": shared_contacts(content)}  # an array, not an object
    elif content is not None:
        content = as_object(content, content_path)
        fields = content_fields(raw_type, content, content_path)
    elif raw_type == "unsupported":
        fields["unsupported_type"] = loose_str(m.get("unsupported"), "type")
    elif raw_type == "request_welcome":  # sent without a content object when a user first opens the chat
        fields = {"kind": "request_welcome"}
    referral = m.get("referral")
    return InboundMessage(
        message_id=message_id,
        wa_id=sender,
        phone_number_id=phone_number_id,
        timestamp=timestamp,
        raw_type=raw_type,
        profile_name=names.get(sender) or (names.get(user_id) if user_id else None) or only_name,
        username=usernames.get(sender) or (usernames.get(user_id) if user_id else None),
        context=_context(m.get("context")),
        user_id=user_id,
        errors=_error_details(m.get("errors")),
        referral=Referral(**{k: loose_str(referral, k) for k in (
            "source_url", "source_id", "source_type", "headline", "body", "media_type", "ctwa_clid")})
        if isinstance(referral, dict) else None,
        **fields,
    )


def _parse_status(raw: object, path: str, phone_number_id: str) -> StatusUpdate:
    s = as_object(raw, path)
    message_id = required(s, "id", str, path)
    status = required(s, "status", str, path)
    timestamp = unix_seconds(s, path)
    user_id = optional(s, "recipient_user_id", str, path)
    recipient = optional(s, "recipient_id", str, path) or user_id
    if not recipient:
        bad(f"{path}.recipient_id is missing")
    conversation, pricing = s.get("conversation"), s.get("pricing")
    expires = loose_str(conversation, "expiration_timestamp")
    billable = pricing.get("billable") if isinstance(pricing, dict) else None
    return StatusUpdate(
        message_id=message_id,
        recipient_id=recipient,
        status=status,
        timestamp=timestamp,
        errors=_error_details(s.get("errors")),
        phone_number_id=phone_number_id,
        conversation_id=loose_str(conversation, "id"),
        pricing_category=loose_str(pricing, "category"),
        recipient_user_id=user_id,
        conversation_origin=loose_str(conversation.get("origin") if isinstance(conversation, dict) else None, "type"),
        conversation_expires_at=int(expires) if expires and expires.isascii() and expires.isdigit()
        and len(expires) <= 15 else None,
        pricing_billable=billable if isinstance(billable, bool) else None,
        pricing_model=loose_str(pricing, "pricing_model"),
        pricing_type=loose_str(pricing, "type"),
        biz_opaque_callback_data=loose_str(s, "biz_opaque_callback_data"),
    )


def _context(raw: object) -> Context | None:
    if not isinstance(raw, dict):
        return None
    return Context(message_id=loose_str(raw, "id"), sender=loose_str(raw, "from"),
                   forwarded=raw.get("forwarded") is True, frequently_forwarded=raw.get("frequently_forwarded") is True)


def _error_details(raw: object) -> tuple[ErrorDetail, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for e in raw:
        if isinstance(e, dict):
            code = e.get("code")
            out.append(ErrorDetail(
                code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                title=loose_str(e, "title"),
                message=loose_str(e, "message"),
                details=loose_str(e.get("error_data"), "details"),
                href=loose_str(e, "href"),
            ))
    return tuple(out)
