"""The GET subscription handshake and the X-Hub-Signature-256 check."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from flowkit.channels.whatsapp import sign, verify_signature, verify_subscription
from flowkit.errors import ConfigError, WebhookError

SECRET = "app-secret-123"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def params(mode: str = "subscribe", token: str = "verify-me", challenge: str = "1158201444") -> dict[str, str]:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}


def test_handshake_returns_the_challenge() -> None:
    assert verify_subscription(params(), "verify-me") == "1158201444"


@pytest.mark.parametrize("given", [params(token="wrong"), params(token=""), {"hub.mode": "subscribe", "hub.challenge": "1"},
                                   params(token="verify-mé")])
def test_handshake_wrong_token_is_403(given: dict[str, str]) -> None:
    with pytest.raises(WebhookError) as err:
        verify_subscription(given, "verify-me")
    assert (err.value.status, err.value.reason) == (403, "verify_token")


@pytest.mark.parametrize("mode", ["unsubscribe", "", "SUBSCRIBE"])
def test_handshake_wrong_mode_is_403(mode: str) -> None:
    with pytest.raises(WebhookError) as err:
        verify_subscription(params(mode=mode), "verify-me")
    assert (err.value.status, err.value.reason) == (403, "verify_token")
    assert "hub.mode" in str(err.value)


def test_handshake_refuses_when_no_token_is_configured() -> None:
    # Otherwise an empty configured token would match a request without one.
    with pytest.raises(WebhookError) as err:
        verify_subscription(params(token=""), "")
    assert err.value.status == 403 and "WHATSAPP_VERIFY_TOKEN" in str(err.value)


def test_handshake_without_challenge_is_400() -> None:
    with pytest.raises(WebhookError) as err:
        verify_subscription({"hub.mode": "subscribe", "hub.verify_token": "verify-me"}, "verify-me")
    assert err.value.status == 400


def test_sign_matches_hmac_sha256() -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == expected


def test_valid_signature_passes() -> None:
    verify_signature(BODY, sign(BODY, SECRET), SECRET)
    verify_signature(BODY, sign(BODY, SECRET).upper().replace("SHA256=", "sha256="), SECRET)  # hex case-insensitive


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature_is_401(header: str | None) -> None:
    with pytest.raises(WebhookError) as err:
        verify_signature(BODY, header, SECRET)
    assert (err.value.status, err.value.reason) == (401, "missing_signature")


@pytest.mark.parametrize("header", ["sha1=" + "a" * 40, "sha256=", "sha256=xyz", "sha256=" + "g" * 64,
                                    "sha256=" + "a" * 63, "a" * 64, "sha256=" + "é" * 64])
def test_malformed_signature_is_401(header: str) -> None:
    with pytest.raises(WebhookError) as err:
        verify_signature(BODY, header, SECRET)
    assert (err.value.status, err.value.reason) == (401, "bad_signature_format")


def test_signature_with_wrong_secret_is_403() -> None:
    with pytest.raises(WebhookError) as err:
        verify_signature(BODY, sign(BODY, "another-secret"), SECRET)
    assert (err.value.status, err.value.reason) == (403, "bad_signature")


def test_tampered_body_is_403() -> None:
    header = sign(BODY, SECRET)
    with pytest.raises(WebhookError) as err:
        verify_signature(BODY.replace(b"[]", b"[{}]"), header, SECRET)
    assert (err.value.status, err.value.reason) == (403, "bad_signature")


def test_signature_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | bytes, str | bytes]] = []
    real = hmac.compare_digest

    def spy(a: str | bytes, b: str | bytes) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module webhook.py calls it through
    verify_signature(BODY, sign(BODY, SECRET), SECRET)
    with pytest.raises(WebhookError):
        verify_signature(BODY, sign(BODY, "nope"), SECRET)
    verify_subscription(params(), "verify-me")
    assert len(calls) == 3


def test_empty_app_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        verify_signature(BODY, sign(BODY, ""), "")
