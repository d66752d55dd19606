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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from flowkit.errors import ConfigError, WebhookError

MessageKind = Literal["text", "button_reply", "list_reply", "button", "nfm_reply", "location", "media", "contacts",
                      "order", "reaction", "edit", "revoke", "system", "request_welcome", "unsupported"]

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
# Kinds that are never an answer: flowkit neither starts a session for them nor replies
# (docs/whatsapp.md, "What flowkit does with each update type").
NON_ANSWER_KINDS: frozenset[str] = frozenset({"reaction", "edit", "revoke", "system", "unsupported"})
_CONTENT_TYPES = frozenset({"text", "interactive", "button", "location", "contacts", "order", "reaction", "edit",
                            "revoke", "system", "request_welcome", *MEDIA_TYPES})
SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE_PREFIX = "sha256="


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Media:
    """An image, audio, video, document or sticker. ``id`` downloads it via the Graph media endpoint."""

    id: str
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False
    animated: bool = False


@dataclass(frozen=True)
class Context:
    """What a message refers to: the message it replies to (``message_id``, sent by ``sender``), or a forward."""

    message_id: str | None = None
    sender: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False


@dataclass(frozen=True)
class ErrorDetail:
    """An error object from a webhook (on a failed status, an unsupported message, or a whole change)."""

    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None


@dataclass(frozen=True)
class Reaction:
    """An emoji on one of our messages (``message_id``); ``emoji`` None is the reaction taken back."""

    message_id: str | None
    emoji: str | None


@dataclass(frozen=True)
class SystemChange:
    """A system message: ``customer_changed_number`` (also spelled ``user_changed_number``) with the
    user's new ``wa_id``/``user_id``, or ``customer_identity_changed``."""

    type: str | None
    body: str | None = None
    new_wa_id: str | None = None
    new_user_id: str | None = None


@dataclass(frozen=True)
class Referral:
    """The ad or post a click-to-WhatsApp message came from (on the user's first message)."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


@dataclass(frozen=True)
class SharedContact:
    """A contact card the user sent: its formatted name and ``(phone, wa_id)`` pairs."""

    name: str | None
    phones: tuple[tuple[str | None, str | None], ...] = ()


@dataclass(frozen=True)
class OrderItem:
    product_retailer_id: str | None
    quantity: int | float | None
    item_price: int | float | None
    currency: str | None


@dataclass(frozen=True)
class Order:
    """A cart sent from a catalog."""

    catalog_id: str | None
    text: str | None
    items: tuple[OrderItem, ...] = ()


@dataclass(frozen=True)
class FlowReply:
    """The response of a WhatsApp Flow form (``nfm_reply``); ``response_json`` as WhatsApp sent it."""

    name: str | None
    body: str | None
    response_json: str | None


@dataclass(frozen=True, kw_only=True)
class InboundMessage:
    """One user message.

    ``kind`` is what flowkit understands; ``raw_type`` is WhatsApp's own ``type`` (``image``,
    ``reaction``, ``order``...). For replies, ``reply_id``/``reply_title`` hold the tapped
    button or row (for a template quick-reply ``button``: its payload and text); ``text``
    is only set for typed text (and for an ``edit``: the new text or caption). ``wa_id`` is
    the sender's phone number, or their business-scoped user id (``user_id``) when WhatsApp
    withholds the number (usernames). ``refers_to`` is the message a reaction, edit or
    revoke is about. :attr:`is_answer` says whether it may answer a question at all.
    """

    message_id: str
    wa_id: str
    phone_number_id: str
    timestamp: int
    kind: MessageKind
    text: str | None = None
    reply_id: str | None = None
    reply_title: str | None = None
    location: Location | None = None
    media: Media | None = None
    profile_name: str | None = None
    raw_type: str = "text"
    reply_description: str | None = None
    context: Context | None = None
    user_id: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    refers_to: str | None = None
    reaction: Reaction | None = None
    system: SystemChange | None = None
    referral: Referral | None = None
    contacts: tuple[SharedContact, ...] = ()
    order: Order | None = None
    flow_reply: FlowReply | None = None
    unsupported_type: str | None = None
    username: str | None = None

    @property
    def is_answer(self) -> bool:
        """False for reactions, edits, revokes, system messages and unsupported types."""
        return self.kind not in NON_ANSWER_KINDS


@dataclass(frozen=True, kw_only=True)
class StatusUpdate:
    """What happened to a message we sent: ``sent``, ``delivered``, ``read``, ``played`` or ``failed``
    (with ``errors``), and what WhatsApp says about its conversation and pricing."""

    message_id: str
    recipient_id: str
    status: str
    timestamp: int
    errors: tuple[ErrorDetail, ...] = ()
    phone_number_id: str | None = None
    conversation_id: str | None = None
    pricing_category: str | None = None
    recipient_user_id: str | None = None
    conversation_origin: str | None = None
    conversation_expires_at: int | None = None
    pricing_billable: bool | None = None
    pricing_model: str | None = None
    pricing_type: str | None = None
    biz_opaque_callback_data: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A message, status, change or entry the parser could not use: where it was and why.
    The rest of the delivery is processed; this one is logged and left out."""

    path: str
    reason: str
    message_id: str | None = None


