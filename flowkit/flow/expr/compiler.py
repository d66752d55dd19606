"""Tree to closure: each node becomes a Python function over its children's functions
(no eval/exec), with the value bounds checked where values are made."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from flowkit.errors import ExpressionError
from flowkit.flow import bounds
from flowkit.flow.expr.functions import FUNCTIONS, matches_value
from flowkit.flow.expr.nodes import (
    Attr,
    BinOp,
    BoolOp,
    Call,
    Compare,
    Const,
    Index,
    ListExpr,
    Name,
    Node,
    Unary,
)

Compiled = Callable[[Mapping[str, Any]], Any]


def compile_node(node: Node, src: str) -> Compiled:  # noqa: C901 -- one case per expression node type: the compiler's dispatch table
    """``node`` as a Python closure over its children's closures (no eval/exec: the flow file
    only chooses which of these fixed functions are nested). Built once per expression, it
    evaluates several times faster than walking the tree, with the same results and errors."""
    pos = node.pos
    match node:
        case Const(value=v):
            return lambda env: v
        case Name(name=n):
            def name(env: Mapping[str, Any]) -> Any:
                if n not in env:
                    raise ExpressionError(f"unknown name {n!r}", src, pos)
                return env[n]
            return name
        case Attr(target=t, attr=a):
            base_of = compile_node(t, src)

            def attr(env: Mapping[str, Any]) -> Any:
                base = base_of(env)
                if isinstance(base, Mapping):
                    return base.get(a)
                if base is None:
                    return None
                raise ExpressionError(f"cannot read field {a!r} of a {type(base).__name__}", src, pos)
            return attr
        case Index(target=t, index=i):
            base_of, key_of = compile_node(t, src), compile_node(i, src)

            def index(env: Mapping[str, Any]) -> Any:
                base = base_of(env)
                key = key_of(env)
                if isinstance(base, Mapping):
                    return base.get(key)
                if isinstance(base, (list, str)) and isinstance(key, int) and not isinstance(key, bool):
                    return base[key] if -len(base) <= key < len(base) else None
                if base is None:
                    return None
                raise ExpressionError(f"cannot index a {type(base).__name__} with {key!r}", src, pos)
            return index
        case ListExpr(items=items):
            fs = tuple(compile_node(x, src) for x in items)

            def list_(env: Mapping[str, Any]) -> Any:
                return _bounded([f(env) for f in fs], src, pos)
            return list_
        case Unary(op="not", operand=o):
            f = compile_node(o, src)
            return lambda env: not f(env)
        case Unary(op="-", operand=o):
            f = compile_node(o, src)

            def neg(env: Mapping[str, Any]) -> Any:
                v = f(env)
                _need_number(v, "-", src, pos)
                return -v
            return neg
        case BoolOp(op="and", operands=items):
            fs = tuple(compile_node(x, src) for x in items)

            def and_(env: Mapping[str, Any]) -> Any:
                result: Any = True
                for f in fs:
                    result = f(env)
                    if not result:
                        return result
                return result
            return and_
        case BoolOp(op="or", operands=items):
            fs = tuple(compile_node(x, src) for x in items)

            def or_(env: Mapping[str, Any]) -> Any:
                result: Any = False
                for f in fs:
                    result = f(env)
                    if result:
                        return result
                return result
            return or_
        case BinOp(op=op, left=a, right=b):
            fa, fb = compile_node(a, src), compile_node(b, src)
            if op in ("+", "-", "*"):
                plain = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]

                def arith(env: Mapping[str, Any]) -> Any:
                    x, y = fa(env), fb(env)
                    if type(x) in _NUMBERS and type(y) in _NUMBERS:  # what _binop would do, minus its checks
                        r = plain(x, y)
                        if (r - r != 0) if r.__class__ is float else not -_MAX_INT < r < _MAX_INT:  # nan/inf, huge
                            _bounded(r, src, pos)
                        return r
                    return _binop(op, x, y, src, pos)
                return arith
            return lambda env: _binop(op, fa(env), fb(env), src, pos)
        case Compare(first=f, ops=ops, rest=rest):
            first = compile_node(f, src)
            pairs = tuple((op, compile_node(r, src)) for op, r in zip(ops, rest, strict=True))

            def compare(env: Mapping[str, Any]) -> bool:
                left = first(env)
                for op, right_of in pairs:
                    right = right_of(env)
                    if not _compare(op, left, right, src, pos):
                        return False
                    left = right
                return True
            return compare
        case Call(func=fn, args=args):
            fs = tuple(compile_node(x, src) for x in args)
            func = FUNCTIONS[fn]
            if fn == "matches" and not isinstance(args[1], Const):  # the pattern may be a user's text
                func = matches_value

            def call(env: Mapping[str, Any]) -> Any:
                values = [f(env) for f in fs]
                try:
                    result = func(*values)
                except (TypeError, ValueError, AttributeError, OverflowError) as exc:
                    raise ExpressionError(f"{fn}() failed: {exc}", src, pos) from None
                if result.__class__ is bool or result is None or any(result is v for v in values):
                    return result  # nothing new was made (coalesce, min and max pick an argument)
                return _bounded(result, src, pos)
            return call

    def unsupported(env: Mapping[str, Any]) -> Any:  # pragma: no cover - the parser builds no other node
        raise ExpressionError(f"unsupported node {type(node).__name__}", src, pos)
    return unsupported


_NUMBERS = (int, float)  # exact types: bool is an int subclass, and not a number here
_MAX_INT = bounds.MAX_INT


def _bounded(value: Any, src: str, pos: int) -> Any:
    """``value`` if it is within the bounds of flowkit/flow/bounds.py, else the located error."""
    if value.__class__ is str:
        if len(value) <= bounds.MAX_VALUE_SIZE:
            return value
        raise ExpressionError(f"the text would be {len(value)} characters long (at most {bounds.MAX_VALUE_SIZE})",
                              src, pos)
    why = bounds.size_problem(value)
    if why is None:
        return value
    raise ExpressionError(why, src, pos)


def _need_number(v: Any, op: str, src: str, pos: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        what = "no value" if v is None else f"a {type(v).__name__} ({v!r})"
        raise ExpressionError(f"'{op}' needs a number but got {what}", src, pos)


def _binop(op: str, a: Any, b: Any, src: str, pos: int) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > bounds.MAX_VALUE_SIZE:  # checked before the text is built
            raise ExpressionError(f"the text would be {len(a) + len(b)} characters long (at most {bounds.MAX_VALUE_SIZE})", src, pos)
        return a + b
    if op == "+" and isinstance(a, list) and isinstance(b, list):
        if len(a) + len(b) > bounds.MAX_VALUE_SIZE:
            raise ExpressionError(f"the list would have {len(a) + len(b)} items (at most {bounds.MAX_VALUE_SIZE})", src, pos)
        return _bounded(a + b, src, pos)
    _need_number(a, op, src, pos)
    _need_number(b, op, src, pos)
    if op in ("/", "//", "%") and b == 0:
        raise ExpressionError("division by zero", src, pos)
    try:
        return _bounded(_arith(op, a, b, src, pos), src, pos)
    except OverflowError:  # int / int beyond float range
        raise ExpressionError("the result is too large for a number", src, pos) from None


def _arith(op: str, a: Any, b: Any, src: str, pos: int) -> Any:
    match op:
        case "+":
            return a + b
        case "-":
            return a - b
        case "*":
            return a * b
        case "/":
            return a / b
        case "//":
            return a // b
        case "%":
            return a % b
    raise ExpressionError(f"unknown operator {op!r}", src, pos)  # pragma: no cover


def _compare(op: str, a: Any, b: Any, src: str, pos: int) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op in ("in", "not in"):
        if b is None:
            found = False
        elif isinstance(b, str):
            found = a is not None and str(a) in b
        elif isinstance(b, (list, Mapping)):
            found = a in b
        else:
            raise ExpressionError(f"'{op}' needs a list, text or map on the right, got {type(b).__name__}", src, pos)
        return found if op == "in" else not found
    # Ordering: None never orders (False), numbers with numbers, text with text.
    if a is None or b is None:
        return False
    num_a = isinstance(a, (int, float)) and not isinstance(a, bool)
    num_b = isinstance(b, (int, float)) and not isinstance(b, bool)
    if not ((num_a and num_b) or (isinstance(a, str) and isinstance(b, str))):
        raise ExpressionError(f"cannot order {type(a).__name__} and {type(b).__name__} with '{op}'", src, pos)
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
