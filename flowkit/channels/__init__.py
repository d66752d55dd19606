"""Messaging channels at the edge of flowkit. WhatsApp Cloud API: :mod:`flowkit.channels.whatsapp`;
a local stand-in for the Graph API (tests, simulator, demo): :mod:`flowkit.testing.fake_graph`."""

from flowkit.channels.whatsapp import (
    AsyncWhatsAppSender,
    InboundMessage,
    StatusUpdate,
    WebhookBatch,
    WhatsAppConfig,
    WhatsAppSender,
    parse_webhook,
    parse_webhook_body,
    sign,
    verify_signature,
    verify_subscription,
)

__all__ = [
    "AsyncWhatsAppSender", "InboundMessage", "StatusUpdate", "WebhookBatch", "WhatsAppConfig", "WhatsAppSender",
    "parse_webhook", "parse_webhook_body", "sign", "verify_signature", "verify_subscription",
]
