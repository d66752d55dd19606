"""The safe expression language: what it computes, and what it refuses (at parse time, with
the expression and the position in the error)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from flowkit.errors import ExpressionError
from flowkit.flow import parse_expr
from flowkit.flow.expr import FUNCTIONS, MAX_DEPTH, MAX_LENGTH

ENV: dict[str, Any] = {
    "size": "large",
    "qty": 3,
    "price": 2.5,
    "drink": False,
    "tags": ["vip", "new"],
    "empty": None,
    "profile": {"name": "Ana", "address": {"city": "Lisbon"}},
    "order": {"lines": [{"sku": "P1"}]},
}


def ev(src: str, env: dict[str, Any] | None = None) -> Any:
    return parse_expr(src).evaluate(ENV if env is None else env)


@pytest.mark.parametrize(("src", "expected"), [
    ("size == 'large'", True),
    ('size != "large"', False),
    ("qty > 2 and qty <= 3", True),
    ("1 <= qty <= 20", True),
    ("1 <= qty <= 2", False),
    ("not drink", True),
    ("not not drink", False),
    ("drink or 'no drink'", "no drink"),
    ("qty and size", "large"),
    ("empty or profile.name", "Ana"),
    ("'vip' in tags", True),
    ("'old' not in tags", True),
    ("'arg' in size", True),
    ("'x' in empty", False),
    ("'name' in profile", True),
    ("qty * price + 1", 8.5),
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("-qty + 10", 7),
    ("7 // 2", 3),
    ("7 % 4", 3),
    ("7 / 2", 3.5),
    ("'a' + 'b'", "ab"),
    ("[1, 2] + [3]", [1, 2, 3]),
    ("profile.name", "Ana"),
    ("profile.address.city", "Lisbon"),
    ("profile.missing", None),
    ("profile.missing.deeper", None),
    ("order.lines[0].sku", "P1"),
    ("order.lines[5]", None),
    ("tags[-1]", "new"),
    ("profile['name']", "Ana"),
    ("len(tags)", 2),
    ("len(empty)", 0),
    ("upper(size)", "LARGE"),
    ("lower('ABC')", "abc"),
    ("trim('  x ')", "x"),
    ("int('42')", 42),
    ("int(' 4.0 ')", 4),
    ("int('12345678901234567891')", 12345678901234567891),
    ("float('2.5') * 2", 5.0),
    ("round(2.567, 2)", 2.57),
    ("round(2.5)", 2),
    ("abs(-3)", 3),
    ("min(3, 1, 2)", 1),
    ("max(tags)", "vip"),
    ("sum([1, 2, 3])", 6),
    ("startswith(size, 'la')", True),
    ("endswith(size, 'ge')", True),
    ("contains(tags, 'vip')", True),
    ("matches(size, '[a-z]+')", True),
    ("coalesce(empty, '', 'fallback')", "fallback"),
    ("floor(2.7) + ceil(2.1)", 5),
    ("str(true)", "true"),
    ("null == empty", True),
    ("True and not False", True),
    ("1e3", 1000.0),
    ("'it\\'s'", "it's"),
    ("'tab\\there'", "tab\there"),
    ("empty < 3", False),
])
def test_evaluates(src: str, expected: Any) -> None:
    assert ev(src) == expected


def test_names_are_the_root_names_read() -> None:
    e = parse_expr("profile.name == size and len(tags) > qty or matches(x, 'y')")
    assert e.names() == {"profile", "size", "tags", "qty", "x"}
    assert e.name_positions() == {"profile": 0, "size": 16, "tags": 29, "qty": 37, "x": 52}


def test_canonical_spelling_ignores_formatting_only() -> None:
    assert parse_expr("size=='large'").canonical() == parse_expr('size  ==  "large"').canonical()
    assert parse_expr("(a + b) * c").canonical() != parse_expr("a + b * c").canonical()
    assert parse_expr("1").canonical() != parse_expr("1.0").canonical()
    assert parse_expr("'1'").canonical() != parse_expr("1").canonical()
    assert parse_expr("a and b or c").canonical() != parse_expr("a and (b or c)").canonical()


# ---------------------------------------------------------------- refused at parse time


@pytest.mark.parametrize(("src", "pos", "words"), [
    ("x.__class__", 2, "'__'"),
    ("profile.__dict__", 8, "'__'"),
    ("__import__('os')", 0, "'__'"),
    ("__builtins__", 0, "'__'"),
    ("open('/etc/passwd')", 0, "unknown function 'open'"),
    ("eval('1')", 0, "unknown function 'eval'"),
    ("getattr(profile, 'x')", 0, "unknown function 'getattr'"),
    ("len(tags).bit_length()", 20, "unexpected '('"),
    ("lambda: 1", 0, "'lambda' is Python"),
    ("lambda x: x", 0, "'lambda' is Python"),
    ("[t for t in tags]", 3, "'for' is Python"),
    ("{t: 1 for t in tags}", 0, "unexpected character '{'"),
    ("import os", 0, "'import' is Python"),
    ("a if b else c", 2, "'if' is Python"),
    ("qty is None", 4, "'is' is Python"),
    ("2 ** 100000", 2, "'**'"),
    ("9 ** 9 ** 9", 2, "'**'"),
    ("'a' * 1000000000", 4, "only multiplies numbers"),
    ("1000000000 * 'ab'", 11, "only multiplies numbers"),
    ("[1] * 100000000", 4, "only multiplies numbers"),
    ("size = 'large'", 5, "use '=='"),
    ("name | upper", 5, "no filters"),
    ("tags[0:1]", 6, "':'"),
    ("1 +", 3, "ends too early"),
    ("", 0, "empty expression"),
    ("len()", 0, "len() takes 1 argument"),
    ("startswith(size)", 0, "takes 2 arguments"),
    ("matches(size, '(')", 14, "not a valid regular expression"),
    ("'unterminated", 0, "unterminated string"),
    ("'bad \\q escape'", 5, "unknown escape"),
    ("size.", 5, "field name"),
    ("(qty", 4, "expected ')'"),
    ("qty qty", 4, "unexpected 'qty'"),
    ("not", 3, "ends too early"),
    ("and", 0, "unexpected keyword 'and'"),
])
def test_refused_with_reason_expression_and_position(src: str, pos: int, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expr(src)
    err = info.value
    assert words in err.reason
    assert err.position == pos
    assert err.expression == src
    text = str(err)
    assert repr(src) in text and f"at position {pos}" in text
    assert text.splitlines()[-1] == "  " + " " * pos + "^"


@pytest.mark.parametrize("src", [
    "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
    "-" * (MAX_DEPTH + 5) + "1",
    "not " * (MAX_DEPTH + 5) + "x",
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    "+".join(["1"] * (MAX_DEPTH + 5)),
    "x" + ".y" * (MAX_DEPTH + 5),
    "len(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1),
])
def test_deep_nesting_is_refused_not_a_recursion_error(src: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expr(src)
    assert "nested more than" in info.value.reason


def test_nesting_within_the_limit_parses_and_evaluates() -> None:
    depth = MAX_DEPTH - 10
    assert ev("(" * depth + "1" + ")" * depth) == 1
    assert ev("+".join(["1"] * depth)) == depth


def test_too_long_is_refused() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        parse_expr("1 + " * (MAX_LENGTH // 4) + "1")


def test_a_slot_named_like_a_python_word_still_works() -> None:
    assert parse_expr("class == 'a' and from").evaluate({"class": "a", "from": "Lisbon"}) == "Lisbon"


# ---------------------------------------------------------------- refused at run time


@pytest.mark.parametrize(("src", "env", "words"), [
    ("size * 3", {"size": "ab"}, "needs a number"),
    ("tags * 1000000", {"tags": [1]}, "needs a number"),
    ("qty / 0", {"qty": 1}, "division by zero"),
    ("qty % 0", {"qty": 1}, "division by zero"),
    ("-size", {"size": "x"}, "needs a number"),
    ("qty < 'a'", {"qty": 1}, "cannot order"),
    ("'a' in qty", {"qty": 1}, "needs a list, text or map"),
    ("size.length", {"size": "abc"}, "cannot read field 'length'"),
    ("unknown + 1", {}, "unknown name 'unknown'"),
    ("int(text)", {"text": "9" * 5000}, "int() failed"),
    ("int(text)", {"text": "abc"}, "int() failed"),
    ("int(text)", {"text": "1e400"}, "int() failed"),
    ("float(text)", {"text": "x"}, "float() failed"),
])
def test_runtime_errors_name_the_expression(src: str, env: dict[str, Any], words: str) -> None:
    e = parse_expr(src)
    with pytest.raises(ExpressionError) as info:
        e.evaluate(env)
    assert words in str(info.value)
    assert repr(src) in str(info.value)


def test_field_access_on_values_never_reaches_python_attributes() -> None:
    # a dict-typed value is read with .get, so names like `items` or `keys` are data, not methods
    assert ev("profile.items", {"profile": {"items": 2}}) == 2
    assert ev("profile.keys", {"profile": {}}) is None
    with pytest.raises(ExpressionError, match="cannot read field"):
        ev("size.upper", {"size": "x"})


def test_the_module_never_calls_eval_exec_or_compile() -> None:
    import flowkit.flow.expr as expr_mod
    import flowkit.flow.template as template_mod

    for mod in (expr_mod, template_mod):
        tree = ast.parse(Path(mod.__file__).read_text())
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not called & {"eval", "exec", "compile", "__import__", "getattr", "setattr"}


def test_whitelist_is_exactly_the_documented_functions() -> None:
    assert set(FUNCTIONS) == {
        "len", "lower", "upper", "trim", "str", "int", "float", "round", "abs", "min", "max", "sum",
        "startswith", "endswith", "contains", "matches", "coalesce", "floor", "ceil",
    }


def test_an_evaluated_expression_still_pickles_and_copies() -> None:
    """Evaluation compiles the expression once into closures kept on it; they must not leak
    into pickles (flows are sent to worker processes) or change equality."""
    import copy
    import pickle

    e = parse_expr("(a or 0) + 2 * b > 3 and name in ['x', 'y']")
    assert e.evaluate({"a": 1, "b": 2, "name": "x"}) is True
    for twin in (pickle.loads(pickle.dumps(e)), copy.deepcopy(e)):
        assert twin == e and hash(twin) == hash(e)
        assert twin.evaluate({"a": None, "b": 1, "name": "y"}) is False
        assert twin.names() == frozenset({"a", "b", "name"})
