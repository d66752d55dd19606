"""A small, safe expression language for conditions, ``set`` and call arguments.

Expressions are parsed once, at load time, into an AST of frozen dataclasses and
evaluated by walking that tree against a plain dict of names. Nothing is ever handed
to Python's ``eval``: a flow file can only compute, never run code.

Grammar (lowest to highest precedence)::

    expr    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := arith (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not in') arith)*
    arith   := term (('+'|'-') term)*
    term    := unary (('*'|'/'|'//'|'%') unary)*
    unary   := '-' unary | postfix
    postfix := primary ('.' NAME | '[' expr ']')*
    primary := NUMBER | STRING | true | false | null | NAME | NAME '(' args ')'
             | '(' expr ')' | '[' items ']'

``and``/``or`` return an operand like Python (so ``profile.name or 'there'`` works as a
default). Comparisons chain (``1 <= qty <= 20``).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowkit.errors import ExpressionError, PatternError
from flowkit.flow import bounds, patterns
from flowkit.flow.lexer import Tok as _Tok
from flowkit.flow.lexer import source_words
from flowkit.flow.lexer import tokenize as _tokenize

# ---------------------------------------------------------------- AST


@dataclass(frozen=True)
class Node:
    pos: int


@dataclass(frozen=True)
class Const(Node):
    value: Any


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Attr(Node):
    target: Node
    attr: str


@dataclass(frozen=True)
class Index(Node):
    target: Node
    index: Node


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Compare(Node):
    first: Node
    ops: tuple[str, ...]
    rest: tuple[Node, ...]


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]


# ---------------------------------------------------------------- functions


_MAX_NUMBER_TEXT = 100  # characters of text that int()/float() read; longer is not a number


def _num(v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        text = str(v).strip()
        if len(text) > _MAX_NUMBER_TEXT:
            raise ValueError(f"a text of {len(text)} characters is not a number")
        f = float(text)
        if not math.isfinite(f):  # float("nan"), float("inf"), float("1e309")
            raise ValueError(f"{text!r} is not a finite number")
        return f
    return v


def _to_int(v: Any) -> int:
    if isinstance(v, str):
        text = v.strip()
        if len(text) > _MAX_NUMBER_TEXT:
            raise ValueError(f"a text of {len(text)} characters is not a whole number")
        head, dot, tail = text.partition(".")
        if dot and head.removeprefix("-").isdecimal() and tail.isdecimal():
            return int(float(text))  # "4.0": through float; whole numbers stay exact
        return int(text)
    return int(v)


def _round(v: Any, digits: Any = 0) -> int | float:
    d = int(digits)
    if not -bounds.MAX_ROUND_DIGITS <= d <= bounds.MAX_ROUND_DIGITS:
        raise ValueError(f"round() keeps {-bounds.MAX_ROUND_DIGITS} to {bounds.MAX_ROUND_DIGITS} digits, not {d}")
    r = round(_num(v), d)
    return int(r) if d == 0 else r


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


# The whole standard library of the language. Each entry is a plain, total function
# on JSON-like values: adding one here is the only way to extend what flows can compute.
FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "len": lambda v: len(v) if v is not None else 0,
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "trim": lambda v: str(v).strip(),
    "str": lambda v: "" if v is None else (("true" if v else "false") if isinstance(v, bool) else str(v)),
    "int": _to_int,
    "float": lambda v: float(_num(v)),
    "round": _round,
    "abs": lambda v: abs(_num(v)),
    "min": lambda *a: min(a[0]) if len(a) == 1 else min(a),
    "max": lambda *a: max(a[0]) if len(a) == 1 else max(a),
    "sum": lambda v: sum(_num(x) for x in v),
    "startswith": lambda s, p: str(s).startswith(str(p)),
    "endswith": lambda s, p: str(s).endswith(str(p)),
    "contains": lambda s, p: (p in s) if isinstance(s, (list, dict)) else str(p) in str(s),
    "matches": lambda s, p: patterns.fullmatch(str(p), str(s)),
    "coalesce": _coalesce,
    "floor": lambda v: math.floor(_num(v)),
    "ceil": lambda v: math.ceil(_num(v)),
}

def _matches_value(s: Any, p: Any) -> bool:
    return patterns.fullmatch_value(str(p), str(s))


# Arity (min, max) per function, checked at parse time so a typo fails at load.
_ARITY: Mapping[str, tuple[int, int]] = {
    "len": (1, 1), "lower": (1, 1), "upper": (1, 1), "trim": (1, 1), "str": (1, 1),
    "int": (1, 1), "float": (1, 1), "round": (1, 2), "abs": (1, 1), "min": (1, 16),
    "max": (1, 16), "sum": (1, 1), "startswith": (2, 2), "endswith": (2, 2),
    "contains": (2, 2), "matches": (2, 2), "coalesce": (1, 16), "floor": (1, 1), "ceil": (1, 1),
}

KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}

# Python words that are not part of the language. They stay usable as slot names; they
# only name what went wrong when an expression does not parse (``lambda x: x``).
PYTHON_ONLY = (
    "lambda", "import", "from", "for", "if", "else", "elif", "is", "def", "class", "yield", "await", "async",
    "while", "with", "del", "global", "nonlocal", "assert", "raise", "try", "except", "finally", "return",
)

MAX_LENGTH = 2000  # characters in one expression
MAX_DEPTH = 50  # nesting of the tree (parentheses, operators, fields); deeper would exhaust the stack

# ---------------------------------------------------------------- tokenizer

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


def _unquote(text: str, src: str, pos: int) -> str:
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise ExpressionError(f"unknown escape \\{nxt}", src, pos + 1 + i)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokenize(src)
        self.i = 0
        self.depth = 0

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(f"expression nested more than {MAX_DEPTH} levels deep")

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def _error(self, msg: str, tok: _Tok | None = None) -> ExpressionError:
        return ExpressionError(msg, self.src, (tok or self.tok).pos)

    def _is(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def _take(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def _expect(self, kind: str, text: str) -> _Tok:
        if not self._is(kind, text):
            found = self.tok.text or "end of expression"
            raise self._error(f"expected {text!r} but found {found!r}")
        return self._take()

    def parse(self) -> Node:
        if self._is("end"):
            raise self._error("empty expression")
        node = self._or()
        if not self._is("end"):
            raise self._error(f"unexpected {self.tok.text!r}")
        return node

    def _or(self) -> Node:
        first = self._and()
        items = [first]
        while self._is("name", "or"):
            self._take()
            items.append(self._and())
        return first if len(items) == 1 else BoolOp(first.pos, "or", tuple(items))

    def _and(self) -> Node:
        first = self._not()
        items = [first]
        while self._is("name", "and"):
            self._take()
            items.append(self._not())
        return first if len(items) == 1 else BoolOp(first.pos, "and", tuple(items))

    def _not(self) -> Node:
        if self._is("name", "not"):
            t = self._take()
            self._enter()
            node = Unary(t.pos, "not", self._not())
            self.depth -= 1
            return node
        return self._compare()

    def _compare(self) -> Node:
        first = self._arith()
        ops: list[str] = []
        rest: list[Node] = []
        while True:
            t = self.tok
            if t.kind == "op" and t.text in ("==", "!=", "<", "<=", ">", ">="):
                op = self._take().text
            elif self._is("name", "in"):
                self._take()
                op = "in"
            elif self._is("name", "not") and self.toks[self.i + 1].kind == "name" and self.toks[self.i + 1].text == "in":
                self.i += 2
                op = "not in"
            else:
                break
            ops.append(op)
            rest.append(self._arith())
        if not ops:
            return first
        return Compare(first.pos, first, tuple(ops), tuple(rest))

    def _arith(self) -> Node:
        node = self._term()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self._take()
            node = BinOp(op.pos, op.text, node, self._term())
        return node

    def _term(self) -> Node:
        node = self._unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "//", "%", "**"):
            if self.tok.text == "**":
                raise self._error("'**' (power) is not allowed: it can build numbers too big to compute; multiply instead")
            op = self._take()
            right = self._unary()
            if op.text == "*":
                for side in (node, right):
                    if isinstance(side, ListExpr) or (isinstance(side, Const) and isinstance(side.value, str)):
                        raise ExpressionError("'*' only multiplies numbers (no repeating text or lists)", self.src, op.pos)
            node = BinOp(op.pos, op.text, node, right)
        return node

    def _unary(self) -> Node:
        self._enter()
        if self._is("op", "-"):
            t = self._take()
            node: Node = Unary(t.pos, "-", self._unary())
        else:
            node = self._postfix()
        self.depth -= 1
        return node

    def _postfix(self) -> Node:
        node = self._primary()
        while True:
            if self._is("op", "."):
                self._take()
                if self.tok.kind != "name":
                    raise self._error("expected a field name after '.'")
                t = self._take()
                if t.text.startswith("__"):
                    raise ExpressionError(f"field {t.text!r}: names starting with '__' are not allowed", self.src, t.pos)
                node = Attr(t.pos, node, t.text)
            elif self._is("op", "["):
                t = self._take()
                idx = self._or()
                self._expect("op", "]")
                node = Index(t.pos, node, idx)
            else:
                return node

    def _primary(self) -> Node:
        t = self.tok
        if t.kind == "number":
            self._take()
            value = float(t.text) if any(c in t.text for c in ".eE") else int(t.text)
            why = bounds.number_problem(value)
            if why is not None:
                raise ExpressionError(f"the number {t.text} is out of range ({why})", self.src, t.pos)
            return Const(t.pos, value)
        if t.kind == "string":
            self._take()
            return Const(t.pos, _unquote(t.text, self.src, t.pos))
        if t.kind == "name":
            self._take()
            if t.text in ("true", "True"):
                return Const(t.pos, True)
            if t.text in ("false", "False"):
                return Const(t.pos, False)
            if t.text in ("null", "None"):
                return Const(t.pos, None)
            if t.text in KEYWORDS:
                raise ExpressionError(f"unexpected keyword {t.text!r}", self.src, t.pos)
            if t.text.startswith("__"):
                raise ExpressionError(f"name {t.text!r}: names starting with '__' are not allowed", self.src, t.pos)
            if self._is("op", "("):
                return self._call(t)
            return Name(t.pos, t.text)
        if self._is("op", "("):
            self._take()
            node = self._or()
            self._expect("op", ")")
            return node
        if self._is("op", "["):
            self._take()
            items: list[Node] = []
            if not self._is("op", "]"):
                items.append(self._or())
                while self._is("op", ","):
                    self._take()
                    items.append(self._or())
            self._expect("op", "]")
            return ListExpr(t.pos, tuple(items))
        if t.kind == "end":
            raise self._error("expression ends too early")
        raise self._error(f"unexpected {t.text!r}")

    def _call(self, name: _Tok) -> Node:
        if name.text not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"unknown function {name.text!r} (available: {known})", self.src, name.pos)
        self._expect("op", "(")
        args: list[Node] = []
        if not self._is("op", ")"):
            args.append(self._or())
            while self._is("op", ","):
                self._take()
                args.append(self._or())
        self._expect("op", ")")
        lo, hi = _ARITY[name.text]
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ExpressionError(
                f"{name.text}() takes {want} argument{'s' if hi != 1 else ''}, got {len(args)}", self.src, name.pos
            )
        if name.text == "matches" and isinstance(args[1], Const) and isinstance(args[1].value, str):
            try:
                patterns.compile_pattern(args[1].value)
            except PatternError as exc:
                raise ExpressionError(f"matches(): {args[1].value!r} is not a valid regular expression ({exc})", self.src, args[1].pos) from None
        return Call(name.pos, name.text, tuple(args))


# ---------------------------------------------------------------- public API


@dataclass(frozen=True)
class Span:
    """Where a text (an expression or template) was written, to turn offsets into places.

    ``anchors`` are ``(offset in the text, line, column)``, ascending: the character at
    ``offset`` was written at ``line:column`` and the characters after it follow on the
    same line. ``exact`` is False when only the start of the text is known (folded YAML).
    """

    anchors: tuple[tuple[int, int, int], ...]
    exact: bool = True

    def at(self, offset: int) -> tuple[int, int]:
        """(line, column) of the character at ``offset``."""
        start, line, column = self.anchors[0]
        if not self.exact:
            return line, column
        for a in self.anchors:
            if a[0] > offset:
                break
            start, line, column = a
        return line, column + max(0, offset - start)


@dataclass(frozen=True)
class Expr:
    """A parsed expression: its source text and its AST (``span``: where it was written, if known)."""

    source: str
    tree: Node
    span: Span | None = field(default=None, compare=False, repr=False)

    def names(self) -> frozenset[str]:
        """Root names the expression reads (slots, ``profile``, ...)."""
        # memoised: the engine builds each evaluation's environment from these names only
        names = self.__dict__.get("_names")
        if names is None:
            names = frozenset(_names(self.tree))
            object.__setattr__(self, "_names", names)
        return names

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_run"}  # a closure does not pickle

    def canonical(self) -> str:
        """The expression in one normal spelling (fully parenthesised, no extra spaces, one
        quote style): equal for ``size=='large'`` and ``size == "large"``, different whenever
        the trees differ. Content hashes use it, so reformatting is not a new flow version."""
        return _canonical(self.tree)

    def name_positions(self) -> dict[str, int]:
        """Each root name the expression reads, with the offset where it is first read."""
        out: dict[str, int] = {}
        for name, pos in sorted(_name_nodes(self.tree), key=lambda x: x[1]):
            out.setdefault(name, pos)
        return out

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        run = self.__dict__.get("_run")
        if run is None:
            run = _compile(self.tree, self.source)
            object.__setattr__(self, "_run", run)
        try:
            result = run(env)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
            raise ExpressionError(f"cannot evaluate: {exc}", self.source, 0) from None
        # Values computed here were bounded where they were made; what comes straight from the
        # session (a service's big result, a long id) passes as it is, except a non-finite number.
        if result.__class__ is float and result - result != 0:  # NaN and infinities give NaN
            raise ExpressionError(f"the result is {result} (not a finite number)", self.source, 0)
        return result

    def __str__(self) -> str:
        return self.source


def parse_expr(source: str) -> Expr:
    """Parse ``source`` into an :class:`Expr`; raise :class:`ExpressionError` with a position."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, got {type(source).__name__}", str(source), 0)
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", source[:60] + "...", 0)
    try:
        tree = _Parser(source).parse()
    except ExpressionError as exc:
        word = _python_word(source, exc.position)
        if word is None:
            raise
        name, pos = word
        raise ExpressionError(
            f"{name!r} is Python, not part of flow expressions (no lambda, import, comprehensions or if/else; "
            "use and/or, and a branch in `next`)", source, pos,
        ) from None
    deep = _too_deep(tree)
    if deep is not None:
        raise ExpressionError(f"expression nested more than {MAX_DEPTH} levels deep", source, deep.pos)
    return Expr(source, tree)


