"""``{{ }}`` templates: parsing, rendering, missing values and located errors."""

from __future__ import annotations

import textwrap

import pytest

from flowkit.errors import ExpressionError, FlowError
from flowkit.flow import parse_flow, parse_template
from flowkit.flow.expr import Expr
from flowkit.flow.template import format_value


def test_parts_alternate_text_and_expressions() -> None:
    t = parse_template("Hi {{ name }}, you owe {{ qty * price }} EUR.")
    assert [type(p).__name__ for p in t.parts] == ["str", "Expr", "str", "Expr", "str"]
    assert t.names() == {"name", "qty", "price"}
    assert t.name_positions() == {"name": 6, "qty": 26, "price": 32}
    assert not t.is_static
    assert parse_template("no placeholders").is_static
    assert str(t) == t.source


def test_render() -> None:
    t = parse_template("Hi {{ profile.name or 'there' }}! {{ qty }} x {{ upper(size) }}")
    assert t.render({"profile": {}, "qty": 2, "size": "large"}) == "Hi there! 2 x LARGE"
    assert t.render({"profile": {"name": "Ana"}, "qty": 1.0, "size": "s"}) == "Hi Ana! 1 x S"


@pytest.mark.parametrize(("value", "text"), [
    (True, "yes"), (False, "no"), (2.0, "2"), (2.5, "2.5"), (["a", 1], "a, 1"),
    ({"latitude": 1.5, "longitude": 2}, "1.5,2"), ({"latitude": 1, "longitude": 2, "name": "Home"}, "Home"),
    ({"a": 1}, "a: 1"), ("x", "x"), (0, "0"),
])
def test_values_read_naturally(value: object, text: str) -> None:
    assert format_value(value) == text
    assert parse_template("{{ v }}").render({"v": value}) == text


def test_closing_braces_inside_a_string_do_not_end_the_placeholder() -> None:
    t = parse_template("a {{ '}}' + x }} b")
    assert t.render({"x": "!"}) == "a }}! b"
    assert parse_template("{{ \"{{\" }}").render({}) == "{{"


def test_same_expression_twice_reports_the_right_one() -> None:
    t = parse_template("{{ a }} and {{ a }} and {{ b }}")
    with pytest.raises(ExpressionError) as info:
        t.render({"a": 1, "b": None})
    assert info.value.position == 27
    assert "{{ b }} has no value" in info.value.reason
    assert "or '...'" in info.value.reason  # how to give a default


def test_missing_value_and_unknown_name_at_render_are_located() -> None:
    t = parse_template("Order {{ order_id }} placed")
    with pytest.raises(ExpressionError) as info:
        t.render({"order_id": None})
    assert info.value.position == 9 and info.value.expression == t.source
    with pytest.raises(ExpressionError) as info:
        t.render({})
    assert info.value.position == 9 and "unknown name 'order_id'" in info.value.reason
    with pytest.raises(ExpressionError) as info:
        parse_template("x {{ 1 / n }}").render({"n": 0})
    assert info.value.position == 7 and "division by zero" in info.value.reason
    # a default with `or` is the documented way around a missing value
    assert parse_template("Order {{ order_id or '?' }}").render({"order_id": None}) == "Order ?"


@pytest.mark.parametrize(("src", "pos", "words"), [
    ("Hi {{ name", 3, "without a closing"),
    ("Hi {{ }}", 5, "empty expression"),
    ("Hi {{ name | upper }}", 11, "no filters"),
    ("Hi {{ name.__class__ }}", 11, "'__'"),
    ("a {{ x }} b {{ 1 + }}", 18, "ends too early"),
    ("{{ it's }}", 5, "unterminated string"),
    ("{{ lambda: 1 }}", 3, "'lambda' is Python"),
])
def test_parse_errors_carry_the_position_in_the_whole_text(src: str, pos: int, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_template(src)
    assert words in info.value.reason
    assert info.value.position == pos
    assert info.value.expression == src


def test_stray_closing_braces_are_text() -> None:
    assert parse_template("a }} b").parts == ("a }} b",)


def test_template_errors_in_a_flow_are_located_at_the_character() -> None:
    text = textwrap.dedent("""\
        flow: demo
        start: hi
        help: "Ask {{ helpdesk }}"
        slots:
          name: text
        steps:
          hi:
            ask:
              text: "Name, {{ profile.name or 'friend' }}? {{ name | upper }}"
              buttons: [Skip]
            input: text
            save: name
            invalid: 'It''s {{ nmae }}?'
            next: bye
          bye:
            end: completed
            say:
              template:
                name: goodbye
                params: ["{{ name }}", "{{ surname }}"]
        """)
    with pytest.raises(FlowError) as info:
        parse_flow(text, "t.yaml")
    got = [(p.line, p.column, p.code) for p in info.value.problems]
    assert got == [
        (3, 15, "unknown-slot"),
        (9, 60, "bad-expression"),
        (13, 24, "unknown-slot"),
        (20, 36, "unknown-slot"),
    ]
    assert "'surname'" in info.value.problems[-1].message
    assert "'nmae'" in info.value.problems[2].message and "did you mean 'name'" in info.value.problems[2].message


def test_templates_of_a_loaded_flow_know_where_they_were_written() -> None:
    flow = parse_flow("flow: d\nstart: a\nsteps:\n  a:\n    say: \"x {{ 1 }}\"\n    end: completed\n", "d.yaml")
    say = flow.steps["a"].say  # type: ignore[attr-defined]
    assert say.text.span.at(0) == (5, 11)
    assert say.text.span.at(2) == (5, 13)
    expr = say.text.parts[1]
    assert isinstance(expr, Expr)
