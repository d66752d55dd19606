"""Parsing real-shaped WhatsApp Cloud API deliveries, and rejecting wrong ones with the JSON path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit.channels.whatsapp import (
    Context,
    ErrorDetail,
    InboundMessage,
    Location,
    Media,
    combine,
    parse_webhook,
    parse_webhook_body,
    status_payload,
    text_payload,
)
from flowkit.errors import WebhookError

from .conftest import load_payload


def only(name: str) -> InboundMessage:
    batch = parse_webhook(load_payload(name))
    assert len(batch.messages) == 1 and not batch.statuses
    return batch.messages[0]


# ---------------------------------------------------------------- every message type


def test_text_with_reply_context() -> None:
    m = only("text_reply.json")
    assert (m.kind, m.raw_type, m.text) == ("text", "text", "Large, please")
    assert m.wa_id == "4915112345678" and m.profile_name == "Anna Schmidt"
    assert m.phone_number_id == "109876543210987"
    assert m.timestamp == 1727193442
    assert m.message_id.startswith("wamid.HBgN")
    assert m.context == Context(message_id="wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQ4QUZBQkY2RTk0MzJCOEE1RQA=",
                                sender="15550192834")


def test_interactive_button_reply() -> None:
    m = only("interactive_button_reply.json")
    assert (m.kind, m.raw_type, m.reply_id, m.reply_title, m.text) == (
        "button_reply", "interactive", "size_large", "Large", None)
    assert m.profile_name == "João Silva"
    assert m.context is not None and m.context.message_id is not None


def test_interactive_list_reply_with_description() -> None:
    m = only("interactive_list_reply.json")
    assert (m.kind, m.reply_id, m.reply_title, m.reply_description) == (
        "list_reply", "topping_mushroom", "Mushrooms", "Fresh button mushrooms")


def test_template_quick_reply_button() -> None:
    m = only("template_button.json")
    assert (m.kind, m.raw_type, m.reply_id, m.reply_title) == ("button", "button", "reorder_yes", "Yes, reorder")


def test_location() -> None:
    m = only("location.json")
    assert m.kind == "location"
    assert m.location == Location(-33.8567844, 151.213108, name="Sydney Opera House",
                                  address="1 Macquarie St, Sydney NSW 2000", url="https://maps.google.com/?cid=1234567890")


@pytest.mark.parametrize(("name", "raw_type", "media"), [
    ("image.json", "image", Media("1034758924102934", "image/jpeg", "rK+pQ6RvG5v8m1Rz3CqC0f7o5Y9uJqk0mJ3x2sYl1lE=",
                                  caption="my receipt")),
    ("document.json", "document", Media("882734109283746", "application/pdf",
                                        "Tq1W1w6Cq8c3hW0oY6m+4mZr3R2p4l1q0vV5b9n7k3Q=", caption="invoice",
                                        filename="invoice-0042.pdf")),
    ("audio_voice.json", "audio", Media("559182736450912", "audio/ogg; codecs=opus", "u8H2e3N1pQ==", voice=True)),
    ("sticker.json", "sticker", Media("745120398475612", "image/webp", "f9K2mQ==")),
])
def test_media(name: str, raw_type: str, media: Media) -> None:
    m = only(name)
    assert (m.kind, m.raw_type, m.media, m.text) == ("media", raw_type, media, None)


@pytest.mark.parametrize(("name", "kind"), [("reaction.json", "reaction"), ("contacts.json", "contacts"),
                                            ("unsupported.json", "unsupported")])
def test_other_types_have_their_own_kind_and_no_answer_text(name: str, kind: str) -> None:
    m = only(name)
    assert (m.kind, m.raw_type, m.text, m.reply_id) == (kind, kind, None, None)
    assert m.profile_name is not None
    assert m.is_answer is (kind == "contacts")


def test_unsupported_message_keeps_whatsapp_errors() -> None:
    m = only("unsupported.json")
    assert m.errors == (ErrorDetail(131051, "Message type unknown", "Message type unknown",
                                    "Message type is currently not supported."),)


def test_interactive_without_content_is_unsupported_and_change_errors_are_kept() -> None:
    # WhatsApp sends this when it cannot render an interactive message itself.
    batch = parse_webhook(load_payload("interactive_without_content.json"))
    assert batch.messages[0].kind == "unsupported" and batch.messages[0].raw_type == "interactive"
    assert batch.errors == (ErrorDetail(131000, "Something went wrong", "Something went wrong",
                                        "Unsupported webhook payload"),)


def test_flow_reply_interactive_is_an_nfm_reply_and_other_interactive_types_unsupported() -> None:
    payload = text_payload("15551234567", "x")
    msg = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    msg.update(type="interactive", interactive={"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}})
    del msg["text"]
    m = parse_webhook(payload).messages[0]
    assert m.kind == "nfm_reply" and m.flow_reply is not None and m.flow_reply.response_json == "{}"
    msg["interactive"] = {"type": "call_permission_reply", "call_permission_reply": {}}
    m = parse_webhook(payload).messages[0]
    assert (m.kind, m.unsupported_type) == ("unsupported", "interactive.call_permission_reply")


def test_username_user_without_phone_number_uses_business_scoped_id() -> None:
    m = only("username_bsuid.json")
    assert m.wa_id == m.user_id == "US.13491208655302741918"
    assert (m.kind, m.text, m.profile_name) == ("text", "pizza", "Kai")


def test_forwarded_flag() -> None:
    payload = text_payload("15551234567", "fwd")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["context"] = {"forwarded": True}
    assert parse_webhook(payload).messages[0].context == Context(forwarded=True)


# ---------------------------------------------------------------- statuses and batches


def test_statuses_sent_delivered_read() -> None:
    batch = parse_webhook(load_payload("statuses_batch.json"))
    assert not batch.messages
    assert [s.status for s in batch.statuses] == ["sent", "delivered", "read"]
    sent = batch.statuses[0]
    assert sent.recipient_id == "4915112345678" and sent.timestamp == 1727193440
    assert sent.conversation_id == "0d8a7a1f3e2b4c5d6e7f8a9b0c1d2e3f" and sent.pricing_category == "service"
    assert batch.statuses[2].conversation_id is None and sent.errors == ()


def test_failed_status_with_errors() -> None:
    (s,) = parse_webhook(load_payload("status_failed.json")).statuses
    assert s.status == "failed" and s.recipient_id == "14155550123"
    assert s.errors[0].code == 131047 and "24 hours" in (s.errors[0].details or "")


def test_multi_entry_multi_message_delivery_in_order() -> None:
    batch = parse_webhook(load_payload("multi_entry.json"))
    assert [m.message_id for m in batch.messages] == ["wamid.M1", "wamid.M2", "wamid.M3", "wamid.M4"]
    assert [m.profile_name for m in batch.messages] == ["Anna Schmidt", "Sam Jones", "Anna Schmidt", "Liam Brown"]
    assert [m.kind for m in batch.messages] == ["text", "button_reply", "text", "location"]
    assert batch.messages[3].phone_number_id == "110000000000001"
    assert [(s.message_id, s.status) for s in batch.statuses] == [("wamid.S1", "delivered")]


def test_unknown_fields_and_other_change_fields_are_ignored() -> None:
    payload = load_payload("text_reply.json")
    payload["new_top_level"] = {"x": 1}
    payload["entry"][0]["time"] = 1727193442
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["brand_new"] = [1, 2]
    payload["entry"][0]["changes"].insert(0, {"field": "message_template_status_update", "value": {"event": "APPROVED"}})
    payload["entry"][0]["changes"].append({"field": "account_alerts", "value": "anything at all"})
    assert only_from(payload).text == "Large, please"


def only_from(payload: Any) -> InboundMessage:
    (m,) = parse_webhook(payload).messages
    return m


def test_decoration_of_the_wrong_type_is_ignored_not_rejected() -> None:
    payload = load_payload("status_failed.json")
    status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["errors"] = [{"code": "oops", "title": 5}, "junk"]
    status["conversation"] = "not an object"
    (s,) = parse_webhook(payload).statuses
    assert s.errors == (ErrorDetail(),) and s.conversation_id is None
    text = load_payload("text_reply.json")
    text["entry"][0]["changes"][0]["value"]["contacts"] = [{"profile": {"name": 7}, "wa_id": "4915112345678"}, 3]
    assert only_from(text).profile_name is None


def test_empty_delivery() -> None:
    assert parse_webhook({"object": "whatsapp_business_account", "entry": []}).messages == ()


def test_integer_timestamp_is_accepted() -> None:
    payload = text_payload("15551234567", "x")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = 1727193442
    assert only_from(payload).timestamp == 1727193442


# ---------------------------------------------------------------- wrong shapes: 400 with the path


def _mutated(path: list[Any], value: Any = ..., base: Any = None) -> Any:
    payload = copy.deepcopy(base if base is not None else load_payload("multi_entry.json"))
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


MSG1 = ["entry", 0, "changes", 0, "value", "messages", 1]
BAD_SHAPES = [
    (["x"], "payload must be an object, got an array"),
    ("nope", "payload must be an object, got a string"),
    (None, "payload must be an object, got null"),
    ({}, "object is missing"),
    ({"object": "page", "entry": []}, "object is 'page', expected 'whatsapp_business_account'"),
    ({"object": "whatsapp_business_account"}, "entry is missing"),
    ({"object": "whatsapp_business_account", "entry": {}}, "entry must be an array, got an object"),
    (_mutated(["entry", 1], 5), "entry[1] must be an object, got a number"),
    (_mutated(["entry", 0, "changes"]), "entry[0].changes is missing"),
    (_mutated(["entry", 0, "changes", 1], []), "entry[0].changes[1] must be an object, got an array"),
    (_mutated(["entry", 0, "changes", 0, "field"]), "entry[0].changes[0].field is missing"),
    (_mutated(["entry", 0, "changes", 0, "value"]), "entry[0].changes[0].value is missing"),
    (_mutated(["entry", 0, "changes", 0, "value", "metadata"]), "entry[0].changes[0].value.metadata is missing"),
    (_mutated(["entry", 0, "changes", 0, "value", "metadata", "phone_number_id"], 1234),
     "entry[0].changes[0].value.metadata.phone_number_id must be a string, got a number"),
    (_mutated(["entry", 0, "changes", 0, "value", "messages"], {"id": 1}),
     "entry[0].changes[0].value.messages must be an array, got an object"),
    (_mutated(MSG1, "wamid"), "entry[0].changes[0].value.messages[1] must be an object, got a string"),
    (_mutated([*MSG1, "id"]), "entry[0].changes[0].value.messages[1].id is missing"),
    (_mutated([*MSG1, "id"], 42), "entry[0].changes[0].value.messages[1].id must be a string, got a number"),
    (_mutated([*MSG1, "from"]), "entry[0].changes[0].value.messages[1].from is missing"),
    (_mutated([*MSG1, "from"], None), "entry[0].changes[0].value.messages[1].from must be a string, got null"),
    (_mutated([*MSG1, "timestamp"]), "entry[0].changes[0].value.messages[1].timestamp is missing"),
    (_mutated([*MSG1, "timestamp"], "yesterday"),
     "entry[0].changes[0].value.messages[1].timestamp must be unix seconds as a string of digits, got a string"),
    (_mutated([*MSG1, "timestamp"], True),
     "entry[0].changes[0].value.messages[1].timestamp must be unix seconds as a string of digits, got a boolean"),
    (_mutated([*MSG1, "type"]), "entry[0].changes[0].value.messages[1].type is missing"),
    (_mutated([*MSG1, "interactive"], "button"),
     "entry[0].changes[0].value.messages[1].interactive must be an object, got a string"),
    (_mutated([*MSG1, "interactive", "type"]), "entry[0].changes[0].value.messages[1].interactive.type is missing"),
    (_mutated([*MSG1, "interactive", "button_reply"]),
     "entry[0].changes[0].value.messages[1].interactive.button_reply is missing"),
    (_mutated([*MSG1, "interactive", "button_reply", "id"]),
     "entry[0].changes[0].value.messages[1].interactive.button_reply.id is missing"),
    (_mutated([*MSG1, "interactive", "button_reply", "title"], ["Yes"]),
     "entry[0].changes[0].value.messages[1].interactive.button_reply.title must be a string, got an array"),
    (_mutated(["entry", 0, "changes", 0, "value", "messages", 0, "text", "body"]),
     "entry[0].changes[0].value.messages[0].text.body is missing"),
    (_mutated(["entry", 1, "changes", 1, "value", "messages", 0, "location", "latitude"], "north"),
     "entry[1].changes[1].value.messages[0].location.latitude must be a number between -90 and 90, got a string"),
    (_mutated(["entry", 1, "changes", 1, "value", "messages", 0, "location", "longitude"], 181),
     "entry[1].changes[1].value.messages[0].location.longitude must be a number between -180 and 180, got a number"),
    (_mutated(["entry", 1, "changes", 1, "value", "messages", 0, "location", "longitude"]),
     "entry[1].changes[1].value.messages[0].location.longitude is missing"),
    (_mutated(["entry", 0, "changes", 1, "value", "statuses", 0, "id"]),
     "entry[0].changes[1].value.statuses[0].id is missing"),
    (_mutated(["entry", 0, "changes", 1, "value", "statuses", 0, "status"], 3),
     "entry[0].changes[1].value.statuses[0].status must be a string, got a number"),
    (_mutated(["entry", 0, "changes", 1, "value", "statuses", 0, "recipient_id"]),
     "entry[0].changes[1].value.statuses[0].recipient_id is missing"),
]


ENVELOPE = 7  # the first BAD_SHAPES are not WhatsApp deliveries at all


@pytest.mark.parametrize(("payload", "message"), BAD_SHAPES[:ENVELOPE], ids=[m for _, m in BAD_SHAPES[:ENVELOPE]])
def test_bad_envelopes_are_400_naming_the_path(payload: Any, message: str) -> None:
    with pytest.raises(WebhookError) as err:
        parse_webhook(payload)
    assert (err.value.status, err.value.reason) == (400, "bad_payload")
    assert str(err.value) == message


@pytest.mark.parametrize(("payload", "message"), BAD_SHAPES[ENVELOPE:], ids=[m for _, m in BAD_SHAPES[ENVELOPE:]])
def test_bad_items_are_skipped_naming_the_path_and_the_rest_is_kept(payload: Any, message: str) -> None:
    batch = parse_webhook(payload)
    assert [s.reason for s in batch.skipped] == [message]
    assert batch.skipped[0].path in message
    # everything the mutation did not touch is still there
    whole = parse_webhook(load_payload("multi_entry.json"))
    assert len(batch.messages) + len(batch.statuses) < len(whole.messages) + len(whole.statuses)
    kept = {m.message_id for m in batch.messages} | {s.message_id for s in batch.statuses}
    assert kept and kept <= {m.message_id for m in whole.messages} | {s.message_id for s in whole.statuses}


def test_media_without_id_is_skipped() -> None:
    payload = load_payload("image.json")
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["id"]
    batch = parse_webhook(payload)
    assert batch.messages == () and batch.skipped[0].message_id is not None
    assert batch.skipped[0].reason.endswith("messages[0].image.id is missing")


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b'{"a": 1}}', b"[" * 100_000,
                                  b'{"n": ' + b"9" * 5000 + b"}"])
def test_malformed_json_is_400_bad_json(body: bytes) -> None:
    with pytest.raises(WebhookError) as err:
        parse_webhook_body(body)
    assert (err.value.status, err.value.reason) == (400, "bad_json")


def test_body_parser_parses_valid_json() -> None:
    body = json.dumps(combine(text_payload("15551234567", "hi"), status_payload("wamid.X", "15551234567"))).encode()
    batch = parse_webhook_body(body)
    assert [m.text for m in batch.messages] == ["hi"] and [s.status for s in batch.statuses] == ["delivered"]


# ---------------------------------------------------------------- fuzzing: only WebhookError, ever

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
KEYS = ["object", "entry", "id", "changes", "field", "value", "metadata", "phone_number_id", "contacts",
        "profile", "name", "wa_id", "messages", "statuses", "from", "timestamp", "type", "text", "body",
        "interactive", "button_reply", "list_reply", "title", "location", "latitude", "longitude", "image",
        "context", "errors", "recipient_id", "status", "button", "payload", "from_user_id"]


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _nodes(v, (*path, i))
    return out


@st.composite
def near_valid_payloads(draw: st.DrawFn) -> Any:
    """A real delivery with a few nodes replaced, dropped, or given a new key (reaches deep code paths)."""
    payload = copy.deepcopy(draw(st.sampled_from([load_payload(n) for n in (
        "multi_entry.json", "location.json", "image.json", "interactive_list_reply.json", "template_button.json",
        "status_failed.json", "username_bsuid.json")])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_nodes(payload)))
        if not path:
            return draw(json_values)
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(json_values)
    return payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, near_valid_payloads()))
def test_random_json_only_ever_raises_webhook_error(payload: Any) -> None:
    try:
        batch = parse_webhook(payload)
    except WebhookError as exc:
        assert exc.status == 400 and exc.reason == "bad_payload"
    else:
        for m in batch.messages:
            assert isinstance(m.message_id, str) and isinstance(m.wa_id, str) and isinstance(m.timestamp, int)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_bodies_only_ever_raise_webhook_error(body: bytes) -> None:
    try:
        parse_webhook_body(body)
    except WebhookError as exc:
        assert exc.status == 400 and exc.reason in ("bad_json", "bad_payload")
