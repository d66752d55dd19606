"""Inbound side of the WhatsApp Cloud API: the subscription handshake, the
``X-Hub-Signature-256`` check and the parser for ``messages`` webhook deliveries.

The parser is strict about what flowkit acts on (message ids, senders, timestamps, the
content of the types it understands): a delivery with those fields missing or of the
wrong type is rejected with a 400 naming the JSON path, so a broken integration shows up
at once instead of as silently dropped messages. It is lenient about everything else:
unknown fields, unknown message types, non-``messages`` changes and decoration (profile
names, error details, pricing) that does not have the expected type are ignored, because
Meta adds fields and types over time and a 400 would make it redeliver the whole batch
for days.
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

MessageKind = Literal["text", "button_reply", "list_reply", "button", "location", "media", "unsupported"]

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_CONTENT_TYPES = frozenset({"text", "interactive", "button", "location", *MEDIA_TYPES})
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


@dataclass(frozen=True, kw_only=True)
class InboundMessage:
    """One user message.

    ``kind`` is what flowkit understands; ``raw_type`` is WhatsApp's own ``type`` (``image``,
    ``reaction``, ``order``...). For replies, ``reply_id``/``reply_title`` hold the tapped
    button or row (for a template quick-reply ``button``: its payload and text); ``text``
    is only set for typed text. ``wa_id`` is the sender's phone number, or their
    business-scoped user id (``user_id``) when WhatsApp withholds the number (usernames).
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


@dataclass(frozen=True, kw_only=True)
class StatusUpdate:
    """What happened to a message we sent: ``sent``, ``delivered``, ``read`` or ``failed`` (with ``errors``)."""

    message_id: str
    recipient_id: str
    status: str
    timestamp: int
    errors: tuple[ErrorDetail, ...] = ()
    phone_number_id: str | None = None
    conversation_id: str | None = None
    pricing_category: str | None = None


@dataclass(frozen=True)
class WebhookBatch:
    """Everything in one delivery, in payload order. ``errors`` are change-level errors from WhatsApp."""

    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    errors: tuple[ErrorDetail, ...] = ()


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
    """Parse a raw delivery body: malformed JSON is a 400 ``bad_json``, a wrong shape a 400 ``bad_payload``."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, bad UTF-8 and integers over Python's digit limit;
        # RecursionError a hostile, deeply nested document.
        raise WebhookError(f"body is not valid JSON: {exc}", status=400, reason="bad_json") from None
    return parse_webhook(payload)


def parse_webhook(payload: object) -> WebhookBatch:
    """Parse a decoded WhatsApp Cloud API webhook delivery (``object: whatsapp_business_account``).

    Raises :class:`WebhookError` (400, ``bad_payload``) naming the JSON path of the first
    problem, e.g. ``entry[0].changes[0].value.messages[1].id is missing``.
    """
    root = _object(payload, "payload")
    kind = root.get("object")
    if kind != "whatsapp_business_account":
        if "object" not in root:
            _bad("object is missing")
        _bad(f"object is {kind!r}, expected 'whatsapp_business_account'")
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    errors: list[ErrorDetail] = []
    for i, entry in enumerate(_required(root, "entry", list, "")):
        entry_path = f"entry[{i}]"
        for j, change in enumerate(_required(_object(entry, entry_path), "changes", list, entry_path)):
            change_path = f"{entry_path}.changes[{j}]"
            change = _object(change, change_path)
            # Other fields (account_update, message_template_status_update...) are not ours.
            if _required(change, "field", str, change_path) != "messages":
                continue
            value_path = f"{change_path}.value"
            _parse_value(_required(change, "value", dict, change_path), value_path, messages, statuses, errors)
    return WebhookBatch(tuple(messages), tuple(statuses), tuple(errors))


def _parse_value(value: Mapping[str, Any], path: str, messages: list[InboundMessage],
                 statuses: list[StatusUpdate], errors: list[ErrorDetail]) -> None:
    metadata = _required(value, "metadata", dict, path)
    phone_number_id = _required(metadata, "phone_number_id", str, f"{path}.metadata")

    names: dict[str, str] = {}
    contacts = value.get("contacts")
    for contact in contacts if isinstance(contacts, list) else ():
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile")
        name = _loose_str(profile, "name")
        if name is not None:
            for ident in (_loose_str(contact, "wa_id"), _loose_str(contact, "user_id")):
                if ident is not None:
                    names[ident] = name
    # A message's `from` can differ from its contact's `wa_id` (numbers that WhatsApp
    # normalises, e.g. in Brazil), so with a single contact its name is the sender's.
    only_name = next(iter(names.values())) if len(set(names.values())) == 1 else None

    for k, raw in enumerate(_optional(value, "messages", list, path) or ()):
        messages.append(_parse_message(raw, f"{path}.messages[{k}]", phone_number_id, names, only_name))
    for k, raw in enumerate(_optional(value, "statuses", list, path) or ()):
        statuses.append(_parse_status(raw, f"{path}.statuses[{k}]", phone_number_id))
    errors.extend(_error_details(value.get("errors")))


def _parse_message(raw: object, path: str, phone_number_id: str, names: Mapping[str, str],
                   only_name: str | None) -> InboundMessage:
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
    if content is not None:
        content = _object(content, content_path)
        if raw_type == "text":
            fields = {"kind": "text", "text": _required(content, "body", str, content_path)}
        elif raw_type == "interactive":
            fields = _interactive(content, content_path)
        elif raw_type == "button":
            fields = {"kind": "button", "reply_id": _optional(content, "payload", str, content_path),
                      "reply_title": _required(content, "text", str, content_path)}
        elif raw_type == "location":
            fields = {"kind": "location", "location": _location(content, content_path)}
        elif raw_type in MEDIA_TYPES:
            fields = {"kind": "media", "media": Media(
                id=_required(content, "id", str, content_path),
                mime_type=_optional(content, "mime_type", str, content_path),
                sha256=_optional(content, "sha256", str, content_path),
                caption=_optional(content, "caption", str, content_path),
                filename=_optional(content, "filename", str, content_path),
            )}
    return InboundMessage(
        message_id=message_id,
        wa_id=sender,
        phone_number_id=phone_number_id,
        timestamp=timestamp,
        raw_type=raw_type,
        profile_name=names.get(sender) or (names.get(user_id) if user_id else None) or only_name,
        context=_context(m.get("context")),
        user_id=user_id,
        errors=_error_details(m.get("errors")),
        **fields,
    )


def _interactive(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    itype = _required(content, "type", str, path)
    if itype not in ("button_reply", "list_reply"):
        return {"kind": "unsupported"}  # flow replies (nfm_reply) and future kinds
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
    recipient = _optional(s, "recipient_id", str, path) or _optional(s, "recipient_user_id", str, path)
    if not recipient:
        _bad(f"{path}.recipient_id is missing")
    return StatusUpdate(
        message_id=message_id,
        recipient_id=recipient,
        status=status,
        timestamp=timestamp,
        errors=_error_details(s.get("errors")),
        phone_number_id=phone_number_id,
        conversation_id=_loose_str(s.get("conversation"), "id"),
        pricing_category=_loose_str(s.get("pricing"), "category"),
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
