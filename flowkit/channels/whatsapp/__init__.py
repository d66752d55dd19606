"""The WhatsApp Cloud API channel.

Inbound (:mod:`.webhook`): :func:`verify_subscription` for the GET handshake,
:func:`verify_signature` for ``X-Hub-Signature-256``, :func:`parse_webhook_body` /
:func:`parse_webhook` into a :class:`WebhookBatch` of :class:`InboundMessage` and
:class:`StatusUpdate`. Test deliveries (:mod:`.payloads`): ``text_payload`` and friends,
``combine``. Outbound (:mod:`.sender`, bodies in :mod:`.outgoing`): :class:`WhatsAppSender` and
:class:`AsyncWhatsAppSender`. A local Graph API stand-in lives in
:mod:`flowkit.testing.fake_graph`.
"""

from flowkit.channels.whatsapp.outgoing import (
    buttons_message,
    list_message,
    read_receipt,
    template_message,
    text_message,
)
from flowkit.channels.whatsapp.payloads import (
    DEFAULT_DISPLAY_PHONE_NUMBER,
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_WABA_ID,
    MessageOptions,
    button_reply_payload,
    combine,
    envelope,
    list_reply_payload,
    location_payload,
    media_payload,
    message_payload,
    new_message_id,
    status_payload,
    template_button_payload,
    text_payload,
)
from flowkit.channels.whatsapp.sender import (
    DEFAULT_API_URL,
    DEFAULT_API_VERSION,
    AsyncWhatsAppSender,
    WhatsAppConfig,
    WhatsAppSender,
)
from flowkit.channels.whatsapp.webhook import (
    MEDIA_TYPES,
    NON_ANSWER_KINDS,
    SIGNATURE_HEADER,
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
    clean_surrogates,
    parse_webhook,
    parse_webhook_body,
    sign,
    verify_signature,
    verify_subscription,
)
from flowkit.errors import ChannelError, GraphAPIError, WebhookError
from flowkit.retry import RetryPolicy

__all__ = [
    "DEFAULT_API_URL", "DEFAULT_API_VERSION", "DEFAULT_DISPLAY_PHONE_NUMBER", "DEFAULT_PHONE_NUMBER_ID",
    "DEFAULT_WABA_ID", "MEDIA_TYPES", "NON_ANSWER_KINDS", "SIGNATURE_HEADER",
    "FlowReply", "Order", "OrderItem", "Reaction", "Referral", "SharedContact", "Skipped", "SystemChange",
    "clean_surrogates",
    "AsyncWhatsAppSender", "ChannelError", "Context", "ErrorDetail", "GraphAPIError", "InboundMessage", "Location",
    "Media", "MessageKind", "MessageOptions", "RetryPolicy", "StatusUpdate", "WebhookBatch", "WebhookError",
    "WhatsAppConfig", "WhatsAppSender",
    "button_reply_payload", "buttons_message", "combine", "envelope", "list_message", "list_reply_payload",
    "location_payload", "media_payload", "message_payload", "new_message_id", "parse_webhook", "parse_webhook_body",
    "read_receipt", "sign", "status_payload", "template_button_payload", "template_message", "text_message",
    "text_payload", "verify_signature", "verify_subscription",
]
