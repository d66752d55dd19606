"""Which numbers a deployment answers for, and how a reply addresses its user."""

from __future__ import annotations

from flowkit.channels.whatsapp import WhatsAppConfig, WhatsAppSender, text_message
from flowkit.channels.whatsapp.outgoing import is_user_id
from flowkit.testing.fake_graph import FakeGraphAPI
from flowkit.web import phone_number_ids_from_env

from .conftest import Sleeps


def test_whatsapp_phone_number_id_may_list_several_numbers() -> None:
    assert phone_number_ids_from_env({"WHATSAPP_PHONE_NUMBER_ID": " 111, 222 ,,"}) == {"111", "222"}
    assert phone_number_ids_from_env({"WHATSAPP_PHONE_NUMBER_ID": ""}) == frozenset()
    assert phone_number_ids_from_env({}) == frozenset()
    # replies go from the first one
    config = WhatsAppConfig.from_env({"WHATSAPP_TOKEN": "t", "WHATSAPP_PHONE_NUMBER_ID": "111, 222"})
    assert config.phone_number_id == "111"


def test_business_scoped_ids_are_told_from_phone_numbers() -> None:
    for bsuid in ("US.13491208655302741918", "BR.1502576394655843", "US.ENT.11815799212886844830"):
        assert is_user_id(bsuid)
    for phone in ("16505551234", "+16505551234", "5511912345678", "1.5", "", "USA.123"):
        assert not is_user_id(phone)


def test_a_reply_to_a_business_scoped_id_uses_recipient(graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    assert text_message("US.13491208655302741918", "hi")["recipient"] == "US.13491208655302741918"
    assert "recipient" not in text_message("16505551234", "hi")
    with WhatsAppSender(config=graph.config(), sleep=sleeps) as sender:
        sender.send_text("US.13491208655302741918", "hello")
        sender.send_text("16505551234", "hello")
    by_user, by_phone = graph.sent
    assert by_user.to == "US.13491208655302741918" and "to" not in by_user.payload
    assert by_phone.payload["to"] == "16505551234" and "recipient" not in by_phone.payload
