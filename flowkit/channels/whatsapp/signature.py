"""Meta's webhook handshake (``hub.challenge``) and the ``X-Hub-Signature-256`` HMAC check,
compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from flowkit.errors import ConfigError, WebhookError

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE_PREFIX = "sha256="


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
