"""Text to tree: the recursive-descent parser over the lexer's tokens, with located
errors and the bounds on length and depth."""

from __future__ import annotations

from flowkit.errors import ExpressionError, PatternError
from flowkit.flow import bounds, patterns
from flowkit.flow.expr.functions import ARITY, FUNCTIONS
from flowkit.flow.expr.nodes import (
    MAX_DEPTH,
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
    too_deep,
)
from flowkit.flow.lexer import Tok as _Tok
from flowkit.flow.lexer import source_words
from flowkit.flow.lexer import tokenize as _tokenize

KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}

# Python words that are not part of the language. They stay usable as slot names; they
# only name what went wrong when an expression does not parse (``lambda x: x``).
PYTHON_ONLY = (
    "lambda", "import", "from", "for", "if", "else", "elif", "is", "def", "class", "yield", "await", "async",
    "while", "with", "del", "global", "nonlocal", "assert", "raise", "try", "except", "finally", "return",
)

MAX_LENGTH = 2000  # characters in one expression

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

    def _primary(self) -> Node:  # noqa: C901 -- one branch per token that can start an operand: the parser's dispatch
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
        lo, hi = ARITY[name.text]
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


def parse_tree(source: str) -> Node:
    """Parse ``source`` into its tree; raise :class:`ExpressionError` with a position."""
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
    deep = too_deep(tree)
    if deep is not None:
        raise ExpressionError(f"expression nested more than {MAX_DEPTH} levels deep", source, deep.pos)
    return tree


def _python_word(source: str, limit: int) -> tuple[str, int] | None:
    """The Python-only word (outside strings) that explains a parse error at ``limit``:
    the word at the error, or the expression's first word (``lambda x: x``, ``import os``)."""
    words = [(w, pos) for w, pos in source_words(source) if pos <= limit]
    for word, pos in words:
        if word in PYTHON_ONLY and (pos == limit or pos == len(source) - len(source.lstrip())):
            return word, pos
    return None
