"""Patterns from flow files run on RE2: linear time on any input, and what would need
backtracking is a located lint error, not a slow webhook."""

from __future__ import annotations

import textwrap

import pytest

from flowkit.engine import Start, UserMessage, step
from flowkit.errors import ExpressionError, FlowError, PatternError
from flowkit.flow import parse_flow
from flowkit.flow.expr import parse_expr
from flowkit.flow.patterns import fullmatch

EVIL = "(a+)+$"  # exponential on Python's backtracking re for "aaaa...!"


def flow_with(pattern: str) -> str:
    return textwrap.dedent(f"""\
        flow: demo
        start: ask
        slots:
          code: {{type: text}}
        steps:
          ask:
            ask: "Code?"
            input: {{type: regex, pattern: '{pattern}'}}
            save: code
            next: bye
          bye:
            end: completed
        """)


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    assert not fullmatch(EVIL, "a" * 100_000 + "!")  # Python's re would not return in our lifetime
    assert fullmatch(EVIL, "a" * 100_000)


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
def test_an_engine_input_with_that_pattern_reprompts_at_once() -> None:
    flow = parse_flow(flow_with(EVIL))
    t = step(flow, None, Start(flow="demo"), 0, session_id="s1")
    t2 = step(flow, t.state, UserMessage(text="a" * 4_000 + "!", message_id="m1"), 1, session_id="s1")
    assert t2.state.step == "ask" and t2.record.error == "invalid_input:pattern_mismatch"
    # longer than any WhatsApp text: refused before the pattern runs at all
    t2 = step(flow, t.state, UserMessage(text="a" * 50_000 + "!", message_id="m1"), 1, session_id="s1")
    assert t2.state.step == "ask" and t2.record.error == "invalid_input:too_long"
    t3 = step(flow, t.state, UserMessage(text="aaa", message_id="m2"), 1, session_id="s1")
    assert t3.state.status == "completed" and t3.state.slots["code"] == "aaa"


@pytest.mark.parametrize("pattern, why", [(r"(a)\1", "invalid escape"), ("(?<=a)b", "perl operator"),
                                          ("(?=x)y", "perl operator")])
def test_backtracking_features_are_located_lint_errors(pattern: str, why: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(flow_with(pattern), "f.yaml")
    [p] = info.value.problems
    assert p.code == "bad-pattern" and (p.line, p.column) == (8, 36)
    assert why in p.message and "RE2" in p.message


def test_matches_in_expressions_uses_re2_and_checks_constants_at_load() -> None:
    assert parse_expr("matches(code, '[A-Z]{2}[0-9]{4}')").evaluate({"code": "AB1234"}) is True
    with pytest.raises(ExpressionError, match="RE2"):
        parse_expr(r"matches(code, '(x)\\1')")


def test_pattern_error_says_what_to_do() -> None:
    with pytest.raises(PatternError, match="no backreferences or lookaround"):
        fullmatch("(?<=a)b", "b")