def _python_word(source: str, limit: int) -> tuple[str, int] | None:
    """The Python-only word (outside strings) that explains a parse error at ``limit``:
    the word at the error, or the expression's first word (``lambda x: x``, ``import os``)."""
    words = [(w, pos) for w, pos in source_words(source) if pos <= limit]
    for word, pos in words:
        if word in PYTHON_ONLY and (pos == limit or pos == len(source) - len(source.lstrip())):
            return word, pos
    return None


def _children(node: Node) -> tuple[Node, ...]:
    match node:
        case Attr(target=t) | Unary(operand=t):
            return (t,)
        case Index(target=t, index=i):
            return (t, i)
        case ListExpr(items=items) | BoolOp(operands=items) | Call(args=items):
            return items
        case BinOp(left=a, right=b):
            return (a, b)
        case Compare(first=f, rest=r):
            return (f, *r)
    return ()


def _too_deep(tree: Node) -> Node | None:
    """A node deeper than MAX_DEPTH (left-leaning chains like ``1+1+...+1`` included), without recursion."""
    todo = [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            return node
        todo.extend((c, depth + 1) for c in _children(node))
    return None


def _names(node: Node) -> set[str]:
    match node:
        case Name(name=n):
            return {n}
        case Attr(target=t):
            return _names(t)
        case Index(target=t, index=i):
            return _names(t) | _names(i)
        case ListExpr(items=items) | BoolOp(operands=items) | Call(args=items):
            return set().union(*(_names(x) for x in items)) if items else set()
        case Unary(operand=o):
            return _names(o)
        case BinOp(left=a, right=b):
            return _names(a) | _names(b)
        case Compare(first=f, rest=r):
            return _names(f).union(*(_names(x) for x in r))
    return set()


def _canonical(node: Node) -> str:
    match node:
        case Const(value=v):
            if v is None or isinstance(v, (bool, str)):
                return json.dumps(v, ensure_ascii=False)
            return repr(v)
        case Name(name=n):
            return n
        case Attr(target=t, attr=a):
            return f"{_canonical(t)}.{a}"
        case Index(target=t, index=i):
            return f"{_canonical(t)}[{_canonical(i)}]"
        case ListExpr(items=items):
            return "[" + ",".join(_canonical(x) for x in items) + "]"
        case Unary(op=op, operand=o):
            return f"({op} {_canonical(o)})"
        case BinOp(op=op, left=a, right=b):
            return f"({_canonical(a)} {op} {_canonical(b)})"
        case BoolOp(op=op, operands=items):
            return "(" + f" {op} ".join(_canonical(x) for x in items) + ")"
        case Compare(first=f, ops=ops, rest=rest):
            return "(" + _canonical(f) + "".join(f" {op} {_canonical(r)}" for op, r in zip(ops, rest, strict=True)) + ")"
        case Call(func=fn, args=args):
            return f"{fn}(" + ",".join(_canonical(x) for x in args) + ")"
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def _name_nodes(node: Node) -> list[tuple[str, int]]:
    match node:
        case Name(name=n):
            return [(n, node.pos)]
        case Attr(target=t):
            return _name_nodes(t)
        case Index(target=t, index=i):
            return _name_nodes(t) + _name_nodes(i)
        case ListExpr(items=items) | BoolOp(operands=items) | Call(args=items):
            return [x for item in items for x in _name_nodes(item)]
        case Unary(operand=o):
            return _name_nodes(o)
        case BinOp(left=a, right=b):
            return _name_nodes(a) + _name_nodes(b)
        case Compare(first=f, rest=r):
            return _name_nodes(f) + [x for item in r for x in _name_nodes(item)]
    return []


Compiled = Callable[[Mapping[str, Any]], Any]


def _compile(node: Node, src: str) -> Compiled:
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
            base_of = _compile(t, src)

            def attr(env: Mapping[str, Any]) -> Any:
                base = base_of(env)
                if isinstance(base, Mapping):
                    return base.get(a)
                if base is None:
                    return None
                raise ExpressionError(f"cannot read field {a!r} of a {type(base).__name__}", src, pos)
            return attr
        case Index(target=t, index=i):
            base_of, key_of = _compile(t, src), _compile(i, src)

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
            fs = tuple(_compile(x, src) for x in items)

            def list_(env: Mapping[str, Any]) -> Any:
                return _bounded([f(env) for f in fs], src, pos)
            return list_
        case Unary(op="not", operand=o):
            f = _compile(o, src)
            return lambda env: not f(env)
        case Unary(op="-", operand=o):
            f = _compile(o, src)

            def neg(env: Mapping[str, Any]) -> Any:
                v = f(env)
                _need_number(v, "-", src, pos)
                return -v
            return neg
        case BoolOp(op="and", operands=items):
            fs = tuple(_compile(x, src) for x in items)

            def and_(env: Mapping[str, Any]) -> Any:
                result: Any = True
                for f in fs:
                    result = f(env)
                    if not result:
                        return result
                return result
            return and_
        case BoolOp(op="or", operands=items):
            fs = tuple(_compile(x, src) for x in items)

            def or_(env: Mapping[str, Any]) -> Any:
                result: Any = False
                for f in fs:
                    result = f(env)
                    if result:
                        return result
                return result
            return or_
        case BinOp(op=op, left=a, right=b):
            fa, fb = _compile(a, src), _compile(b, src)
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
            first = _compile(f, src)
            pairs = tuple((op, _compile(r, src)) for op, r in zip(ops, rest, strict=True))

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
            fs = tuple(_compile(x, src) for x in args)
            func = FUNCTIONS[fn]
            if fn == "matches" and not isinstance(args[1], Const):  # the pattern may be a user's text
                func = _matches_value

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
