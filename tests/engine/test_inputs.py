"""Every input type of an ask step: constraints, normalisation, error codes, re-prompts,
retries and on_fail."""

from __future__ import annotations

import datetime as dt

import pytest

from flowkit.engine import InvalidInput, Reply, Start, UserMessage, parse_input
from flowkit.engine.inputs import (
    DEFAULT_INVALID,
    parse_date,
    parse_int,
    parse_number,
    parse_phone,
    parse_yes_no,
)
from flowkit.flow import InputSpec, SlotSpec

from .helpers import T0, Session, flow

TODAY = dt.date(2026, 11, 30)


def parse(spec: InputSpec, text: str | None = None, **msg: object) -> object:
    return parse_input(spec, UserMessage(text=text, **msg), today=TODAY)  # type: ignore[arg-type]


def code(spec: InputSpec, text: str | None = None, **msg: object) -> str:
    with pytest.raises(InvalidInput) as exc:
        parse(spec, text, **msg)
    return exc.value.code


# ---------------------------------------------------------------- text and regex


def test_text_is_trimmed_and_nfc_normalised() -> None:
    assert parse(InputSpec(type="text"), "  Zoe\u0301  ") == "Zo\u00e9"
    assert code(InputSpec(type="text"), "   ") == "empty"
    assert code(InputSpec(type="text"), None, type="button_reply", reply_id="x") == "empty"
    assert code(InputSpec(type="text", min_length=3), "ab") == "too_short"
    assert code(InputSpec(type="text", max_length=3), "abcd") == "too_long"
    assert parse(InputSpec(type="text", min_length=2, max_length=2), " ab ") == "ab"


def test_regex_must_match_the_whole_answer() -> None:
    spec = InputSpec(type="regex", pattern="[A-Z]{2}[0-9]{3}")
    assert parse(spec, " AB123 ") == "AB123"
    assert code(spec, "AB1234") == "pattern_mismatch"
    assert code(spec, "xAB123") == "pattern_mismatch"


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(("text", "value"), [
    ("7", 7), ("+7", 7), ("-7", -7), ("- 7", -7), (" 007 ", 7), ("1,000", 1000), ("1.000", 1000), ("1 000 000", 1_000_000),
    ("1'000", 1000), ("1_000", 1000), ("3.0", 3), ("3,00", 3), ("three", 3), ("Twenty", 20), ("$5", 5), ("5 EUR", 5),
    ("١٢", 12), ("１２", 12),
])
def test_int_parsing(text: str, value: int) -> None:
    got = parse_int(text)
    assert got == value and type(got) is int


