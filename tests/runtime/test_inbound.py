"""Every inbound WhatsApp update type, as public SDKs and Meta's docs show it
(tests/data/whatsapp, SOURCES.md), through a real `flowkit serve` on a real Redis with the
Graph API imitation as WhatsApp: signed deliveries over HTTP, replies read from the
imitation, state and history from Redis.

Absence of a reply is checked behind a barrier: after the update under test the same
user sends "pizza", and once its answer arrived every earlier reply would have too.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowkit.channels.whatsapp import NON_ANSWER_KINDS, parse_webhook, sign
from flowkit.channels.whatsapp.payloads import (
    DEFAULT_PHONE_NUMBER_ID,
    button_reply_payload,
    combine,
    media_payload,
    message_payload,
    text_payload,
)
from flowkit.store import Store, connect
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI, GraphMessage
from tests.runtime.webutil import SECRET, start_serve
from tests.waiting import DEADLINE, stop

DATA = Path(__file__).resolve().parents[1] / "data" / "whatsapp"
SAMPLES = sorted(p.name for p in DATA.glob("*.json"))
SECOND_NUMBER = "222333444555"  # a second number of this deployment (WHATSAPP_PHONE_NUMBER_ID lists both)
PIZZA_HELLO = "Let's get you a pizza."
_users = itertools.count(1)


class _Env:
    """The imitation's environment, with two phone number ids for the webhook."""

    def __init__(self, graph: FakeGraphAPI) -> None:
        self.graph = graph

    def env(self) -> dict[str, str]:
        return dict(self.graph.env(), WHATSAPP_PHONE_NUMBER_ID=f"{DEFAULT_PHONE_NUMBER_ID}, {SECOND_NUMBER}")


