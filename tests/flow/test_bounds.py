"""Flow authors cannot make an answer cost seconds or gigabytes: expressions and templates
stay within flowkit/flow/bounds.py, flow files are size-checked before parsing, and
non-finite numbers are lint errors.
"""

from __future__ import annotations

import math
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flowkit.engine import Start, UserMessage, step
from flowkit.errors import EngineError, ExpressionError, FlowError
from flowkit.flow import load_flow, parse_expr, parse_flow
from flowkit.flow.bounds import MAX_INT, MAX_VALUE_SIZE, size_problem
from flowkit.flow.reader import MAX_FILE_BYTES
from flowkit.flow.template import parse_template

T0 = 1_790_000_000_000


def ev(src: str, env: dict[str, Any] | None = None) -> Any:
    return parse_expr(src).evaluate(env or {})


def refused(src: str, env: dict[str, Any] | None = None, why: str = "") -> ExpressionError:
    start = time.thread_time()  # CPU time of this thread: the bound is about work done, and a loaded machine's other processes do not count
    with pytest.raises(ExpressionError, match=why) as info:
        ev(src, env)
    assert time.thread_time() - start < 0.5, src  # generous: these used to take seconds
    return info.value


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
def test_round_keeps_a_bounded_number_of_digits() -> None:
    refused("round(n, -10000000)", {"n": 5}, "round\\(\\) keeps -30 to 30 digits")  # 7 s before
    refused("round(n, 10000000)", {"n": 5.5}, "round")
    assert ev("round(n, -2)", {"n": 1234}) == 1200 and ev("round(n, 2)", {"n": 1.2345}) == 1.23


@pytest.mark.parametrize("src, env", [
    ("float(t)", {"t": "nan"}), ("float(t)", {"t": "-inf"}), ("float(t)", {"t": "1e309"}), ("abs(t)", {"t": "inf"}),
    ("x * 10", {"x": 1e308}), ("x + x", {"x": 1.7e308}), ("x - y", {"x": -1.7e308, "y": 1.7e308}),
    ("1 / x", {"x": 1e-320}), ("x / 1e-300", {"x": 1e300}), ("round(t)", {"t": "nan"}), ("int(t)", {"t": "inf"}),
])
def test_no_expression_yields_nan_or_infinity(src: str, env: dict[str, Any]) -> None:
    refused(src, env, "finite|too large|failed|cannot evaluate")


def test_a_non_finite_value_read_from_the_environment_is_refused_too() -> None:
    refused("x", {"x": math.nan}, "finite")
    refused("[x]", {"x": math.inf}, "finite")


@pytest.mark.parametrize("src, env", [
    ("x * x", {"x": 10**16}), ("x * 1000000", {"x": 10**29}), ("x + x", {"x": 10**30 - 1}), ("-x - x", {"x": 10**30 - 1}),
    ("floor(x)", {"x": 1e300}), ("int(x)", {"x": 1e300}), ("sum(xs)", {"xs": [10**29] * 20}),
    ("int(t)", {"t": "9" * 200}), ("float(t)", {"t": "1" * 200}),
])
def test_whole_numbers_stay_below_the_bound(src: str, env: dict[str, Any]) -> None:
    refused(src, env, "digits|characters")


def test_numbers_within_the_bounds_are_untouched() -> None:
    assert ev("x * x", {"x": 10**14}) == 10**28
    assert ev("x + 1", {"x": MAX_INT - 2}) == MAX_INT - 1
    assert ev("x * 2.5", {"x": 1e300}) == 2.5e300
    assert ev("int(t)", {"t": " 42 "}) == 42 and ev("int(t)", {"t": "4.0"}) == 4 and ev("int(t)", {"t": "-4.7"}) == -4


