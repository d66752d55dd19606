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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowkit.errors import ExpressionError
from flowkit.flow.expr.compiler import Compiled, compile_node
from flowkit.flow.expr.functions import FUNCTIONS
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
    canonical,
    name_nodes,
)
from flowkit.flow.expr.nodes import names as tree_names
from flowkit.flow.expr.parser import KEYWORDS, MAX_LENGTH, PYTHON_ONLY, parse_tree


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
            names = frozenset(tree_names(self.tree))
            object.__setattr__(self, "_names", names)
        return names

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_run"}  # a closure does not pickle

    def canonical(self) -> str:
        """The expression in one normal spelling (fully parenthesised, no extra spaces, one
        quote style): equal for ``size=='large'`` and ``size == "large"``, different whenever
        the trees differ. Content hashes use it, so reformatting is not a new flow version."""
        return canonical(self.tree)

    def name_positions(self) -> dict[str, int]:
        """Each root name the expression reads, with the offset where it is first read."""
        out: dict[str, int] = {}
        for name, pos in sorted(name_nodes(self.tree), key=lambda x: x[1]):
            out.setdefault(name, pos)
        return out

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        run = self.__dict__.get("_run")
        if run is None:
            run = compile_node(self.tree, self.source)
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
    return Expr(source, parse_tree(source))


__all__ = [
    "FUNCTIONS", "KEYWORDS", "MAX_DEPTH", "MAX_LENGTH", "PYTHON_ONLY", "Attr", "BinOp", "BoolOp", "Call", "Compare",
    "Compiled", "Const", "Expr", "ExpressionError", "Index", "ListExpr", "Name", "Node", "Span", "Unary", "parse_expr",
]