class Served:
    def __init__(self, port: int, graph: FakeGraphAPI, log: Path, store: Store) -> None:
        self.url = f"http://127.0.0.1:{port}/webhook"
        self.graph, self.log, self.store = graph, log, store

    def post(self, payload: Any) -> httpx.Response:
        body = json.dumps(payload).encode()  # lone surrogates leave as \udXXX escapes, as JSON allows
        return self.post_raw(body)

    def post_raw(self, body: bytes) -> httpx.Response:
        headers = {"content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)}
        return httpx.post(self.url, content=body, headers=headers, timeout=10)

    def to(self, who: str) -> list[GraphMessage]:
        return self.graph.to(who)

    def wait_for(self, who: str, n: int) -> list[GraphMessage]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            sent = self.to(who)
            if len(sent) >= n:
                return sent
            time.sleep(0.02)
        raise AssertionError(f"{who} got {len(self.to(who))} messages, expected {n}:\n{self.log.read_text()[-2000:]}")

    def barrier(self, who: str, expect: str = PIZZA_HELLO) -> list[GraphMessage]:
        """Send "pizza" from ``who``; return everything ``who`` got once the answer to it (a
        message containing ``expect``) arrived. Replies leave in order per user (the background
        sender), so every earlier reply has been sent by then."""
        before = len(self.to(who))
        r = self.post(text_payload(who, "pizza", message_id=f"wamid.barrier.{who}.{time.monotonic_ns()}"))
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            sent = self.to(who)
            if any(m.text and expect in m.text for m in sent[before:]):
                return sent
            time.sleep(0.02)
        raise AssertionError(f"no pizza welcome for {who}:\n{self.log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    client = connect(redis_url)
    client.flushall()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with FakeGraphAPI() as graph:
        port = free_port()
        proc = start_serve(redis_url, _Env(graph), port, log)
        try:
            yield Served(port, graph, log, Store(client))
        finally:
            stop(proc)
            client.close()


def user() -> str:
    return f"3170{next(_users):07d}"


def as_ours(payload: Any, who: str, *, phone_number_id: str = DEFAULT_PHONE_NUMBER_ID) -> Any:
    """A sample addressed to this deployment and coming from ``who``, with fresh message ids."""
    p = copy.deepcopy(payload)
    for entry in p["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if "metadata" in value:
                value["metadata"]["phone_number_id"] = phone_number_id
            for c in value.get("contacts", ()):
                if "wa_id" in c:
                    c["wa_id"] = who
            for m in value.get("messages", ()):
                m["id"] = f"wamid.{who}.{time.monotonic_ns()}"
                if "from" in m:
                    m["from"] = who
            for s in value.get("statuses", ()):
                s["recipient_id"] = who
    return p


def sample(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def kinds(name: str) -> list[str]:
    return [m.kind for m in parse_webhook(sample(name)).messages]


# ---------------------------------------------------------------- every sample


@pytest.mark.parametrize("name", [n for n in SAMPLES if "bsuid" not in n])
def test_every_sample_through_serve(served: Served, name: str) -> None:
    who = user()
    payload = as_ours(sample(name), who)
    r = served.post(payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["skipped"] == 0
    found = kinds(name)
    sent = served.barrier(who)
    before = sent[: next(i for i, m in enumerate(sent) if m.text and PIZZA_HELLO in m.text)]
    if not found or all(k in NON_ANSWER_KINDS or k == "system" for k in found):
        # statuses, errors, other fields, reactions, edits, revokes, system, unsupported
        assert before == [], [m.text for m in before]
        assert body["applied"] == 0
        history = served.store.history(who)
        assert [h["event"] for h in history] == ["start"]  # only the barrier's session
    else:
        # an answer-like message from a stranger: the greeting that says what the bot can do
        assert len(before) == 1 and "I can help with" in (before[0].text or ""), [m.text for m in before]


def test_business_scoped_user_id_is_the_session_key_and_replies_use_recipient(served: Served) -> None:
    bsuid = f"US.{next(_users):020d}"
    payload = as_ours(sample("meta_docs__text_username_bsuid.json"), bsuid)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"] = bsuid
    payload["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"] = bsuid
    assert served.post(payload).status_code == 200
    sent = served.wait_for(bsuid, 2)
    assert PIZZA_HELLO in (sent[0].text or "") and "Sheena" in (sent[0].text or "")
    for m in sent:  # the Cloud API addresses a user without a phone number by `recipient`
        assert m.payload["recipient"] == bsuid and "to" not in m.payload
    assert served.store.load(bsuid)["step"] == "ask_size"


# ---------------------------------------------------------------- non-answers at a question


def test_reactions_edits_revokes_and_unsupported_at_a_question_change_nothing(served: Served) -> None:
    who = user()
    assert served.post(text_payload(who, "pizza")).status_code == 200
    served.wait_for(who, 2)  # welcome + "What size?"
    version = served.store.load(who)["version"]
    for name in ["pywa__message__reaction.json", "pywa__message__unreaction_empty.json",
                 "pywa__message__reaction.json", "pywa__message__unreaction_no_emoji.json",
                 "pywa__edited_message__image.json", "pywa__deleted_message__revoke.json",
                 "pywa__message__unsupported_with_type.json", "pywa__system__identity_change.json"]:
        r = served.post(as_ours(sample(name), who))
        assert r.status_code == 200 and r.json()["ignored"] == 1, (name, r.text)
    state = served.store.load(who)
    # no retry used, no step moved, nothing recorded (ask_size has retries: 2 and on_fail: handoff)
    assert (state["version"], state["step"], state["attempts"]) == (version, "ask_size", {})
    assert served.post(button_reply_payload(who, "medium", "medium")).status_code == 200
    sent = served.wait_for(who, 3)
    assert [m.text for m in sent][2] == "How many pizzas? (1-20)"


def test_other_content_at_a_question_reprompts_without_using_a_retry(served: Served) -> None:
    who = user()
    assert served.post(text_payload(who, "pizza")).status_code == 200
    served.wait_for(who, 2)
    for n in range(4):  # more than ask_size's 2 retries: none of them is an attempt at the question
        assert served.post(media_payload(who, kind="sticker")).status_code == 200
        served.wait_for(who, 3 + n)
    # a tap on an earlier message's button whose title happens to be an option
    assert served.post(button_reply_payload(who, "old-offer-7", "large")).status_code == 200
    sent = served.wait_for(who, 7)
    assert all(m.text == "Please pick small, medium or large." for m in sent[2:7]), [m.text for m in sent]
    state = served.store.load(who)
    assert state["step"] == "ask_size" and "size" not in state["slots"] and state["attempts"] == {}
    errors = [h["error"] for h in served.store.history(who) if h["error"]]
    assert errors == ["invalid_input:wrong_type"] * 4 + ["invalid_input:stale_reply"]
    # typed wrong answers still count: two re-prompts, then on_fail
    for text in ("huge", "enormous", "gigantic"):
        assert served.post(text_payload(who, text)).status_code == 200
    served.wait_for(who, 10)
    assert served.store.load(who)["status"] == "handoff"


# ---------------------------------------------------------------- system messages


def test_number_change_ends_the_old_session_silently(served: Served) -> None:
    old, new = user(), user()
    assert served.post(text_payload(old, "pizza")).status_code == 200
    served.wait_for(old, 2)
    change = as_ours(sample("pywa__system__phone_number_change.json"), old)
    system = change["entry"][0]["changes"][0]["value"]["messages"][0]["system"]
    system["wa_id"] = new
    assert served.post(change).status_code == 200
    state = served.store.load(old)
    assert state["status"] == "failed" and state["pending"] is None  # no timer left to message the old number
    last = served.store.history(old)[-1]
    assert (last["event"], last["error"], last["actor"]) == ("command", "number_changed", "runtime")
    assert served.post(change).status_code == 200  # a redelivery changes nothing
    assert served.store.history(old)[-1] == last
    # the user carries on from the new number; the old one hears nothing more
    assert served.post(text_payload(new, "pizza")).status_code == 200
    served.wait_for(new, 2)
    assert len(served.to(old)) == 2


def test_request_welcome_greets_a_newcomer_and_never_interrupts_a_session(served: Served) -> None:
    who = user()
    assert served.post(as_ours(sample("meta_docs__request_welcome.json"), who)).status_code == 200
    assert "I can help with" in (served.wait_for(who, 1)[0].text or "")
    assert served.store.load(who) is None
    assert served.post(text_payload(who, "pizza")).status_code == 200
    served.wait_for(who, 3)
    version = served.store.load(who)["version"]
    r = served.post(as_ours(sample("meta_docs__request_welcome.json"), who))
    assert r.status_code == 200 and r.json()["applied"] == 0
    sent = served.barrier(who, "Please pick")  # "pizza" at the size question: an invalid answer, re-prompted
    assert len(sent) == 4 and served.store.load(who)["version"] == version + 1


# ---------------------------------------------------------------- one bad message, other numbers


def test_one_bad_message_is_skipped_and_the_rest_of_the_delivery_processed(served: Served) -> None:
    a, b, c = user(), user(), user()
    bad = text_payload(b, "pizza")
    del bad["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"]
    r = served.post(combine(text_payload(a, "pizza"), bad, text_payload(c, "pizza")))
    assert r.status_code == 200, r.text
    assert (r.json()["applied"], r.json()["skipped"]) == (2, 1)
    served.wait_for(a, 2)
    served.wait_for(c, 2)
    assert served.store.load(b) is None
    # logged with its reason (serve's own log output)
    line = "webhook item skipped: entry[0].changes[0].value.messages[1].timestamp is missing"
    deadline = time.monotonic() + DEADLINE
    while line not in served.log.read_text():
        assert time.monotonic() < deadline, served.log.read_text()[-2000:]
        time.sleep(0.02)


def test_messages_for_another_phone_number_id_are_not_processed(served: Served) -> None:
    who, other = user(), user()
    r = served.post(as_ours(text_payload(other, "pizza"), other, phone_number_id="999888777666"))
    assert r.status_code == 200 and r.json()["ignored"] == 1
    # the second number listed in WHATSAPP_PHONE_NUMBER_ID is this deployment's too
    r = served.post(as_ours(text_payload(who, "pizza"), who, phone_number_id=SECOND_NUMBER))
    assert r.status_code == 200 and r.json()["applied"] == 1
    # the replies leave from the number the user wrote to, and the session is that number's
    assert {m.phone_number_id for m in served.wait_for(who, 2)} == {SECOND_NUMBER}
    assert served.store.load(f"{who}@{SECOND_NUMBER}") is not None and served.store.load(who) is None
    assert served.store.load(other) is None
    served.barrier(other)  # replies leave in order: one to the ignored message would come before it
    # the barrier returns at the welcome; its question may still be on its way
    assert len(served.wait_for(other, 2)) == 2  # only the barrier's welcome and question


# ---------------------------------------------------------------- lone surrogates

LONE = "\ud83d"  # half of an emoji's surrogate pair: valid JSON, not encodable as UTF-8


def _surrogate_cases(who: str) -> dict[str, Any]:
    """Each field carrying a lone surrogate, sent at the size question (so it is stored)."""
    return {
        "text": text_payload(who, f"large{LONE}"),
        "sender": text_payload(who + LONE, "pizza"),
        "profile_name": text_payload(who, "medium", profile_name=f"Ana {LONE}"),
        "message_id": text_payload(who, "medium", message_id=f"wamid.X{LONE}"),
        "button_title": button_reply_payload(who, "medium", f"med{LONE}ium"),
        "caption": media_payload(who, kind="image", caption=f"look {LONE}"),
    }


@pytest.mark.parametrize("field", ["text", "sender", "profile_name", "message_id", "button_title", "caption"])
def test_a_lone_surrogate_in_any_field_is_replaced_not_a_500(served: Served, field: str) -> None:
    who = user()
    if field != "sender":
        assert served.post(text_payload(who, "pizza")).status_code == 200
        served.wait_for(who, 2)
    body = json.dumps(_surrogate_cases(who)[field]).encode()
    assert b"\\ud83d" in body
    for _ in range(2):  # and its redelivery: one answer, never a 500 loop
        r = served.post_raw(body)
        assert r.status_code == 200, r.text
    if field == "sender":
        assert served.store.load(who + "\ufffd")["step"] == "ask_size"
        return
    history = served.store.history(who)
    assert len(history) == 2, history  # the start, and this message exactly once
    stored = json.dumps(history[-1]) + json.dumps(served.store.load(who))
    assert "\\ufffd" in stored or "\ufffd" in stored, stored


def test_the_parser_replaces_lone_surrogates_everywhere() -> None:
    from flowkit.channels.whatsapp import clean_surrogates

    assert clean_surrogates({"k\udc00": ["a\ud800b", 1, None, {"x": "\U0001F600"}]}) == {
        "k\ufffd": ["a\ufffdb", 1, None, {"x": "\U0001F600"}]}
    payload = message_payload("31600000099", "text", {"body": "hi"}, message_id=f"wamid.{LONE}")
    (m,) = parse_webhook(json.loads(json.dumps(payload))).messages
    assert m.message_id == "wamid.\ufffd"
    m.message_id.encode("utf-8")


def test_a_new_business_scoped_id_ends_only_sessions_keyed_on_the_old_one(served: Served) -> None:
    old_id, phone = f"US.{next(_users):020d}", user()
    for who in (old_id, phone):
        body = text_payload(who, "pizza")
        msg = body["entry"][0]["changes"][0]["value"]["messages"][0]
        if who == old_id:
            msg["from_user_id"] = msg.pop("from")
        assert served.post(body).status_code == 200
        served.wait_for(who, 2)
    for who in (old_id, phone):
        change = message_payload(who, "system", {"body": "User changed their user id", "type": "user_changed_user_id",
                                                 "user_id": f"US.{next(_users):020d}"})
        msg = change["entry"][0]["changes"][0]["value"]["messages"][0]
        msg["from_user_id"] = who if who == old_id else f"US.{next(_users):020d}"
        if who == old_id:
            del msg["from"]
        assert served.post(change).status_code == 200
    assert served.store.load(old_id)["status"] == "failed"
    assert served.store.load(phone)["status"] == "waiting_input"  # keyed on the phone number, untouched
    assert len(served.to(old_id)) == len(served.to(phone)) == 2