@pytest.mark.parametrize("text", ["3.5", "12 34", "1,05", "1e3", "abc", "", "0x10", "9" * 31, "twenty one", "1,000.5"])
def test_int_refusals(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_int(text)
    assert exc.value.code == "not_an_integer"


@pytest.mark.parametrize(("text", "value"), [
    ("12.5", 12.5), ("12,50", 12.5), ("1,500", 1500), ("1.500", 1.5), ("1.234,5", 1234.5), ("1,234.5", 1234.5),
    ("1.234.567", 1234567), ("1 234,5", 1234.5), ("-0.25", -0.25), (".5", 0.5), ("€ 3,99", 3.99), ("3.99 usd", 3.99),
    ("12345678901234567891", 12345678901234567891), ("0", 0), ("seven", 7),
])
def test_number_parsing_is_locale_independent(text: str, value: float) -> None:
    got = parse_number(text)
    assert got == value
    assert isinstance(got, int) == isinstance(value, int)


@pytest.mark.parametrize("text", ["1,2.3", "12 34", ".", ",", "nan", "inf", "1e5", "1..2", "1,2,3", "--1", "9" * 31])
def test_number_refusals(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_number(text)
    assert exc.value.code == "not_a_number"


def test_number_bounds() -> None:
    spec = InputSpec(type="number", min=0.01, max=5000)
    assert code(spec, "0") == "too_small"
    assert code(spec, "5000.01") == "too_large"
    assert parse(spec, "5.000,00") == 5000.0
    ispec = InputSpec(type="int", min=1, max=20)
    assert code(ispec, "0") == "too_small" and code(ispec, "21") == "too_large" and parse(ispec, "20") == 20


# ---------------------------------------------------------------- choice and yes/no


OPTS = ("small", "medium", "large")


def test_choice_by_option_number_label_prefix_and_reply_id() -> None:
    spec = InputSpec(type="choice", options=OPTS)
    assert parse(spec, " MEDIUM ") == "medium"
    assert parse(spec, "2") == "medium" and parse(spec, "3)") == "large" and parse(spec, "1.") == "small"
    assert parse(spec, "lar") == "large"
    assert parse(spec, None, type="button_reply", reply_id="large") == "large"
    assert parse(spec, "Big one", type="button_reply", reply_id="large") == "large"
    assert parse_input(spec, UserMessage(text="the big one"), labels={"the big one": "large"}) == "large"
    assert code(spec, "4") == "not_an_option"
    assert code(spec, "xl") == "not_an_option"
    assert code(spec, "m") == "not_an_option"  # too short to be a prefix
    assert code(InputSpec(type="choice", options=("mild", "mild-plus")), "mil") == "not_an_option"  # ambiguous prefix
    assert code(spec, None, type="button_reply", reply_id="huge") == "empty"


@pytest.mark.parametrize("text", ["yes", "Y", "OK!", "sure.", "Sí", "oui", "ja", "true", "1", "👍", "👍🏽", "✅️"])
def test_yes_synonyms(text: str) -> None:
    assert parse_yes_no(text) is True


@pytest.mark.parametrize("text", ["no", "N", "nope", "Nein", "não", "false", "0", "👎🏿", "❌"])
def test_no_synonyms(text: str) -> None:
    assert parse_yes_no(text) is False


def test_yes_no_buttons_and_refusal() -> None:
    spec = InputSpec(type="yes_no")
    assert parse(spec, "Yes, refund", type="button_reply", reply_id="yes") is True
    assert parse(spec, None, type="button_reply", reply_id="no") is False
    assert code(spec, "maybe") == "not_yes_no"


# ---------------------------------------------------------------- email, phone, date


def test_email_normalises_the_domain() -> None:
    spec = InputSpec(type="email")
    assert parse(spec, " Ana.Lima@Example.COM ") == "Ana.Lima@example.com"
    for bad in ("ana@", "ana@example", "ana example.com", "@example.com", "ana@@example.com"):
        assert code(spec, bad) == "bad_email", bad


@pytest.mark.parametrize(("text", "value"), [
    ("+31 6 1234 5678", "+31612345678"), ("0031-6-12345678", "+31612345678"), ("(020) 555.1234", "0205551234"),
    ("+٣١٦١٢٣٤٥٦٧٨", "+31612345678"),
])
def test_phone_normalisation(text: str, value: str) -> None:
    assert parse_phone(text) == value


@pytest.mark.parametrize("text", ["12345", "+1234567890123456", "call me", "+31 6 12a45678"])
def test_phone_refusals(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_phone(text)
    assert exc.value.code == "bad_phone"


@pytest.mark.parametrize(("text", "value"), [
    ("2026-12-25", "2026-12-25"), ("2026-1-5", "2026-01-05"), ("25/12/2026", "2026-12-25"), ("5.1.2027", "2027-01-05"),
    ("25-12-2026", "2026-12-25"), ("25 Dec 2026", "2026-12-25"), ("25th December, 2026", "2026-12-25"),
    ("Dec 25 2026", "2026-12-25"), ("sept 3 2026", "2026-09-03"), ("today", "2026-11-30"), ("Tomorrow", "2026-12-01"),
])
def test_dates(text: str, value: str) -> None:
    assert parse_date(text, TODAY) == value


@pytest.mark.parametrize("text", ["2026-02-30", "31/04/2026", "12/25/2026", "decxyz 25 2026", "next week", "25 de 2026"])
def test_date_refusals(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_date(text, TODAY)
    assert exc.value.code == "bad_date"


def test_date_range() -> None:
    spec = InputSpec(type="date", min="2026-01-01", max="2027-12-31")
    assert code(spec, "31/12/2025") == "date_out_of_range"
    assert parse(spec, "31/12/2027") == "2027-12-31"


# ---------------------------------------------------------------- location, media, slots


def test_location_and_media() -> None:
    loc = InputSpec(type="location")
    assert parse(loc, None, type="location", location={"latitude": 1.5, "longitude": -2, "extra": 1}) == {
        "latitude": 1.5, "longitude": -2}
    assert code(loc, "here") == "need_location"
    assert code(loc, None, type="location", location={"latitude": "1", "longitude": 2}) == "need_location"
    assert code(loc, None, type="location", location={"latitude": 1, "longitude": 181}) == "need_location"
    media = InputSpec(type="media", media=("image", "document"))
    assert parse(media, None, type="media", media={"id": "M1", "kind": "document", "filename": "a.pdf"}) == {
        "id": "M1", "kind": "document", "filename": "a.pdf"}
    assert code(media, None, type="media", media={"id": "M1", "kind": "video"}) == "wrong_media"
    assert code(media, None, type="media", media={"kind": "image"}) == "need_media"
    assert code(media, "a photo") == "need_media"
    assert code(InputSpec(type="int"), None, type="media", media={"id": "M"}) == "wrong_type"


def test_the_saved_slot_constrains_the_answer_too() -> None:
    slot = SlotSpec(name="ref", type="text", pattern="[A-Z]{2}[0-9]{6}")
    with pytest.raises(InvalidInput) as exc:
        parse_input(InputSpec(type="text"), UserMessage(text="ab123456"), slot=slot)
    assert exc.value.code == "slot_constraint"
    assert parse_input(InputSpec(type="text"), UserMessage(text="AB123456"), slot=slot) == "AB123456"


def test_every_error_code_has_a_default_message() -> None:
    codes = {"empty", "wrong_type", "not_a_number", "not_an_integer", "too_small", "too_large", "too_short",
             "too_long", "not_an_option", "not_yes_no", "pattern_mismatch", "bad_email", "bad_phone", "bad_date",
             "date_out_of_range", "need_location", "need_media", "wrong_media", "slot_constraint"}
    assert codes <= set(DEFAULT_INVALID)


# ---------------------------------------------------------------- re-prompts, retries, on_fail

RETRY = """
flow: retry
start: ask_qty
slots:
  qty: {type: int, min: 1, max: 9}
  name: {type: text}
steps:
  ask_qty:
    ask: "How many?"
    input: {type: int, min: 1, max: 9}
    save: qty
    retries: 2
    invalid: "1 to 9 please (you said something else)."
    on_fail: human
    next: ask_name
  ask_name:
    ask: "Name?"
    input: text
    save: name
    next: done
  human:
    say: "Let me get a person."
    end: handoff
  done:
    say: "Thanks {{ name }}: {{ qty }}."
    end: completed
"""


def test_invalid_answer_reprompts_with_the_invalid_text_then_on_fail() -> None:
    s = Session(flow(RETRY))
    s.send(Start(flow="retry"))
    t1 = s.send("lots")
    assert t1.record is not None and t1.record.error == "invalid_input:not_an_integer" and t1.record.path == ("ask_qty",)
    assert s.texts() == ["1 to 9 please (you said something else)."] and t1.state.attempts == {"ask_qty": 1}
    t2 = s.send("10")
    assert t2.record is not None and t2.record.error == "invalid_input:too_large" and t2.state.attempts == {"ask_qty": 2}
    t3 = s.send("0")
    assert t3.record is not None and t3.record.error == "invalid_input:too_small"
    assert t3.state.status == "handoff" and t3.record.path == ("human",) and s.texts() == ["Let me get a person."]
    assert t3.state.attempts == {}


def test_a_valid_answer_resets_the_attempts() -> None:
    s = Session(flow(RETRY))
    s.send(Start(flow="retry"))
    s.send("lots")
    t = s.send("3")
    assert t.state.attempts == {} and t.state.step == "ask_name" and t.state.slots["qty"] == 3
    t = s.send("   ")
    assert t.record is not None and t.record.error == "invalid_input:empty"
    assert s.texts() == ["Please type an answer. Name?"]  # default text + the question again
    t = s.send("Ana")
    assert s.texts() == ["Thanks Ana: 3."] and t.state.status == "completed"


def test_without_on_fail_the_question_is_repeated() -> None:
    f = flow(RETRY.replace("    on_fail: human\n", "").replace("  human:\n    say: \"Let me get a person.\"\n    end: handoff\n", ""))
    s = Session(f)
    s.send(Start(flow="retry"))
    for i in range(1, 6):
        t = s.send("x")
        assert t.state.step == "ask_qty" and t.state.attempts == {"ask_qty": i}


def test_retries_zero_fails_at_once_and_choice_reprompt_keeps_buttons() -> None:
    f = flow("""
    flow: pick
    start: ask
    slots:
      c: {type: choice, options: [a1, b2]}
    steps:
      ask:
        ask: "Pick"
        input: {type: choice, options: [a1, b2]}
        save: c
        retries: 0
        on_fail: bye
        next: bye
      bye:
        end: failed
    """)
    s = Session(f)
    t = s.send(Start(flow="pick"))
    assert t.effects[0] == Reply(text="Pick", buttons=(("a1", "a1"), ("b2", "b2")))
    t = s.send("zz")
    assert t.state.status == "failed"
    f2 = flow(f.to_yaml().replace("retries: 0", "retries: 1"))
    s2 = Session(f2)
    s2.send(Start(flow="pick"))
    t = s2.send("zz")
    reply = t.effects[0]
    assert isinstance(reply, Reply) and reply.buttons == (("a1", "a1"), ("b2", "b2"))
    assert reply.text == "Please choose one of the options. Pick"


def test_sensitive_answers_are_redacted_in_the_record() -> None:
    from .helpers import FLOWS

    s = Session(FLOWS["support_triage"])
    s.send(Start(flow="support_triage"))
    s.send("3")  # account
    s.send("2")
    t = s.send("my card number is 1234")
    assert t.record is not None and t.record.input == '{"redacted":true,"type":"text"}'
    assert t.state.slots["details"] == "my card number is 1234"
    assert T0 < s.now
