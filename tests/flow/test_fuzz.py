"""Mutated flow files never crash the loader: it either returns a Flow or raises a FlowError
whose every problem carries a real location (line and column >= 1) in the file it read."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit.errors import FlowError
from flowkit.flow import Flow, parse_flow
from flowkit.store import codec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.yaml"))}
DATA = {name: yaml.safe_load(text) for name, text in TEXTS.items()}

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def check_loads_or_located(text: str, file: str) -> None:
    try:
        flow = parse_flow(text, file)
    except FlowError as exc:
        assert exc.problems, "a FlowError must say what is wrong"
        for p in exc.problems:
            assert p.file == file
            assert p.line >= 1 and p.column >= 1, str(p)
            assert p.message and p.code
        assert str(exc).count(f"{file}:") >= len(exc.problems)
    else:
        assert isinstance(flow, Flow)


# ---------------------------------------------------------------- text mutations


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(sorted(TEXTS.values())))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["delete_line", "duplicate_line", "truncate", "insert", "replace", "indent", "swap"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "delete_line":
            del lines[i]
        elif op == "duplicate_line":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["  ", " ", "\t", ""])) + lines[i].lstrip(" ")
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        text = "\n".join(lines)
        if op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif op == "insert":
            at = draw(st.integers(0, len(text)))
            junk = draw(st.one_of(
                st.text(max_size=8),
                st.sampled_from(["{", "}", "[", "]", ":", "- ", "&a ", "*a", "!!python/object:os.system ", "{{", "}}", "'", '"',
                                 "\x00", "\ufeff", "<<: *a", "? ", "%YAML 1.1\n---\n", "...\n", "|\n", "\\"]),
                st.binary(max_size=6).map(lambda b: b.decode("latin-1")),
            ))
            text = text[:at] + junk + text[at:]
        elif op == "replace":
            a = draw(st.integers(0, len(text)))
            b = draw(st.integers(a, min(len(text), a + 20)))
            text = text[:a] + draw(st.text(max_size=5)) + text[b:]
    return text


@FUZZ
@given(mutated_text())
def test_mutated_yaml_text_never_crashes(text: str) -> None:
    check_loads_or_located(text, "fuzz.yaml")


# ---------------------------------------------------------------- structure mutations

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["{{ x }}", "{{", "size ==", "__class__", "1h", "-1s", "welcome", "done", "end"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        data = data[k]
    return data


@st.composite
def mutated_data(draw: st.DrawFn) -> Any:
    data = json.loads(json.dumps(DATA[draw(st.sampled_from(sorted(DATA)))]))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _get(data, path[:-1])
        op = draw(st.sampled_from(["delete", "retype", "rename", "copy"]))
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "retype":
            parent[key] = draw(VALUES)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = parent.pop(key)
        elif op == "copy" and isinstance(parent, dict):
            other = draw(st.sampled_from(paths))
            parent[key] = json.loads(json.dumps(_get(data, other)))
    return data


@FUZZ
@given(mutated_data(), st.booleans())
def test_mutated_structure_as_yaml_or_json_never_crashes(data: Any, as_json: bool) -> None:
    if as_json:
        text, file = json.dumps(data, indent=2, allow_nan=True), "fuzz.json"
    else:
        text, file = yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "fuzz.yaml"
    check_loads_or_located(text, file)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(raw: bytes) -> None:
    check_loads_or_located(raw.decode("utf-8", errors="replace"), "bytes.yaml")


def test_the_fuzzer_reaches_both_outcomes() -> None:
    """The oracle is not vacuous: unmutated examples load, and a known mutation is reported with a place."""
    for name, text in TEXTS.items():
        check_loads_or_located(text, name)
        assert isinstance(parse_flow(text, name), Flow)
    broken = TEXTS["order_pizza.yaml"].replace("next: ask_qty\n  ask_qty:", "next: ask_qtty\n  ask_qty:")
    try:
        parse_flow(broken, "broken.yaml")
    except FlowError as exc:
        assert any(p.code == "unknown-target" and p.line > 1 for p in exc.problems)
    else:
        raise AssertionError("a renamed target must be reported")


# ---------------------------------------------------------------- hostile values (issue 17)

# What a careless or hostile author might put anywhere in a flow file: non-finite and huge
# numbers, backtracking patterns, expressions and templates that would compute for seconds,
# texts past the file-size bound.
HOSTILE = st.sampled_from([
    float("nan"), float("inf"), -float("inf"), "__BIG_INT__", -(10**40), 1e308, "1e999", ".nan",
    "([A-Za-z]+)+", "(a|aa)*$", "(?=x)y", r"(a)\1", "round(qty, -10000000)", "{{ round(1, -10000000) }}",
    "{{ float('nan') }}", "float('inf') * 2", "{{ " + "(" * 60 + "1" + ")" * 60 + " }}", "1" + "0" * 40,
    "size + size + size", "[size, size, size]", "__HUGE_TEXT__", "__MANY_PLACEHOLDERS__",
])
# put into the YAML text after dumping (dumping them is slow, or impossible for the int)
LATE = {"__BIG_INT__": "9" * 5000, "__HUGE_TEXT__": "x" * 300_000, "__MANY_PLACEHOLDERS__": "'" + "{{ size }}" * 5_000 + "'"}


@st.composite
def hostile_data(draw: st.DrawFn) -> Any:
    data = json.loads(json.dumps(DATA[draw(st.sampled_from(sorted(DATA)))]))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        _get(data, path[:-1])[path[-1]] = draw(HOSTILE)
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          derandomize=True)
@given(hostile_data())
def test_hostile_values_in_a_flow_file_are_located_errors_or_a_bounded_flow(data: Any) -> None:
    from flowkit.engine import Start, UserMessage, step
    from flowkit.errors import EngineError

    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    for mark, value in LATE.items():
        text = text.replace(mark, value)
    start = time.thread_time()  # CPU time of this thread: the bound is about work done, and a loaded machine's other processes do not count
    check_loads_or_located(text, "hostile.yaml")
    assert time.thread_time() - start < 2.0  # generous: a 30 MB file took 47 s before the size bound
    try:
        flow = parse_flow(text, "hostile.yaml")
    except FlowError:
        return
    # a flow that loads holds only finite bounds, and runs within bounds: each step quick,
    # only the engine's typed error, and every state one the store can write
    specs = [*flow.slots.values(), *(st.input for st in flow.steps.values() if hasattr(st, "input"))]
    for spec in specs:
        for bound in (spec.min, spec.max):
            assert not isinstance(bound, float) or math.isfinite(bound), spec
    t = None
    for i, answer in enumerate(["", "small", "2", "1" * 30, "nan", "x" * 4096]):
        start = time.thread_time()
        try:
            t = step(flow, t.state if t else None, UserMessage(text=answer, message_id=f"m{i}") if t else Start(flow=flow.name),
                     1_790_000_000_000 + i, session_id="h1")
        except EngineError:
            break
        finally:
            assert time.thread_time() - start < 0.5
        codec.canonical(t.state.to_dict())
        if t.state.terminal:
            break
