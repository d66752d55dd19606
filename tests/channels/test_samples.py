"""Real webhook payloads from public SDKs and Meta's docs (tests/data/whatsapp, SOURCES.md)
through the parser: every sample parses, with nothing skipped, into the kinds and values
WhatsApp means. The same samples go through a real `flowkit serve` in
tests/runtime/test_inbound.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowkit.channels.whatsapp import (
    FlowReply,
    Media,
    Order,
    OrderItem,
    Reaction,
    Referral,
    SharedContact,
    SystemChange,
    parse_webhook,
    parse_webhook_body,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "whatsapp"

# file: (message kinds, status values, change-level errors, other fields)
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...], int, tuple[str, ...]]] = {
    "meta_docs__errors.json": ((), (), 1, ()),
    "meta_docs__request_welcome.json": (("request_welcome",), (), 0, ()),
    "meta_docs__system_user_changed_number.json": (("system",), (), 0, ()),
    "meta_docs__text_username_bsuid.json": (("text",), (), 0, ()),
    "pywa__account_update__account_deleted.json": ((), (), 0, ("account_update",)),
    "pywa__call_connect__business_initiated.json": ((), (), 0, ("calls",)),
    "pywa__call_connect__user_initiated.json": ((), (), 0, ("calls",)),
    "pywa__callback_button__button.json": (("button_reply",), (), 0, ()),
    "pywa__callback_button__quick_reply.json": (("button",), (), 0, ()),
    "pywa__callback_button__quick_reply_without_context.json": (("button",), (), 0, ()),
    "pywa__callback_selection__callback.json": (("list_reply",), (), 0, ()),
    "pywa__callback_selection__description.json": (("list_reply",), (), 0, ()),
    "pywa__deleted_message__revoke.json": (("revoke",), (), 0, ()),
    "pywa__edited_message__image.json": (("edit",), (), 0, ()),
    "pywa__flow_completion__completion.json": (("nfm_reply",), (), 0, ()),
    "pywa__flow_completion__without_flow_token.json": (("nfm_reply",), (), 0, ()),
    "pywa__message__animated_sticker.json": (("media",), (), 0, ()),
    "pywa__message__audio.json": (("media",), (), 0, ()),
    "pywa__message__chosen_location.json": (("location",), (), 0, ()),
    "pywa__message__contacts.json": (("contacts",), (), 0, ()),
    "pywa__message__current_location.json": (("location",), (), 0, ()),
    "pywa__message__document.json": (("media",), (), 0, ()),
    "pywa__message__forwarded.json": (("text",), (), 0, ()),
    "pywa__message__forwarded_many_times.json": (("text",), (), 0, ()),
    "pywa__message__image.json": (("media",), (), 0, ()),
    "pywa__message__interactive_message_with_err.json": (("unsupported",), (), 1, ()),
    "pywa__message__media_with_url.json": (("media",), (), 0, ()),
    "pywa__message__order.json": (("order",), (), 0, ()),
    "pywa__message__reaction.json": (("reaction",), (), 0, ()),
    "pywa__message__referral.json": (("text",), (), 0, ()),
    "pywa__message__reply.json": (("text",), (), 0, ()),
    "pywa__message__static_sticker.json": (("media",), (), 0, ()),
    "pywa__message__text.json": (("text",), (), 0, ()),
    "pywa__message__unreaction_empty.json": (("reaction",), (), 0, ()),
    "pywa__message__unreaction_no_emoji.json": (("reaction",), (), 0, ()),
    "pywa__message__unsupported.json": (("unsupported",), (), 0, ()),
    "pywa__message__unsupported_with_type.json": (("unsupported",), (), 0, ()),
    "pywa__message__video.json": (("media",), (), 0, ()),
    "pywa__message__voice.json": (("media",), (), 0, ()),
    "pywa__message_status__delivered.json": ((), ("delivered",), 0, ()),
    "pywa__message_status__failed.json": ((), ("failed",), 0, ()),
    "pywa__message_status__group.json": ((), ("read",), 0, ()),
    "pywa__message_status__played.json": ((), ("played",), 0, ()),
    "pywa__message_status__read.json": ((), ("read",), 0, ()),
    "pywa__message_status__sent.json": ((), ("sent",), 0, ()),
    "pywa__message_status__with_tracker.json": ((), ("sent",), 0, ()),
    "pywa__system__identity_change.json": (("system",), (), 0, ()),
    "pywa__system__phone_number_change.json": (("system",), (), 0, ()),
    "pywa__template_status_update__approved.json": ((), (), 0, ("message_template_status_update",)),
    "pywa__template_status_update__rejected.json": ((), (), 0, ("message_template_status_update",)),
    "pywa__user_marketing_preferences__resume.json": ((), (), 0, ("user_preferences",)),
    "pywa__user_marketing_preferences__signup.json": ((), (), 0, ("user_preferences",)),
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def one(name: str) -> Any:
    (m,) = parse_webhook(load(name)).messages
    return m


def test_every_sample_file_is_listed_with_its_source() -> None:
    files = sorted(p.name for p in DATA.glob("*.json"))
    assert files == sorted(EXPECTED)
    sources = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    for name in files:
        origin = name.split("__")[0]
        assert {"pywa": "david-lev/pywa", "meta_docs": "developers.facebook.com"}[origin] in sources


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_parses_into_what_whatsapp_means(name: str) -> None:
    body = (DATA / name).read_bytes()
    batch = parse_webhook_body(body)
    kinds, statuses, errors, other = EXPECTED[name]
    assert tuple(m.kind for m in batch.messages) == kinds
    assert tuple(s.status for s in batch.statuses) == statuses
    assert (len(batch.errors), batch.other_fields, batch.skipped) == (errors, other, ())


def test_reactions_and_their_removal() -> None:
    m = one("pywa__message__reaction.json")
    assert (m.reaction, m.refers_to, m.is_answer) == (Reaction("wamid.yzxyzx=", "\U0001F62E"), "wamid.yzxyzx=", False)
    for name in ("pywa__message__unreaction_empty.json", "pywa__message__unreaction_no_emoji.json"):
        assert one(name).reaction == Reaction("wamid.yzxyzx=", None)


def test_edit_and_revoke_name_the_original_message() -> None:
    edit = one("pywa__edited_message__image.json")
    assert edit.refers_to == "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
    assert (edit.text, edit.is_answer) == ("Updated image caption", False)
    revoke = one("pywa__deleted_message__revoke.json")
    assert (revoke.refers_to, revoke.is_answer) == ("<ORIGINAL_WHATSAPP_MESSAGE_ID>", False)


def test_system_messages_in_both_spellings() -> None:
    pywa = one("pywa__system__phone_number_change.json")
    assert pywa.system == SystemChange("user_changed_number", "User A changed from 972987654321 to 972912345678",
                                       new_wa_id="972912345678")
    docs = one("meta_docs__system_user_changed_number.json")
    assert docs.system is not None and (docs.system.type, docs.system.new_wa_id) == ("user_changed_number", "16505550000")
    identity = one("pywa__system__identity_change.json")
    assert identity.system is not None and identity.system.type == "customer_identity_changed"
    assert not identity.is_answer


def test_referral_contacts_order_and_flow_reply() -> None:
    ad = one("pywa__message__referral.json")
    assert ad.text == "BODY" and ad.is_answer
    assert ad.referral == Referral("AD_OR_POST_FB_URL", "ADID", "ad or post", "AD_TITLE", "AD_DESCRIPTION",
                                   "image or video", "CTWA_CLID")
    cards = one("pywa__message__contacts.json").contacts
    assert cards[0] == SharedContact("Chandler Bing", (("+1 555-555-5555", "972987654321"),)) and len(cards) == 3
    order = one("pywa__message__order.json").order
    assert order == Order("354160437058781", "", (OrderItem("HAMBURGER", 3, 30, "ILS"),
                                                  OrderItem("FRENCH_FRIES", 2, 35, "ILS"), OrderItem("SODA", 2, 10, "ILS")))
    flow = one("pywa__flow_completion__completion.json").flow_reply
    assert isinstance(flow, FlowReply) and flow.body == "Sent"
    assert json.loads(flow.response_json or "")["delivery_rating"] == "4"


def test_media_flags_and_unsupported_details() -> None:
    voice, sticker = one("pywa__message__voice.json").media, one("pywa__message__animated_sticker.json").media
    assert isinstance(voice, Media) and voice.voice and not voice.animated
    assert isinstance(sticker, Media) and sticker.animated
    unsupported = one("pywa__message__unsupported_with_type.json")
    assert unsupported.unsupported_type == "pool" and unsupported.errors[0].code == 131051
    assert not unsupported.is_answer


def test_template_quick_reply_and_request_welcome() -> None:
    quick = one("pywa__callback_button__quick_reply.json")
    assert (quick.kind, quick.reply_id) == ("button", "callback_data") and quick.is_answer
    welcome = one("meta_docs__request_welcome.json")
    assert (welcome.kind, welcome.profile_name, welcome.is_answer) == ("request_welcome", "Sheena Nelson", True)


def test_statuses_carry_errors_pricing_conversation_and_callback_data() -> None:
    (failed,) = parse_webhook(load("pywa__message_status__failed.json")).statuses
    assert failed.errors[0].code == 130472 and failed.errors[0].href is not None
    (sent,) = parse_webhook(load("pywa__message_status__with_tracker.json")).statuses
    assert (sent.conversation_id, sent.conversation_origin, sent.conversation_expires_at) == (
        "7270432eae37498234f4444b35ffc5", "service", 1698339900)
    assert (sent.pricing_billable, sent.pricing_model, sent.pricing_category) == (True, "CBP", "service")
    assert sent.biz_opaque_callback_data == "some data"


def test_change_level_errors() -> None:
    batch = parse_webhook(load("meta_docs__errors.json"))
    assert batch.errors[0].code == 130429 and batch.errors[0].href == "/docs/whatsapp/cloud-api/support/error-codes/"


def test_username_user_is_keyed_on_the_business_scoped_id() -> None:
    m = one("meta_docs__text_username_bsuid.json")
    assert m.wa_id == m.user_id == "US.13491208655302741918"
    assert (m.username, m.profile_name) == ("@sheena", "Sheena Nelson")
