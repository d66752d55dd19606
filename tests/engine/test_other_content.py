"""Other content at a question: a message that is not an attempt at it (a sticker, a photo,
a contact card, a tap on an earlier message's button) gets a re-prompt saying what is
expected, is never saved as the answer, and does not use up a retry. Typed wrong answers
still do. The same event gives the same transition every time."""

from __future__ import annotations

import pytest

from flowkit.engine import Reply, Start, State, UserMessage, step
from flowkit.engine.inputs import InvalidInput, is_other_content, parse_input
from flowkit.flow.model import InputSpec

from .helpers import Session, flow

YAML = """
    flow: other
    start: size
    slots:
      size: {type: choice, options: [small, medium, large]}
      ok: {type: bool}
      name: {type: text}
      n: {type: int}
    steps:
      size:
        ask: "What size?"
        input: {type: choice, options: [small, medium, large]}
        save: size
        retries: 1
        on_fail: gave_up
        next: ok
      ok:
        ask: "Sure?"
        input: yes_no
        save: ok
        next: name
      name:
        ask:
          text: "Your name?"
          buttons: [{id: same, title: "Same as before"}]
        input: text
        save: name
        retries: 0
        on_fail: gave_up
        next: n
      n:
        ask: "How many?"
        input: int
        save: n
        next: done
      done:
        end: completed
      gave_up:
        say: "Let me get a person."
        end: handoff
"""
FLOW = flow(YAML)
STICKER = {"id": "st1", "kind": "sticker", "mime_type": "image/webp"}


def tap(reply_id: str, title: str, n: int, kind: str = "button_reply") -> UserMessage:
    return UserMessage(type=kind, reply_id=reply_id, text=title, message_id=f"tap{n}")  # type: ignore[arg-type]


def sticker(n: int) -> UserMessage:
    return UserMessage(type="media", media=STICKER, message_id=f"st{n}")


def agree(s: Session, msg: UserMessage) -> None:
    """The engine's own state (checked by what the event changes) and the same state read back
    from JSON (checked whole, engine/plan.py) give the same transition."""
    assert s.state is not None
    now = s.now + 1000
    trusted = step(FLOW, s.state, msg, now)
    loaded = step(FLOW, State.from_json(s.state.to_json()), msg, now)
    assert (trusted.state, trusted.effects, trusted.record) == (loaded.state, loaded.effects, loaded.record)


def started() -> Session:
    s = Session(FLOW)
    s.send(Start(flow="other", message_id="start"))
    return s


def test_stickers_at_a_question_reprompt_without_using_retries() -> None:
    s = started()
    for n in range(5):  # far more than the 1 retry
        agree(s, sticker(n))
        t = s.send(sticker(n))
        assert t.record is not None and t.record.error == "invalid_input:wrong_type"
        assert s.state is not None and (s.state.step, s.state.status, s.state.attempts) == ("size", "waiting_input", {})
        reply = next(e for e in t.effects if isinstance(e, Reply))
        assert reply.text == "Please choose one of the options. What size?"  # says what is expected
        assert [b[0] for b in reply.buttons] == ["small", "medium", "large"]
    s.send("huge")  # a typed wrong answer is an attempt
    assert s.state is not None and s.state.attempts == {"size": 1}
    s.send("enormous")
    assert s.state is not None and s.state.status == "handoff"


def test_a_stale_tap_is_not_read_by_its_title() -> None:
    s = started()
    msg = tap("promo-7", "large", 1)  # an old message's button whose title is an option
    agree(s, msg)
    t = s.send(msg)
    assert t.record is not None and t.record.error == "invalid_input:stale_reply"
    assert s.state is not None and "size" not in s.state.slots and s.state.attempts == {}
    assert t.effects[0].text.startswith("That button belongs to an earlier message.")  # type: ignore[union-attr]
    for ok in (tap("large", "large", 2), tap("medium", "Medium", 3, "list_reply")):  # the question's own
        agree(s, ok)
    s.send(tap("medium", "medium", 4))
    assert s.state is not None and s.state.slots["size"] == "medium" and s.state.step == "ok"


def test_yes_no_and_text_questions_take_only_their_own_taps() -> None:
    s = started()
    s.send(tap("small", "small", 1))
    for stale in (tap("small", "small", 2), tap("maybe", "Yes", 3)):
        agree(s, stale)
        s.send(stale)
        assert s.state is not None and s.state.step == "ok" and s.state.attempts == {}
    s.send(tap("yes", "Yes", 4))
    assert s.state is not None and s.state.step == "name"
    # a text question with retries: 0 and on_fail: a stale tap is not an attempt, so no hand-off
    s.send(tap("yes", "Yes", 5))
    assert s.state is not None and (s.state.step, s.state.status) == ("name", "waiting_input")
    s.send(tap("same", "Same as before", 6))  # its own button answers with its title
    assert s.state is not None and s.state.slots["name"] == "Same as before" and s.state.step == "n"


@pytest.mark.parametrize(("msg", "code", "other"), [
    (UserMessage(type="media", media=STICKER), "wrong_type", True),
    (UserMessage(type="contacts"), "wrong_type", True),
    (UserMessage(type="order"), "wrong_type", True),
    (UserMessage(type="location", location={"latitude": 1.0, "longitude": 2.0}), "wrong_type", True),
    (UserMessage(type="button_reply", reply_id="old", text="12"), "stale_reply", True),
    (UserMessage(text="twelve-ish"), "not_an_integer", False),
])
def test_what_counts_as_other_content(msg: UserMessage, code: str, other: bool) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_input(InputSpec(type="int"), msg, offered=frozenset({"a"}))
    assert err.value.code == code and is_other_content(msg, err.value) is other


def test_location_and_media_questions_count_typed_text_but_not_other_kinds() -> None:
    for spec, code in ((InputSpec(type="location"), "need_location"), (InputSpec(type="media"), "need_media")):
        with pytest.raises(InvalidInput) as typed:
            parse_input(spec, UserMessage(text="Main street 1"))
        with pytest.raises(InvalidInput) as tapped:
            parse_input(spec, UserMessage(type="contacts"))
        assert typed.value.code == tapped.value.code == code
        assert not is_other_content(UserMessage(text="Main street 1"), typed.value)
        assert is_other_content(UserMessage(type="contacts"), tapped.value)
