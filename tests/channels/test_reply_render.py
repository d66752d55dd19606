"""From flow file to Graph: what the engine's replies become on WhatsApp (header, footer,
media, cta, location requests, options that do not fit as buttons), sent through the real
WhatsApp channel and sender to the Graph imitation."""

from __future__ import annotations

import logging
import textwrap
from typing import Any

import pytest

from flowkit.channels.whatsapp import WhatsAppSender
from flowkit.engine import Reply, Start, UserMessage, step
from flowkit.flow import parse_flow
from flowkit.runtime.channel import WhatsAppChannel, reply_call
from flowkit.testing.fake_graph import FakeGraphAPI, GraphMessage

TO = "15551234567"
T0 = 1_790_000_000_000


def first_reply(step_yaml: str, slots: str = "") -> Reply:
    body = textwrap.indent(textwrap.dedent(step_yaml).strip("\n"), "    ")
    flow = parse_flow(f"flow: f\nstart: s\n{slots}steps:\n  s:\n{body}\n    next: done\n  done:\n    end: completed\n")
    t = step(flow, None, Start(flow="f"), T0, session_id="x")
    return next(e for e in t.effects if isinstance(e, Reply))


def sent(graph: FakeGraphAPI, sender: WhatsAppSender, reply: Reply) -> GraphMessage:
    WhatsAppChannel(sender).send(TO, reply)
    return graph.sent[-1]


def test_location_question_becomes_a_location_request(graph: FakeGraphAPI, sender: WhatsAppSender) -> None:
    m = sent(graph, sender, first_reply("ask: Where should we deliver?\ninput: location\n"))
    assert m.payload["interactive"]["type"] == "location_request_message"
    assert m.payload["interactive"]["body"] == {"text": "Where should we deliver?"}


def test_yes_no_with_header_and_footer(graph: FakeGraphAPI, sender: WhatsAppSender) -> None:
    m = sent(graph, sender, first_reply("""
        ask: {text: "Confirm the order?", header: "Order summary", footer: "You can cancel later"}
        input: yes_no
        """))
    i = m.payload["interactive"]
    assert i["type"] == "button" and i["header"]["text"] == "Order summary" and i["footer"]["text"] == "You can cancel later"
    assert [b["reply"]["title"] for b in i["action"]["buttons"]] == ["Yes", "No"]


def test_media_say_with_caption_and_media_header_on_buttons(graph: FakeGraphAPI, sender: WhatsAppSender) -> None:
    m = sent(graph, sender, first_reply("""
        say: {text: "Your receipt", media: {type: document, url: "https://example.com/r.pdf"}}
        """))
    assert m.type == "document" and m.payload["document"] == {"link": "https://example.com/r.pdf", "caption": "Your receipt"}
    m = sent(graph, sender, first_reply("""
        ask: {text: "Like it?", media: {type: image, id: "55501"}}
        input: yes_no
        """))
    assert m.payload["interactive"]["header"] == {"type": "image", "image": {"id": "55501"}}


def test_cta_url_with_a_slot_in_the_url(graph: FakeGraphAPI, sender: WhatsAppSender) -> None:
    reply = first_reply("""
        say:
          text: "Track your parcel"
          cta: {text: Track, url: "https://example.com/t/{{ ref or 'none' }}"}
        """, slots="slots:\n  ref: {type: text, max_length: 12}\n")
    m = sent(graph, sender, reply)
    assert m.payload["interactive"]["action"]["parameters"] == {"display_text": "Track", "url": "https://example.com/t/none"}


@pytest.mark.parametrize(("options", "kind"), [
    (["Premium plan monthly", "Premium plan monthly+", "Premium plan monthly++"], "list"),
    ([f"Option number {i} with a long name" for i in range(3)], "text"),
    ([f"o{i}" for i in range(11)], "text"),
    (["Small", "Large"], "button"),
])
def test_options_are_offered_whole(graph: FakeGraphAPI, sender: WhatsAppSender, options: list[str], kind: str) -> None:
    opts = ", ".join(f'"{o}"' for o in options)
    reply = first_reply(f"ask: Which one?\ninput: {{type: choice, options: [{opts}]}}\n")
    m = sent(graph, sender, reply)
    if kind == "list":
        rows = m.payload["interactive"]["action"]["sections"][0]["rows"]
        assert [r["title"] for r in rows] == options
    elif kind == "button":
        assert [b["reply"]["title"] for b in m.payload["interactive"]["action"]["buttons"]] == options
    else:
        assert m.type == "text"
        assert m.payload["text"]["body"].splitlines()[1:] == [f"{i}) {o}" for i, o in enumerate(options, 1)]


def test_numbered_options_are_answered_by_number() -> None:
    options = [f"Option number {i} with a long name" for i in range(3)]
    opts = ", ".join(f'"{o}"' for o in options)
    flow = parse_flow(f"flow: f\nstart: s\nslots:\n  pick: {{type: text}}\nsteps:\n  s:\n    ask: Which?\n"
                      f"    input: {{type: choice, options: [{opts}]}}\n    save: pick\n    next: done\n"
                      "  done:\n    end: completed\n")
    t = step(flow, None, Start(flow="f"), T0, session_id="x")
    t = step(flow, t.state, UserMessage(text="2", message_id="m1"), T0 + 1)
    assert t.state.slots["pick"] == options[1]


def test_overlong_rendered_text_is_shortened_not_refused(graph: FakeGraphAPI, sender: WhatsAppSender,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # what a template renders at runtime can outgrow a limit lint could only warn about
    with caplog.at_level(logging.WARNING, logger="flowkit.channels"):
        m = sent(graph, sender, Reply(text="x" * 5000))
        assert m.payload["text"]["body"] == "x" * 4095 + "…"
        m = sent(graph, sender, Reply(text="y" * 2000, buttons=(("a", "A"),), header="h" * 100, footer="f" * 61))
    i = m.payload["interactive"]
    assert len(i["body"]["text"]) == 1024 and len(i["header"]["text"]) == 60 and len(i["footer"]["text"]) == 60
    assert any(r.getMessage() == "reply text shortened to fit WhatsApp" for r in caplog.records)


def test_reply_call_refuses_what_cannot_be_one_message() -> None:
    from flowkit.errors import ChannelError

    cases: list[dict[str, Any]] = [
        {"text": "hi", "header": "H"},
        {"text": "hi", "media": ("sticker", "1"), "buttons": (("a", "A"),)},
        {"text": "hi", "media": ("image", "1"), "header": "H", "buttons": (("a", "A"),)},
    ]
    for kwargs in cases:
        with pytest.raises(ChannelError):
            reply_call(Reply(**kwargs))


def test_reply_survives_the_outbox_round_trip() -> None:
    from flowkit.engine.events import effect_from_dict

    r = Reply(text="t", buttons=(("a", "A"),), header="h", footer="f", media=("image", "1"), cta=None)
    assert effect_from_dict(r.to_dict()) == r
    r = Reply(text="t", cta=("Go", "https://e.com"), location_request=False)
    assert effect_from_dict(r.to_dict()) == r
    r = Reply(text="t", location_request=True)
    assert effect_from_dict(r.to_dict()) == r
    assert Reply(text="t").to_dict() == {"kind": "reply", "text": "t"}  # old outbox entries read the same
