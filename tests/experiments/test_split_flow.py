"""The ``split`` step in flow files: parsed, written back, validated with located errors,
drawn and counted as graph edges."""

from __future__ import annotations

import textwrap

import pytest

from flowkit.errors import FlowError, Problem
from flowkit.flow import SplitStep, Variant, graph, parse_flow, render, to_networkx

SPLIT = """\
flow: demo
start: hello
slots:
  name: text
steps:
  hello:
    say: "Hi"
    next: pick
  pick:
    split:
      - {variant: short, weight: 50, goto: ask_a}
      - {variant: long, weight: 50, goto: ask_b}
  ask_a:
    ask: "Name?"
    input: text
    save: name
    next: bye
  ask_b:
    ask: "Please tell us your full name"
    input: text
    save: name
    next: bye
  bye:
    end: completed
"""


def problems(text: str) -> list[Problem]:
    with pytest.raises(FlowError) as info:
        parse_flow(textwrap.dedent(text), "f.yaml")
    return info.value.problems


def only(text: str, code: str) -> Problem:
    found = problems(text)
    assert [p.code for p in found] == [code], "\n".join(map(str, found))
    return found[0]


def with_split(lines: str) -> str:
    """SPLIT with the two variant lines replaced by ``lines`` (indented as list items)."""
    head, _, rest = SPLIT.partition("    split:\n")
    tail = rest.split("\n", 2)[2]
    return head + "    split:\n" + textwrap.indent(textwrap.dedent(lines), "      ") + tail


def test_a_split_is_parsed_and_round_trips() -> None:
    flow = parse_flow(SPLIT, "f.yaml")
    st = flow.steps["pick"]
    assert isinstance(st, SplitStep)
    assert st.split == (Variant(name="short", weight=50, goto="ask_a"), Variant(name="long", weight=50, goto="ask_b"))
    assert parse_flow(flow.to_yaml(), "again.yaml") == flow
    assert flow.to_dict()["steps"]["pick"] == {"split": [{"variant": "short", "weight": 50, "goto": "ask_a"},
                                                         {"variant": "long", "weight": 50, "goto": "ask_b"}]}


def test_every_variant_is_an_edge_of_the_graph_and_the_drawing() -> None:
    flow = parse_flow(SPLIT, "f.yaml")
    g = to_networkx(flow)
    assert g.edges["pick", "ask_a"]["kinds"] == ["variant"]
    assert g.edges["pick", "ask_b"]["labels"] == ["variant long"]
    assert g.nodes["pick"]["kind"] == "split" and g.nodes["pick"]["text"] == "short 50 / long 50"
    assert set(graph.EDGE_KINDS) >= {"variant"}
    assert not graph.unreachable(flow)
    dot = render(flow).source
    assert "variant short" in dot and "trapezium" in dot


def test_same_goto_for_both_variants_is_allowed() -> None:  # an A/A test
    flow = parse_flow(with_split("""\
        - {variant: a, weight: 1, goto: ask_a}
        - {variant: b, weight: 1, goto: ask_a}
        """).replace("  ask_b:\n    ask: \"Please tell us your full name\"\n    input: text\n    save: name\n    next: bye\n", ""),
        "f.yaml")
    assert [v.goto for v in flow.steps["pick"].split] == ["ask_a", "ask_a"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("weight", ["0", "-5", "2.5", "'fifty'", "true"])
def test_a_weight_must_be_a_positive_whole_number(weight: str) -> None:
    p = only(with_split(f"""\
        - {{variant: short, weight: {weight}, goto: ask_a}}
        - {{variant: long, weight: 50, goto: ask_b}}
        """), "bad-value" if weight in ("0", "-5") else "wrong-type")
    assert (p.line, p.column) == (11, 35 if weight.startswith("'") else 34)  # inside the quotes
    assert "the weight of variant 1 of step 'pick'" in p.message


def test_duplicate_variant_names_are_located_at_the_second() -> None:
    p = only(with_split("""\
        - {variant: short, weight: 50, goto: ask_a}
        - {variant: short, weight: 50, goto: ask_b}
        """), "duplicate-variant")
    assert (p.line, p.column) == (12, 19)
    assert "'short' appears twice in step 'pick'" in p.message


def test_an_unknown_goto_is_located_with_a_hint() -> None:
    found = problems(with_split("""\
        - {variant: short, weight: 50, goto: ask_a}
        - {variant: long, weight: 50, goto: ask_bb}
        """))
    assert [p.code for p in found] == ["unknown-target", "unreachable"]  # ask_b: nothing else goes there
    p = found[0]
    assert (p.line, p.column) == (12, 43)
    assert "variant 'long' of step 'pick' goes to 'ask_bb', which does not exist; did you mean 'ask_b'?" in p.message


@pytest.mark.parametrize("body", ["- {variant: short, weight: 50, goto: ask_a}\n", "[]\n"])
def test_fewer_than_two_variants_is_an_error(body: str) -> None:
    text = with_split(body).replace("    split:\n      ", "    split: ") if body == "[]\n" else with_split(body)
    found = problems(text)
    assert "bad-split" in [p.code for p in found]
    p = next(p for p in found if p.code == "bad-split")
    assert p.line == 10 or p.line == 11
    assert "must list at least two variants" in p.message


def test_a_split_takes_no_next() -> None:
    p = only(SPLIT.replace("      - {variant: long, weight: 50, goto: ask_b}\n",
                           "      - {variant: long, weight: 50, goto: ask_b}\n    next: bye\n"), "unknown-key")
    assert p.line == 13 and "unknown key 'next' in step 'pick'" in p.message


def test_a_missing_key_of_a_variant_is_reported() -> None:
    p = only(with_split("""\
        - {variant: short, goto: ask_a}
        - {variant: long, weight: 50, goto: ask_b}
        """), "missing-key")
    assert p.line == 11 and "needs `weight`" in p.message


def test_the_builder_writes_a_split_that_equals_the_file() -> None:
    from flowkit.flow import FlowBuilder

    b = FlowBuilder("demo", start="hello")
    b.slot("name", "text")
    b.say("hello", "Hi", next="pick")
    b.split("pick", [("short", 50, "ask_a"), ("long", 50, "ask_b")])
    b.ask("ask_a", "Name?", input="text", save="name", next="bye")
    b.ask("ask_b", "Please tell us your full name", input="text", save="name", next="bye")
    b.end("bye")
    assert b.build() == parse_flow(SPLIT, "f.yaml")
