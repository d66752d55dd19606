"""The payload builders produce the real delivery shape, so parse_webhook round-trips them."""

from __future__ import annotations

import json

import pytest

from flowkit.channels.whatsapp import (
    DEFAULT_PHONE_NUMBER_ID,
    Location,
    button_reply_payload,
    combine,
    list_reply_payload,
    location_payload,
    media_payload,
    message_payload,
    new_message_id,
    parse_webhook,
    parse_webhook_body,
    sign,
    status_payload,
    template_button_payload,
    text_payload,
    verify_signature,
)

from .conftest import load_payload

WA = "15551234567"


def test_text_round_trip_with_every_option() -> None:
    p = text_payload(WA, "hello", message_id="wamid.T1", timestamp=1727000000, profile_name="Ada",
                     context_id="wamid.PREV", phone_number_id="999", display_phone_number="15550000000", waba_id="42")
    (m,) = parse_webhook(p).messages
    assert (m.message_id, m.wa_id, m.text, m.kind, m.timestamp, m.profile_name, m.phone_number_id) == (
        "wamid.T1", WA, "hello", "text", 1727000000, "Ada", "999")
    assert m.context is not None and (m.context.message_id, m.context.sender) == ("wamid.PREV", "15550000000")
    assert p["entry"][0]["id"] == "42"


def test_builders_match_the_real_shape_key_for_key() -> None:
    # Same keys at every level as a captured delivery (values differ).
    real = load_payload("interactive_button_reply.json")
    built = button_reply_payload("5511987654321", "size_large", "Large", context_id="wamid.X")

    def shape(v: object) -> object:
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items() if k != "user_id"}
        if isinstance(v, list):
            return [shape(x) for x in v]
        return type(v).__name__

    assert shape(built) == shape(real)
    assert shape(status_payload("wamid.X", WA, "failed")) == shape(load_payload("status_failed.json"))


def test_button_list_and_template_replies_round_trip() -> None:
    (b,) = parse_webhook(button_reply_payload(WA, "yes", "Yes")).messages
    (lr,) = parse_webhook(list_reply_payload(WA, "m", "Medium", "30 cm")).messages
    (lr2,) = parse_webhook(list_reply_payload(WA, "s", "Small")).messages
    (t,) = parse_webhook(template_button_payload(WA, "reorder", "Reorder")).messages
    assert (b.kind, b.reply_id, b.reply_title) == ("button_reply", "yes", "Yes")
    assert (lr.kind, lr.reply_id, lr.reply_title, lr.reply_description) == ("list_reply", "m", "Medium", "30 cm")
    assert lr2.reply_description is None
    assert (t.kind, t.reply_id, t.reply_title) == ("button", "reorder", "Reorder")


def test_location_round_trip() -> None:
    (m,) = parse_webhook(location_payload(WA, 52.52, 13.405, name="Alexanderplatz", address="Berlin")).messages
    assert m.location == Location(52.52, 13.405, "Alexanderplatz", "Berlin")
    (pin,) = parse_webhook(location_payload(WA, 0, 0)).messages
    assert pin.location == Location(0.0, 0.0)


@pytest.mark.parametrize("kind", ["image", "audio", "video", "document", "sticker"])
def test_media_round_trip(kind: str) -> None:
    (m,) = parse_webhook(media_payload(WA, "MEDIA1", kind=kind, caption="c", filename="f.bin")).messages
    assert (m.kind, m.raw_type) == ("media", kind)
    assert m.media is not None and (m.media.id, m.media.caption, m.media.filename) == ("MEDIA1", "c", "f.bin")
    assert m.media.mime_type and m.media.sha256


def test_media_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        media_payload(WA, kind="hologram")


def test_any_type_via_message_payload() -> None:
    (m,) = parse_webhook(message_payload(WA, "reaction", {"message_id": "wamid.X", "emoji": "👍"},
                                         profile_name=None)).messages
    assert (m.kind, m.raw_type, m.profile_name) == ("reaction", "reaction", None)


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed"])
def test_status_round_trip(status: str) -> None:
    (s,) = parse_webhook(status_payload("wamid.OUT", WA, status, timestamp=1727000001)).statuses
    assert (s.message_id, s.recipient_id, s.status, s.timestamp) == ("wamid.OUT", WA, status, 1727000001)
    assert bool(s.errors) == (status == "failed")
    assert s.phone_number_id == DEFAULT_PHONE_NUMBER_ID


def test_status_with_custom_errors() -> None:
    (s,) = parse_webhook(status_payload("wamid.OUT", WA, "failed", errors=[
        {"code": 131047, "title": "Re-engagement message"}])).statuses
    assert (s.errors[0].code, s.errors[0].title) == (131047, "Re-engagement message")


def test_combine_batches_like_meta() -> None:
    a = text_payload("111", "one", message_id="wamid.1")
    b = button_reply_payload("222", "x", "X", message_id="wamid.2")
    c = text_payload("111", "three", message_id="wamid.3")
    d = status_payload("wamid.OUT", "111", "read")
    e = text_payload("333", "other account", message_id="wamid.4", waba_id="77", phone_number_id="888")
    p = combine(a, b, c, d, e)
    assert len(p["entry"]) == 2
    first = p["entry"][0]["changes"]
    assert len(first) == 2  # messages merged into one change, statuses in another
    assert [m["id"] for m in first[0]["value"]["messages"]] == ["wamid.1", "wamid.2", "wamid.3"]
    assert [c["wa_id"] for c in first[0]["value"]["contacts"]] == ["111", "222"]  # no duplicate contact
    batch = parse_webhook(p)
    assert [m.message_id for m in batch.messages] == ["wamid.1", "wamid.2", "wamid.3", "wamid.4"]
    assert batch.messages[3].phone_number_id == "888"
    assert [s.status for s in batch.statuses] == ["read"]
    # combine copies: the inputs are untouched
    assert len(a["entry"][0]["changes"][0]["value"]["messages"]) == 1


def test_signed_builder_body_passes_the_whole_inbound_path() -> None:
    body = json.dumps(combine(text_payload(WA, "pizza"), location_payload(WA, 1.5, 2.5))).encode()
    verify_signature(body, sign(body, "s3cret"), "s3cret")
    assert [m.kind for m in parse_webhook_body(body).messages] == ["text", "location"]


def test_message_ids_are_unique_and_wamid_shaped() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("wamid.") for i in ids)
    assert text_payload(WA, "a")["entry"][0]["changes"][0]["value"]["messages"][0]["id"].startswith("wamid.")
