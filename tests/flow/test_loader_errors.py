"""Every kind of problem in a flow file is reported as file:line:column with a clear message,
and all problems of a file are reported at once (YAML and JSON)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from flowkit.errors import FlowError, Problem
from flowkit.flow import load_flow, load_flows, parse_flow


def problems(text: str, file: str = "f.yaml") -> list[Problem]:
    with pytest.raises(FlowError) as info:
        parse_flow(textwrap.dedent(text), file)
    return info.value.problems


def only(text: str, code: str, file: str = "f.yaml") -> Problem:
    """The one problem of ``text``; fails if there are others (no follow-up noise)."""
    found = problems(text, file)
    assert [p.code for p in found] == [code], "\n".join(map(str, found))
    return found[0]


def where(p: Problem) -> tuple[int, int]:
    return p.line, p.column


GOOD = """\
flow: demo
start: hello
slots:
  name: {type: text}
steps:
  hello:
    say: "Hi"
    next: bye
  bye:
    end: completed
"""


def test_the_base_flow_is_valid() -> None:
    flow = parse_flow(GOOD, "f.yaml")
    assert set(flow.steps) == {"hello", "bye"}


# ---------------------------------------------------------------- syntax


def test_yaml_syntax_error_is_located() -> None:
    p = only("""\
        flow: demo
        start: hello
        steps:
          hello: {say: "Hi", next: bye
          bye: {end: completed}
        """, "yaml-syntax")
    assert where(p) == (5, 6)
    assert str(p).startswith("f.yaml:5:6: YAML syntax error")


def test_json_syntax_error_is_located() -> None:
    text = '{\n  "flow": "demo",\n  "start": "hello"\n  "steps": {}\n}\n'
    p = only(text, "yaml-syntax", "f.json")
    assert (p.file, p.line, p.column) == ("f.json", 4, 3)


def test_nul_byte_is_a_located_problem_not_a_crash() -> None:
    p = only("flow: demo\nstart: h\x00llo\n", "yaml-syntax")
    assert where(p) == (2, 9)
    assert "\\x00" in p.message


def test_empty_file() -> None:
    assert where(only("", "empty-file")) == (1, 1)
    assert only("# only a comment\n", "empty-file").line == 1


@pytest.mark.parametrize("depth", [150, 600])
def test_deep_nesting_is_refused_with_a_place(depth: int) -> None:
    text = "flow: demo\nstart: a\nsteps: " + "[" * depth + "]" * depth + "\n"
    found = problems(text)
    assert [p.code for p in found] == ["too-deep"]
    assert found[0].line == 3 and found[0].column > 8


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    found = problems("\n".join(lines) + "\n")
    assert [p.code for p in found] == ["too-big"]


# ---------------------------------------------------------------- keys and types


def test_duplicate_key_points_at_the_second_one() -> None:
    p = only("""\
        flow: demo
        start: hello
        steps:
          hello:
            say: "Hi"
            next: bye
            say: "Hello again"
          bye:
            end: completed
        """, "duplicate-key")
    assert where(p) == (7, 5)
    assert "first defined at line 5" in p.message


def test_duplicate_key_in_json_points_inside_the_quotes() -> None:
    text = '{"flow": "demo", "start": "hello",\n "steps": {"hello": {"say": "Hi", "next": "bye"},\n           "bye": {"end": "completed"},\n           "hello": {"end": "failed"}}}'
    p = only(text, "duplicate-key", "f.json")
    assert where(p) == (4, 13)


def test_unknown_key_suggests_the_close_one() -> None:
    p = only("""\
        flow: demo
        start: hello
        steps:
          hello:
            say: "Hi"
            nxet: bye
            next: bye
          bye:
            end: completed
        """, "unknown-key")
    assert where(p) == (6, 5)
    assert "did you mean 'next'?" in p.message


def test_unknown_top_level_key_suggests_too() -> None:
    p = only(GOOD + "tiggers: [hi]\n", "unknown-key")
    assert where(p) == (11, 1)
    assert "did you mean 'triggers'?" in p.message


def test_wrong_type_is_located_at_the_value() -> None:
    p = only("""\
        flow: demo
        start: hello
        steps:
          hello:
            ask: "How many?"
            input: {type: int}
            retries: [1, 2]
            next: bye
          bye:
            end: completed
        """, "wrong-type")
    assert where(p) == (7, 14)
    assert "whole number" in p.message and "a list" in p.message


def test_steps_of_wrong_type() -> None:
    p = only("flow: demo\nstart: hello\nsteps: [hello]\n", "wrong-type")
    assert where(p) == (3, 8)


def test_missing_required_key() -> None:
    p = only("flow: demo\nsteps:\n  hello: {end: completed}\n", "missing-key")
    assert where(p) == (1, 1)
    assert "`start`" in p.message


def test_bad_duration() -> None:
    p = only(GOOD.replace("slots:", "timeout: 30 minutes\nslots:"), "bad-duration")
    assert where(p) == (3, 10)
    assert "30 minutes" in p.message


def test_a_timeout_too_long_for_a_deadline_is_a_located_error() -> None:
    # 1e308 s overflowed the engine's integer deadline (found by tests/flow/test_fuzz.py)
    p = only(GOOD.replace("slots:", "timeout: 1.0e+308\nslots:"), "bad-duration")
    assert where(p) == (3, 10)
    assert "at most 366 days" in p.message


@pytest.mark.parametrize("value", ["0s", "-5", "1x", "true", "10m5", "1.0e+308", "400d", "99999999999999999999d"])
def test_bad_step_durations(value: str) -> None:
    text = f"""\
        flow: demo
        start: hello
        steps:
          hello:
            call: orders.create
            timeout: {value}
            next: bye
          bye:
            end: completed
        """
    p = only(text, "bad-duration")
    assert where(p) == (6, 14)


# ---------------------------------------------------------------- the graph


def test_unknown_step_target_with_suggestion() -> None:
    found = problems(GOOD.replace("next: bye", "next: by"))
    # `bye` is unreachable because of the typo; `hello` is not called a dead end: it has a way on once fixed
    assert [(p.code, p.line, p.column) for p in found] == [("unknown-target", 8, 11), ("unreachable", 9, 3)]
    p = found[0]
    assert "did you mean 'bye'?" in p.message


def test_unknown_target_of_on_fail() -> None:
    p = only("""\
        flow: demo
        start: hello
        steps:
          hello:
            ask: "Name?"
            input: text
            on_fail: nowhere
            next: bye
          bye:
            end: completed
        """, "unknown-target")
    assert where(p) == (7, 14)


def test_unknown_start_step() -> None:
    p = only(GOOD.replace("start: hello", "start: helo"), "unknown-target")
    assert where(p) == (2, 8)
    assert "did you mean 'hello'?" in p.message


def test_unreachable_step() -> None:
    p = only(GOOD + "  orphan:\n    say: lost\n    next: bye\n", "unreachable")
    assert where(p) == (11, 3)
    assert "'orphan'" in p.message


def test_dead_end_and_loop_without_exit() -> None:
    found = problems("""\
        flow: demo
        start: hello
        steps:
          hello:
            next:
              - if: "1 > 2"
                goto: bye
              - goto: stuck
          stuck:
            say: "and now?"
            next: stuck2
          stuck2:
            next: stuck2
          bye:
            end: completed
        """)
    assert [(p.code, p.line, p.column) for p in found] == [("dead-end", 9, 3), ("no-exit-loop", 12, 3)]
    assert "step 'stuck' has no path to an end step" in found[0].message
    assert "stuck2 -> stuck2" in found[1].message


def test_dead_end_without_next() -> None:
    found = problems("""\
        flow: demo
        start: hello
        steps:
          hello:
            call: lookup
          bye:
            end: completed
        """)
    assert [(p.code, p.line, p.column) for p in found] == [("dead-end", 4, 3), ("unreachable", 6, 3)]
    assert "after the call succeeds" in found[0].message


def test_ask_loop_with_no_exit() -> None:
    p = only("""\
        flow: demo
        start: first
        slots:
          a: text
          b: text
        steps:
          first:
            next:
              - if: "a == 'x'"
                goto: done
              - goto: ask_a
          ask_a:
            ask: "A?"
            input: text
            save: a
            next: ask_b
          ask_b:
            ask: "B?"
            input: text
            save: b
            next: ask_a
          done:
            end: completed
        """, "no-exit-loop")
    assert where(p) == (12, 3)
    assert "ask_a -> ask_b -> ask_a" in p.message


def test_ask_loop_with_an_on_fail_exit_is_fine() -> None:
    parse_flow(textwrap.dedent("""\
        flow: demo
        start: ask_a
        steps:
          ask_a:
            ask: "A?"
            input: text
            on_fail: done
            next: ask_a
          done:
            end: completed
        """))


def test_end_step_with_next() -> None:
    p = only(GOOD + "    next: hello\n", "end-with-next")
    assert where(p) == (11, 5)


def test_flow_without_any_end_step_still_reports_unreachable_steps() -> None:
    found = problems("""\
        flow: demo
        start: a
        steps:
          a: {say: hi, next: a2}
          a2: {say: hi, next: a}
          lost: {say: never, next: a}
        """)
    assert sorted((p.code, p.line, p.column) for p in found) == [("dead-end", 2, 8), ("unreachable", 6, 3)]


def test_branches_after_an_unconditional_one_and_a_missing_default() -> None:
    found = problems("""\
        flow: demo
        start: a
        steps:
          a:
            next:
              - goto: b
              - if: "true"
                goto: b
          b:
            next:
              - if: "false"
                goto: c
          c:
            end: completed
        """)
    assert [(p.code, p.line, p.column) for p in found] == [("unreachable-branch", 6, 15), ("no-default-branch", 11, 7)]


# ---------------------------------------------------------------- slots, expressions, inputs


def test_unknown_slot_in_condition_points_at_the_name() -> None:
    p = only("""\
        flow: demo
        start: hello
        slots:
          size: text
        steps:
          hello:
            next:
              - if: "size == 'large' and colour == 'red'"
                goto: bye
              - goto: bye
          bye:
            end: completed
        """, "unknown-slot")
    assert where(p) == (8, 34)
    assert "'colour'" in p.message


def test_unknown_slot_in_template_points_at_the_name() -> None:
    p = only(GOOD.replace('say: "Hi"', 'say: "Hi {{ nmae }}!"'), "unknown-slot")
    assert where(p) == (7, 17)
    assert "did you mean 'name'?" in p.message


def test_unknown_slot_in_a_literal_block_template() -> None:
    p = only(GOOD.replace('    say: "Hi"', '    say: |\n      Hello,\n      dear {{ profile.name }} and {{ whom }}'), "unknown-slot")
    assert where(p) == (9, 38)


def test_unknown_slot_in_set_and_save_target() -> None:
    found = problems("""\
        flow: demo
        start: s
        slots:
          n: int
        steps:
          s:
            set: {n: "m + 1", total: "n"}
            next: bye
          bye:
            end: completed
        """)
    assert [(p.code, p.line, p.column) for p in found] == [("unknown-slot", 7, 15), ("unknown-slot", 7, 23)]
    assert "'m'" in found[0].message and "'total'" in found[1].message


def test_builtin_names_are_known() -> None:
    parse_flow(GOOD.replace('say: "Hi"', 'say: "Hi {{ profile.name }} {{ session.id }} {{ today }}"'))


def test_bad_expression_is_located_inside_the_text() -> None:
    p = only("""\
        flow: demo
        start: hello
        steps:
          hello:
            next:
              - if: "1 + "
                goto: bye
              - goto: bye
          bye:
            end: completed
        """, "bad-expression")
    assert where(p) == (6, 17)
    assert "'1 + '" in p.message


def test_bad_expression_in_json_with_escapes() -> None:
    data = {"flow": "demo", "start": "a", "steps": {
        "a": {"next": [{"if": "name == '\u00e9\\t' and __import__", "goto": "b"}, {"goto": "b"}]},
        "b": {"end": "completed"}}}
    text = json.dumps(data)  # writes the e-acute as \u00e9 and the backslash as \\ in the file
    assert "\\u00e9\\\\t" in text
    p = only(text, "bad-expression", "f.json")
    # the column counts the characters of the file, escapes included
    assert where(p) == (1, text.index("__import__") + 1)


def test_input_contradicts_slot_type() -> None:
    p = only("""\
        flow: demo
        start: ask
        slots:
          qty: int
        steps:
          ask:
            ask: "How many?"
            input: {type: text}
            save: qty
            next: bye
          bye:
            end: completed
        """, "input-contradicts-slot")
    assert where(p) == (8, 12)
    assert "text input" in p.message and "'qty'" in p.message


def test_input_options_outside_slot_options() -> None:
    p = only("""\
        flow: demo
        start: ask
        slots:
          size: {type: choice, options: [small, large]}
        steps:
          ask:
            ask: "Size?"
            input: {type: choice, options: [small, huge]}
            save: size
            next: bye
          bye:
            end: completed
        """, "input-contradicts-slot")
    assert where(p) == (8, 44)  # at the offending option itself
    assert "'huge'" in p.message


def test_input_range_disjoint_from_slot_range() -> None:
    p = only("""\
        flow: demo
        start: ask
        slots:
          qty: {type: int, min: 1, max: 20}
        steps:
          ask:
            ask: "How many?"
            input: {type: int, min: 50}
            save: qty
            next: bye
          bye:
            end: completed
        """, "input-contradicts-slot")
    assert where(p) == (8, 12)


def test_bad_regex_pattern_and_a_warning_pattern() -> None:
    p = only("""\
        flow: demo
        start: ask
        steps:
          ask:
            ask: "Code?"
            input: {type: regex, pattern: "([a-z"}
            next: bye
          bye:
            end: completed
        """, "bad-pattern")
    assert where(p) == (6, 36)
    # a pattern that Python only warns about loads (the suite turns warnings into errors)
    parse_flow(textwrap.dedent("""\
        flow: demo
        start: ask
        steps:
          ask:
            ask: "Code?"
            input: {type: regex, pattern: "[[a]"}
            next: bye
          bye:
            end: completed
        """))


def test_a_broken_step_causes_no_follow_up_errors() -> None:
    found = problems("""\
        flow: demo
        start: hello
        steps:
          hello:
            say: "Hi {{ name. }}"
            next: ask
          ask:
            ask: "Name?"
            next: bye
          bye:
            end: completed
        """)
    assert [(p.code, p.line, p.column) for p in found] == [("bad-expression", 5, 22), ("missing-key", 7, 3)]


# ---------------------------------------------------------------- all at once


MANY = """\
flow: demo
start: hello
timeout: soon
slots:
  qty: {type: int, min: 1}
steps:
  hello:
    say: "Hi {{ nam }}"
    next: ask_qty
    colour: blue
  ask_qty:
    ask: "How many?"
    input: {type: text}
    save: qty
    retries: many
    next: gone
  orphan:
    say: lost
    next: done
  done:
    end: completed
    next: hello
"""


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    found = problems(MANY)
    assert [(p.line, p.column, p.code) for p in found] == [
        (3, 10, "bad-duration"),
        (8, 17, "unknown-slot"),
        (10, 5, "unknown-key"),
        (13, 12, "input-contradicts-slot"),
        (15, 14, "wrong-type"),
        (16, 11, "unknown-target"),
        (17, 3, "unreachable"),
        (20, 3, "unreachable"),
        (22, 5, "end-with-next"),
    ]
    message = str(FlowError(found))
    assert message.startswith("9 problems in flow definition:")
    assert "f.yaml:16:11: step 'ask_qty' goes to 'gone', which does not exist; did you mean 'done'? [unknown-target]" in message


def test_every_problem_of_a_json_file_is_reported_with_places(tmp_path: Path) -> None:
    text = (
        '{\n'
        '  "flow": "demo",\n'
        '  "start": "hello",\n'
        '  "timeout": "soon",\n'
        '  "steps": {\n'
        '    "hello": {"say": "Hi {{ nam }}", "next": "gone", "colour": 1},\n'
        '    "done": {"end": "completed"}\n'
        '  }\n'
        '}\n'
    )
    path = tmp_path / "demo.json"
    path.write_text(text)
    with pytest.raises(FlowError) as info:
        load_flow(path)
    assert [(p.file, p.line, p.column, p.code) for p in info.value.problems] == [
        (str(path), 4, 15, "bad-duration"),
        (str(path), 6, 29, "unknown-slot"),
        (str(path), 6, 47, "unknown-target"),
        (str(path), 6, 55, "unknown-key"),
        (str(path), 7, 6, "unreachable"),
    ]


# ---------------------------------------------------------------- files and sets of files


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FlowError) as info:
        load_flow(tmp_path / "nope.yaml")
    assert info.value.problems[0].code == "not-found"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("flow: d\xe9mo\n".encode("latin-1"))
    with pytest.raises(FlowError) as info:
        load_flow(bad)
    assert info.value.problems[0].code == "unreadable"


def test_load_flows_reports_problems_of_every_file_and_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("next: bye", "next: by"))
    (tmp_path / "b.yaml").write_text(GOOD.replace("timeout", "x").replace("hello:\n    say: \"Hi\"\n    next: bye",
                                                                          "hello:\n    flow: missing_sub\n    next: bye"))
    (tmp_path / "c.yaml").write_text(GOOD.replace("flow: demo", "flow: other\ntriggers: [hi]"))
    (tmp_path / "d.yaml").write_text(GOOD.replace("flow: demo", "flow: third\ntriggers: [hi]"))
    (tmp_path / "notes.txt").write_text("not a flow")
    with pytest.raises(FlowError) as info:
        load_flows(tmp_path)
    got = [(Path(p.file).name, p.line, p.column, p.code) for p in info.value.problems]
    assert got == [
        ("a.yaml", 8, 11, "unknown-target"),
        ("a.yaml", 9, 3, "unreachable"),
        ("b.yaml", 7, 11, "unknown-flow"),
        ("d.yaml", 3, 8, "duplicate-trigger"),
    ]


def test_the_same_flow_name_in_two_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.json").write_text(json.dumps(parse_flow(GOOD).to_dict()))
    with pytest.raises(FlowError) as info:
        load_flows([tmp_path / "a.yaml", tmp_path / "b.json"])
    [p] = info.value.problems
    assert (Path(p.file).name, p.code) == ("b.json", "duplicate-flow")
    assert "a.yaml" in p.message


def test_a_slot_with_a_builtin_name_is_refused_where_it_is_declared() -> None:
    """`profile` is the user's WhatsApp profile (a mapping): a declared `profile: text` slot
    would let an answer or a service result store text where every reader expects a mapping."""
    p = only(GOOD.replace("  name: {type: text}", "  name: {type: text}\n  profile: {type: text}"), "reserved-slot")
    assert where(p) == (5, 3)
    assert "'profile'" in p.message and "rename it" in p.message