@dataclass(frozen=True)
class WebhookBatch:
    """Everything in one delivery, in payload order. ``errors`` are change-level errors from WhatsApp;
    ``skipped`` what could not be parsed; ``other_fields`` the names of non-``messages`` changes."""

    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    errors: tuple[ErrorDetail, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    other_fields: tuple[str, ...] = ()


# ---------------------------------------------------------------- handshake and signature


def verify_subscription(params: Mapping[str, str], verify_token: str) -> str:
    """Answer Meta's GET handshake: return ``hub.challenge`` if the mode and token are right.

    Raises :class:`WebhookError` (403, ``verify_token``) otherwise.
    """
    if not verify_token:
        # An empty configured token would accept an empty (or absent) one from anybody.
        raise WebhookError("WHATSAPP_VERIFY_TOKEN is not set; refusing the subscription handshake",
                           status=403, reason="verify_token")
    mode = params.get("hub.mode")
    if mode != "subscribe":
        raise WebhookError(f"hub.mode is {mode!r}, expected 'subscribe'", status=403, reason="verify_token")
    given = params.get("hub.verify_token") or ""
    # Compare bytes: compare_digest refuses non-ASCII str, and a query string can hold anything.
    if not hmac.compare_digest(given.encode("utf-8"), verify_token.encode("utf-8")):
        raise WebhookError("hub.verify_token does not match WHATSAPP_VERIFY_TOKEN", status=403, reason="verify_token")
    challenge = params.get("hub.challenge")
    if not challenge:
        raise WebhookError("hub.challenge is missing", status=400, reason="missing_challenge")
    return challenge


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body`` (for tests and the simulator)."""
    return _SIGNATURE_PREFIX + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, app_secret: str) -> None:
    """Check ``X-Hub-Signature-256: sha256=<hex>`` over the raw request body.

    Missing header: 401 ``missing_signature``; not ``sha256=`` + 64 hex digits: 401
    ``bad_signature_format``; wrong digest (other secret, altered body): 403 ``bad_signature``.
    """
    if not app_secret:
        raise ConfigError("WHATSAPP_APP_SECRET is not set; webhook signatures cannot be checked")
    if not header:
        raise WebhookError(f"{SIGNATURE_HEADER} header is missing", status=401, reason="missing_signature")
    value = header.strip()
    digest = value[len(_SIGNATURE_PREFIX):].lower()
    if (not value.lower().startswith(_SIGNATURE_PREFIX) or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)):
        raise WebhookError(f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits",
                           status=401, reason="bad_signature_format")
    expected = sign(body, app_secret)[len(_SIGNATURE_PREFIX):]
    # Constant time, so the digest cannot be guessed byte by byte from response timings.
    if not hmac.compare_digest(expected, digest):
        raise WebhookError(f"{SIGNATURE_HEADER} does not match the body (wrong WHATSAPP_APP_SECRET, or the body was altered)",
                           status=403, reason="bad_signature")


# ---------------------------------------------------------------- parsing


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
    root = _object(clean_surrogates(payload), "payload")
    kind = root.get("object")
    if kind != "whatsapp_business_account":
        if "object" not in root:
            _bad("object is missing")
        _bad(f"object is {kind!r}, expected 'whatsapp_business_account'")
    out = _Collector()
    for i, entry in enumerate(_required(root, "entry", list, "")):
        entry_path = f"entry[{i}]"
        try:
            changes = _required(_object(entry, entry_path), "changes", list, entry_path)
        except WebhookError as exc:
            out.skip(entry_path, exc)
            continue
        for j, change in enumerate(changes):
            change_path = f"{entry_path}.changes[{j}]"
            try:
                change = _object(change, change_path)
                field = _required(change, "field", str, change_path)
                # Other fields (account_update, message_template_status_update...) are not ours.
                if field != "messages":
                    out.other_fields.append(field)
                    continue
                value_path = f"{change_path}.value"
                value = _required(change, "value", dict, change_path)
                metadata = _required(value, "metadata", dict, value_path)
                phone_number_id = _required(metadata, "phone_number_id", str, f"{value_path}.metadata")
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
        self.skipped.append(Skipped(path, str(exc), _loose_str(raw, "id")))


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
        name, username = _loose_str(profile, "name"), _loose_str(profile, "username")
        for ident in (_loose_str(contact, "wa_id"), _loose_str(contact, "user_id")):
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
        return _optional(value, key, list, path) or []
    except WebhookError as exc:
        out.skip(f"{path}.{key}", exc)
        return []


def _parse_message(raw: object, path: str, phone_number_id: str, names: Mapping[str, str],
                   only_name: str | None, usernames: Mapping[str, str]) -> InboundMessage:
    m = _object(raw, path)
    message_id = _required(m, "id", str, path)
    user_id = _optional(m, "from_user_id", str, path)
    sender = _optional(m, "from", str, path) or user_id
    if not sender:
        _bad(f"{path}.from is missing")
    timestamp = _timestamp(m, path)
    raw_type = _required(m, "type", str, path)

    fields: dict[str, Any] = {"kind": "unsupported"}
    content = m.get(raw_type) if raw_type in _CONTENT_TYPES else None
    content_path = f"{path}.{raw_type}"
    # A known type without its content object is what WhatsApp sends when it could not
    # render the message itself (with `errors`): unsupported, not malformed.
    if raw_type == "contacts" and content is not None:
        fields = {"kind": "contacts", "contacts": _shared_contacts(content)}  # an array, not an object
    elif content is not None:
        content = _object(content, content_path)
        fields = _content(raw_type, content, content_path)
    elif raw_type == "unsupported":
        fields["unsupported_type"] = _loose_str(m.get("unsupported"), "type")
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
        referral=Referral(**{k: _loose_str(referral, k) for k in (
            "source_url", "source_id", "source_type", "headline", "body", "media_type", "ctwa_clid")})
        if isinstance(referral, dict) else None,
        **fields,
    )


def _content(raw_type: str, content: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The fields of a message of ``raw_type`` from its content object. Strict where flowkit
    acts on a value (answers), loose (decoration) where it only reports it."""
    if raw_type == "text":
        return {"kind": "text", "text": _required(content, "body", str, path)}
    if raw_type == "interactive":
        return _interactive(content, path)
    if raw_type == "button":
        return {"kind": "button", "reply_id": _optional(content, "payload", str, path),
                "reply_title": _required(content, "text", str, path)}
    if raw_type == "location":
        return {"kind": "location", "location": _location(content, path)}
    if raw_type in MEDIA_TYPES:
        return {"kind": "media", "media": _media(raw_type, content, path)}
    if raw_type == "order":
        items = content.get("product_items")
        return {"kind": "order", "order": Order(
            catalog_id=_loose_str(content, "catalog_id"), text=_loose_str(content, "text"),
            items=tuple(OrderItem(_loose_str(i, "product_retailer_id"), _loose_num(i, "quantity"),
                                  _loose_num(i, "item_price"), _loose_str(i, "currency"))
                        for i in (items if isinstance(items, list) else ()) if isinstance(i, dict)))}
    if raw_type == "reaction":
        return {"kind": "reaction", "refers_to": _loose_str(content, "message_id"),
                "reaction": Reaction(_loose_str(content, "message_id"), _loose_str(content, "emoji") or None)}
    if raw_type == "revoke":
        return {"kind": "revoke", "refers_to": _loose_str(content, "original_message_id")}
    if raw_type == "edit":
        # The new version of an earlier message: reported (text or caption), never re-applied.
        inner = content.get("message")
        fields: dict[str, Any] = {"kind": "edit", "refers_to": _loose_str(content, "original_message_id")}
        if isinstance(inner, dict):
            inner_type = _loose_str(inner, "type")
            body = inner.get(inner_type) if inner_type else None
            fields["text"] = _loose_str(body, "body") if inner_type == "text" else _loose_str(body, "caption")
        return fields
    if raw_type == "system":
        return {"kind": "system", "system": SystemChange(
            type=_loose_str(content, "type"), body=_loose_str(content, "body"),
            new_wa_id=_loose_str(content, "wa_id") or _loose_str(content, "new_wa_id"),
            new_user_id=_loose_str(content, "user_id"))}
    return {"kind": "request_welcome"}  # request_welcome, the last of _CONTENT_TYPES


def _media(raw_type: str, content: Mapping[str, Any], path: str) -> Media:
    return Media(
        id=_required(content, "id", str, path),
        mime_type=_optional(content, "mime_type", str, path),
        sha256=_optional(content, "sha256", str, path),
        caption=_optional(content, "caption", str, path),
        filename=_optional(content, "filename", str, path),
        voice=raw_type == "audio" and content.get("voice") is True,
        animated=raw_type == "sticker" and content.get("animated") is True,
    )


def _shared_contacts(cards: object) -> tuple[SharedContact, ...]:
    out = []
    for card in cards if isinstance(cards, list) else ():
        if not isinstance(card, dict):
            continue
        phones = card.get("phones")
        out.append(SharedContact(
            name=_loose_str(card.get("name"), "formatted_name"),
            phones=tuple((_loose_str(p, "phone"), _loose_str(p, "wa_id"))
                         for p in (phones if isinstance(phones, list) else ()) if isinstance(p, dict)),
        ))
    return tuple(out)


def _interactive(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    itype = _required(content, "type", str, path)
    if itype == "nfm_reply":
        reply = content.get("nfm_reply")
        return {"kind": "nfm_reply", "flow_reply": FlowReply(
            _loose_str(reply, "name"), _loose_str(reply, "body"), _loose_str(reply, "response_json"))}
    if itype not in ("button_reply", "list_reply"):
        return {"kind": "unsupported", "unsupported_type": f"interactive.{itype}"}
    reply_path = f"{path}.{itype}"
    reply = _required(content, itype, dict, path)
    return {
        "kind": itype,
        "reply_id": _required(reply, "id", str, reply_path),
        "reply_title": _required(reply, "title", str, reply_path),
        "reply_description": _optional(reply, "description", str, reply_path),
    }


def _location(content: Mapping[str, Any], path: str) -> Location:
    coords = []
    for key, limit in (("latitude", 90.0), ("longitude", 180.0)):
        v = content.get(key)
        if key not in content:
            _bad(f"{path}.{key} is missing")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or abs(v) > limit:
            _bad(f"{path}.{key} must be a number between -{limit:g} and {limit:g}, got {_describe(v)}")
        coords.append(float(v))
    return Location(coords[0], coords[1], name=_optional(content, "name", str, path),
                    address=_optional(content, "address", str, path), url=_optional(content, "url", str, path))


def _parse_status(raw: object, path: str, phone_number_id: str) -> StatusUpdate:
    s = _object(raw, path)
    message_id = _required(s, "id", str, path)
    status = _required(s, "status", str, path)
    timestamp = _timestamp(s, path)
    user_id = _optional(s, "recipient_user_id", str, path)
    recipient = _optional(s, "recipient_id", str, path) or user_id
    if not recipient:
        _bad(f"{path}.recipient_id is missing")
    conversation, pricing = s.get("conversation"), s.get("pricing")
    expires = _loose_str(conversation, "expiration_timestamp")
    billable = pricing.get("billable") if isinstance(pricing, dict) else None
    return StatusUpdate(
        message_id=message_id,
        recipient_id=recipient,
        status=status,
        timestamp=timestamp,
        errors=_error_details(s.get("errors")),
        phone_number_id=phone_number_id,
        conversation_id=_loose_str(conversation, "id"),
        pricing_category=_loose_str(pricing, "category"),
        recipient_user_id=user_id,
        conversation_origin=_loose_str(conversation.get("origin") if isinstance(conversation, dict) else None, "type"),
        conversation_expires_at=int(expires) if expires and expires.isascii() and expires.isdigit()
        and len(expires) <= 15 else None,
        pricing_billable=billable if isinstance(billable, bool) else None,
        pricing_model=_loose_str(pricing, "pricing_model"),
        pricing_type=_loose_str(pricing, "type"),
        biz_opaque_callback_data=_loose_str(s, "biz_opaque_callback_data"),
    )


def _context(raw: object) -> Context | None:
    if not isinstance(raw, dict):
        return None
    return Context(message_id=_loose_str(raw, "id"), sender=_loose_str(raw, "from"),
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
                title=_loose_str(e, "title"),
                message=_loose_str(e, "message"),
                details=_loose_str(e.get("error_data"), "details"),
                href=_loose_str(e, "href"),
            ))
    return tuple(out)


# ---------------------------------------------------------------- shape helpers

_NAMES: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


def _bad(message: str) -> NoReturn:
    raise WebhookError(message, status=400, reason="bad_payload")


def _describe(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    return _NAMES.get(type(v), type(v).__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _object(v: object, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        _bad(f"{path} must be an object, got {_describe(v)}")
    return v


def _required(obj: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    if key not in obj:
        _bad(f"{_join(path, key)} is missing")
    return _optional(obj, key, kind, path)


def _optional(obj: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    v = obj.get(key)
    if key in obj and not isinstance(v, kind):
        _bad(f"{_join(path, key)} must be {_NAMES[kind]}, got {_describe(v)}")
    return v


def _loose_str(obj: object, key: str) -> str | None:
    """A decoration field: taken when it is a string, ignored otherwise."""
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) else None


def _loose_num(obj: object, key: str) -> int | float | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def _timestamp(obj: Mapping[str, Any], path: str) -> int:
    key_path = f"{path}.timestamp"
    if "timestamp" not in obj:
        _bad(f"{key_path} is missing")
    v = obj["timestamp"]
    # WhatsApp sends a string of digits; accept a plain integer too. The length cap keeps
    # int() away from Python's digit limit on hostile input.
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 15:
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**15:
        return v
    _bad(f"{key_path} must be unix seconds as a string of digits, got {_describe(v)}")
