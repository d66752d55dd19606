"""What a WhatsApp webhook delivery holds once parsed: inbound messages (with their
content: text, replies, media, location, contacts, orders, reactions, edits, system
changes), delivery statuses, and the items the parser had to skip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessageKind = Literal["text", "button_reply", "list_reply", "button", "nfm_reply", "location", "media", "contacts",
                      "order", "reaction", "edit", "revoke", "system", "request_welcome", "unsupported"]

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
# Kinds that are never an answer: flowkit neither starts a session for them nor replies
# (docs/whatsapp.md, "What flowkit does with each update type").
NON_ANSWER_KINDS: frozenset[str] = frozenset({"reaction", "edit", "revoke", "system", "unsupported"})


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
