"""Headers, footers, media, location requests, cta URL buttons, read receipts with the typing
indicator and media downloads: through both senders, over HTTP, to the Graph imitation."""
# ruff: noqa: F811

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flowkit.errors import ChannelError, GraphAPIError
from flowkit.testing.fake_graph import FakeGraphAPI

# The sync/async sender fixtures of test_sender: every test here runs with both senders.
# (Fixtures are found by parameter name, which ruff reads as a redefinition.)
from .test_sender import make, send  # noqa: F401

TO = "15551234567"


def test_buttons_with_text_header_and_footer(send: Any, graph: FakeGraphAPI) -> None:
    send.send_buttons(TO, "Pay now?", [("y", "Yes"), ("n", "No")], header="Order 42", footer="Reply STOP to opt out")
    i = graph.sent[0].payload["interactive"]
    assert i["header"] == {"type": "text", "text": "Order 42"} and i["footer"] == {"text": "Reply STOP to opt out"}


def test_buttons_with_image_header_by_link_and_by_id(send: Any, graph: FakeGraphAPI) -> None:
    send.send_buttons(TO, "Like it?", [("y", "Yes")], header=("image", "https://example.com/p.jpg"))
    send.send_buttons(TO, "Like it?", [("y", "Yes")], header=("document", "1234567890"))
    assert graph.sent[0].payload["interactive"]["header"] == {"type": "image", "image": {"link": "https://example.com/p.jpg"}}
    assert graph.sent[1].payload["interactive"]["header"] == {"type": "document", "document": {"id": "1234567890"}}


def test_list_takes_only_a_text_header(send: Any, graph: FakeGraphAPI) -> None:
    sections = [{"rows": [("a", "A")]}]
    send.send_list(TO, "Pick", "Menu", sections, header="Today", footer="Prices incl. VAT")
    assert graph.sent[0].payload["interactive"]["header"] == {"type": "text", "text": "Today"}
    with pytest.raises(ChannelError, match="takes only a text header"):
        send.send_list(TO, "Pick", "Menu", sections, header=("image", "https://example.com/p.jpg"))


@pytest.mark.parametrize("kind", ["image", "video", "document"])
def test_captioned_media(send: Any, graph: FakeGraphAPI, kind: str) -> None:
    send.send_media(TO, kind, "https://example.com/f", caption="Your receipt")
    (m,) = graph.sent
    assert m.type == kind and m.payload[kind] == {"link": "https://example.com/f", "caption": "Your receipt"}


@pytest.mark.parametrize("kind", ["audio", "sticker"])
def test_audio_and_stickers_take_no_caption(send: Any, graph: FakeGraphAPI, kind: str) -> None:
    send.send_media(TO, kind, "998877")
    assert graph.sent[0].payload[kind] == {"id": "998877"}
    with pytest.raises(ChannelError, match="takes no caption"):
        send.send_media(TO, kind, "998877", caption="hi")


def test_location_request(send: Any, graph: FakeGraphAPI) -> None:
    send.send_location_request(TO, "Where should we deliver?")
    i = graph.sent[0].payload["interactive"]
    assert i == {"type": "location_request_message", "body": {"text": "Where should we deliver?"},
                 "action": {"name": "send_location"}}


def test_cta_url(send: Any, graph: FakeGraphAPI) -> None:
    send.send_cta_url(TO, "Track your parcel", "Track", "https://example.com/t/42", footer="Thanks")
    i = graph.sent[0].payload["interactive"]
    assert i["type"] == "cta_url" and i["footer"] == {"text": "Thanks"}
    assert i["action"] == {"name": "cta_url", "parameters": {"display_text": "Track", "url": "https://example.com/t/42"}}
    with pytest.raises(ChannelError, match="at most 20"):
        send.send_cta_url(TO, "Track", "Track my parcel right now", "https://example.com/t/42")
    with pytest.raises(ChannelError, match="must start with https"):
        send.send_cta_url(TO, "Track", "Track", "javascript:alert(1)")


def test_read_receipt_with_typing_indicator(send: Any, graph: FakeGraphAPI) -> None:
    send.mark_read("wamid.IN1", typing=True)
    send.mark_read("wamid.IN2")
    assert graph.read_receipts == ["wamid.IN1", "wamid.IN2"] and graph.typing_indicators == ["wamid.IN1"]
    assert graph.sent == []


def test_download_media_with_the_token(send: Any, graph: FakeGraphAPI) -> None:
    data = bytes(range(256)) * 40
    media_id = graph.add_media(data, "application/pdf")
    got = send.download_media(media_id)
    assert (got.id, got.mime_type, got.data) == (media_id, "application/pdf", data)
    assert got.sha256 == hashlib.sha256(data).hexdigest()


def test_download_unknown_media_says_what_happened(send: Any) -> None:
    with pytest.raises(GraphAPIError) as info:
        send.download_media("123456789")
    assert info.value.status == 400 and info.value.code == 100 and "does not exist" in str(info.value)


def test_download_with_a_bad_token_is_190(make: Callable[..., Any], graph: FakeGraphAPI) -> None:
    media_id = graph.add_media(b"x")
    with pytest.raises(GraphAPIError) as info:
        make(config=graph.config(token="wrong")).download_media(media_id)
    assert info.value.code == 190 and "WHATSAPP_TOKEN" in str(info.value) and "wrong" not in str(info.value)


def test_media_url_without_token_is_refused(graph: FakeGraphAPI) -> None:
    # the download URL alone is not enough: Graph wants the bearer token on it too
    media_id = graph.add_media(b"secret")
    info = httpx.get(f"{graph.url}/v21.0/{media_id}", headers={"Authorization": f"Bearer {graph.token}"}).json()
    assert httpx.get(info["url"]).status_code == 401
    assert httpx.get(info["url"], headers={"Authorization": f"Bearer {graph.token}"}).content == b"secret"


def test_media_ids_are_checked_before_any_request(send: Any, graph: FakeGraphAPI) -> None:
    with pytest.raises(ChannelError, match="media id"):
        send.download_media("../../me/accounts")
    assert graph.requests == 0


def test_inbound_media_keeps_id_type_hash_and_caption_and_downloads(graph: FakeGraphAPI) -> None:
    import base64

    from flowkit.channels.whatsapp import WhatsAppSender, media_payload, parse_webhook
    from flowkit.engine import Start, step
    from flowkit.flow import parse_flow
    from flowkit.web import to_event

    data = b"%PDF-1.7 receipt"
    media_id = graph.add_media(data, "application/pdf")
    webhook_sha = base64.b64encode(hashlib.sha256(data).digest()).decode()  # webhooks write base64
    (inbound,) = parse_webhook(media_payload(TO, media_id, kind="document", mime_type="application/pdf",
                                             sha256=webhook_sha, caption="my receipt", filename="r.pdf")).messages
    flow = parse_flow("flow: f\nstart: s\nslots:\n  doc: {type: media}\nsteps:\n  s:\n    ask: Send the receipt\n"
                      "    input: {type: media, media: [document]}\n    save: doc\n    next: done\n"
                      "  done:\n    end: completed\n")
    t = step(flow, None, Start(flow="f"), 1_790_000_000_000, session_id="x")
    t = step(flow, t.state, to_event(inbound), 1_790_000_001_000)
    doc = t.state.slots["doc"]
    assert doc == {"id": media_id, "kind": "document", "mime_type": "application/pdf", "sha256": webhook_sha,
                   "caption": "my receipt", "filename": "r.pdf"}
    with WhatsAppSender(config=graph.config()) as sender:
        assert sender.download_media(doc["id"]).data == data