@pytest.mark.parametrize("src", ["1" + "0" * 30, "1e999", "9" * 400 + ".0"])
def test_number_literals_out_of_range_are_parse_errors(src: str) -> None:
    with pytest.raises(ExpressionError, match="out of range") as info:
        parse_expr(f"x + {src}")
    assert info.value.position == 4


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
def test_texts_and_lists_stay_within_the_size_bound() -> None:
    half = "a" * (MAX_VALUE_SIZE // 2 + 1)
    refused("s + s", {"s": half}, "characters")
    assert ev("s + t", {"s": half, "t": "b" * (MAX_VALUE_SIZE // 2 - 1)}) == half + "b" * (MAX_VALUE_SIZE // 2 - 1)
    refused("l + l", {"l": list(range(MAX_VALUE_SIZE // 2 + 1))}, "items")
    refused("upper(s)", {"s": "ß" * (MAX_VALUE_SIZE // 2 + 1)}, "characters")  # "SS": upper() can grow a text
    refused("str(l)", {"l": ["x" * 1000] * 17}, "characters")
    # [l, l] doubles the value each time, sharing the parts: the check stops at the bound, not at 2**n
    nested: Any = [1]
    for _ in range(200):
        nested = [nested, nested]
    refused("[l, l]", {"l": nested}, "larger than|nested")
    assert size_problem(nested) is not None


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
def test_templates_render_at_most_the_bound() -> None:
    t = parse_template("Dear {{ name }}, {{ s }}!")
    with pytest.raises(ExpressionError, match="longer than") as info:
        t.render({"name": "Ana", "s": "x" * MAX_VALUE_SIZE})
    assert info.value.position == t.source.index("s }}")  # located at the placeholder that crossed it
    assert t.render({"name": "Ana", "s": "x" * 100}) == "Dear Ana, " + "x" * 100 + "!"


LOOP = textwrap.dedent("""
    flow: loop
    start: q
    slots:
      s: {type: any}
      n: {type: int}
      x: {type: any}
    steps:
      q:
        ask: Go?
        input: {type: text}
        save: s
        next: init
      init:
        set: {n: "0", x: "2"}
        next: grow
      grow:
        set: {s: "%s", x: "%s", n: "n + 1"}
        next:
          - if: "n < 150"
            goto: grow
          - goto: done
      done:
        end: completed
""")


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
@pytest.mark.parametrize("grow_s, grow_x, why", [
    ("s + s", "x", "characters"),  # 2**150 characters: a 1 GB text after 30 rounds before
    ("[s, s]", "x", "larger than"),
    ("s", "x * x", "digits"),  # a number with 2**150 digits
    ("s", "[x, x, x, x]", "larger than|nested"),
])
def test_a_set_loop_cannot_build_a_huge_value(grow_s: str, grow_x: str, why: str) -> None:
    f = parse_flow(LOOP % (grow_s, grow_x))
    t = step(f, None, Start(flow="loop"), T0, session_id="l1")
    start = time.thread_time()
    with pytest.raises(EngineError, match=why) as info:
        step(f, t.state, UserMessage(text="ab", message_id="m1"), T0 + 1)
    assert time.thread_time() - start < 0.5
    assert "step 'grow'" in str(info.value)


# ---------------------------------------------------------------- flow files


def flow_text(extra: str = "") -> str:
    return textwrap.dedent("""
        flow: demo
        start: q
        steps:
          q:
            ask: How many?
            input: {type: number%s}
            next: bye
          bye:
            end: completed
    """) % extra


@pytest.mark.parametrize("bad", [".nan", ".NaN", ".inf", "-.inf", "1.0e+999", "-1.0e+400"])
def test_non_finite_numbers_in_a_flow_file_are_located_lint_errors(bad: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(flow_text(f", min: {bad}"), "f.yaml")
    [p] = [p for p in info.value.problems if p.code == "bad-value"]
    assert (p.line, p.column) == (7, 32) and "not a finite number" in p.message
    parse_flow(flow_text(", min: 0.5, max: 1.0e+300"), "f.yaml")


@pytest.mark.timeout(120)  # a hang guard (unbounded work would not return), not a speed claim
def test_a_huge_flow_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    body = flow_text() + "# " + "x" * 1000 + "\n"
    big = tmp_path / "big.yaml"
    big.write_text(body * (30 * 1024 * 1024 // len(body)), encoding="utf-8")  # 30 MB: 47 s and 914 MB before
    for load in (lambda: load_flow(big), lambda: parse_flow(big.read_text(encoding="utf-8"), str(big))):
        with pytest.raises(FlowError) as info:
            load()
        [p] = info.value.problems
        assert (p.file, p.line, p.column, p.code) == (str(big), 1, 1, "too-big")
        assert "256 KiB" in p.message and "sub-flows" in p.message


def test_a_flow_file_just_under_the_bound_still_loads(tmp_path: Path) -> None:
    body = flow_text()
    ok = tmp_path / "ok.yaml"
    pad = MAX_FILE_BYTES - len(body.encode()) - 3
    ok.write_text(body + "#" + "é" * (pad // 2) + "\n", encoding="utf-8")
    assert ok.stat().st_size <= MAX_FILE_BYTES
    assert load_flow(ok).name == "demo"
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes(body.replace("\n", "\r\n").encode())
    assert load_flow(crlf) == parse_flow(body, str(crlf))


def test_patterns_computed_at_run_time_are_bounded_and_cached_apart() -> None:
    from flowkit.flow import patterns

    e = parse_expr("matches(text, p)")
    before = patterns.compile_pattern.cache_info().currsize
    for i in range(100):  # a user sending pattern after pattern
        assert ev("matches(text, p)", {"text": f"a{i}", "p": f"[a-z]{i}"}) is True
        assert e.evaluate({"text": "zz", "p": f"[^a]{{1000}}x{i}"}) is False
    assert patterns.compile_pattern.cache_info().currsize == before  # the flow files' cache is untouched
    assert patterns._compile_value.cache_info().currsize <= 32
    refused("matches(text, p)", {"text": "a", "p": "a" * 1001}, "at most 1000 characters")
    refused("matches(text, p)", {"text": "a", "p": "(a)\\1"}, "RE2")
    assert ev("matches(text, '[a-z]+')", {"text": "abc"}) is True


def test_values_read_from_the_session_pass_as_they_are() -> None:
    # a service's big result in an `any` slot, a long id: the bounds are on what flows compute
    payment = {"items": ["x" * 100] * 500, "id": 10**40}
    env = {"payment": payment, "n": 10**40}
    assert ev("payment", env) is payment and ev("coalesce(payment, 1)", env) is payment
    assert ev("payment.id", env) == 10**40 and ev("max(n, 1)", env) == 10**40
    assert ev("payment and n > 5", env) is True and ev("len(payment.items)", env) == 500
    refused("n + 1", env, "digits")
    refused("str(payment)", env, "characters")
