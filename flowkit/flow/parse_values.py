"""Reading single values of a flow file: the shapes, scalars, names, durations, expressions
and templates every part of the loader is made of, each problem recorded with its place.

:class:`ValueParser` is the base of the loader's parsers (values -> messages -> steps -> the
flow, flowkit/flow/loader.py): it holds the problems found and says where a node was written.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from typing import Any

from flowkit.errors import ExpressionError, PatternError, Problem
from flowkit.flow.expr import Expr, parse_expr
from flowkit.flow.model import Branch, Loc, parse_duration
from flowkit.flow.patterns import compile_pattern
from flowkit.flow.reader import Node as _N
from flowkit.flow.reader import Reader
from flowkit.flow.reader import type_name as _type_name
from flowkit.flow.template import Template, parse_template

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a service name like ``orders.create`` (a ``call`` step's target)
SERVICE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ValueParser:
    """Turns one flow file's text into located nodes and single values, collecting problems."""

    def __init__(self, text: str, file: str) -> None:
        self.source_text = text
        self.file = file
        self.problems: list[Problem] = []
        self._broken_next: dict[str, tuple[Branch, ...]] = {}

    # -- problems

    def loc(self, n: _N, offset: int = 0) -> Loc:
        """Where ``n`` was written; ``offset`` points inside a text value (exact where the
        file's layout allows, see :class:`~flowkit.flow.expr.Span`)."""
        if n.span is not None:
            line, column = n.span.at(offset)
            return Loc(self.file, line, column)
        return Loc(self.file, n.line, n.column + (1 if n.quoted else 0) + offset)

    def err(self, n: _N | Loc, code: str, message: str) -> None:
        loc = n if isinstance(n, Loc) else self.loc(n)
        self.problems.append(Problem(loc.file, loc.line, loc.column, code, message))

    # -- YAML to located nodes

    def compose(self) -> _N | None:
        reader = Reader(self.source_text, self.file)
        root = reader.read()
        self.problems.extend(reader.problems)
        return root

    # -- shape helpers

    def mapping(self, n: _N, what: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, _N] | None:
        if not n.is_map:
            self.err(n, "wrong-type", f"{what} must be a mapping, got {_type_name(n.value)}")
            return None
        allowed = list(allowed)
        out: dict[str, _N] = {}
        for key, (knode, vnode) in n.value.items():
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                extra = f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(allowed)})"
                self.err(knode, "unknown-key", f"unknown key {key!r} in {what}{extra}")
                continue
            out[key] = vnode
        for key in required:
            if key not in n.value:
                self.err(n, "missing-key", f"{what} needs `{key}`")
        return out

    def text(self, n: _N | None, what: str, allow_number: bool = False) -> str | None:
        if n is None:
            return None
        if isinstance(n.value, str) and n.value.strip():
            return n.value
        if allow_number and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return str(n.value)
        self.err(n, "wrong-type", f"{what} must be non-empty text, got {_type_name(n.value)}")
        return None

    def name(self, n: _N | None, what: str) -> str | None:
        value = self.text(n, what)
        if value is not None and n is not None and not _NAME.match(value):
            self.err(n, "bad-name", f"{what} {value!r} must be letters, digits and _ (starting with a letter)")
            return None
        return value

    def integer(self, n: _N | None, what: str, lo: int | None = None, hi: int | None = None) -> int | None:
        if n is None:
            return None
        v = n.value
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(n, "wrong-type", f"{what} must be a whole number, got {_type_name(v)}")
            return None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.err(n, "bad-value", f"{what} must be {rng}, got {v}")
            return None
        return v

    def number(self, n: _N | None, what: str) -> float | None:
        if n is None:
            return None
        v = n.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.err(n, "wrong-type", f"{what} must be a number, got {_type_name(v)}")
            return None
        return float(v)

    def boolean(self, n: _N | None, what: str) -> bool | None:
        if n is None:
            return None
        if not isinstance(n.value, bool):
            self.err(n, "wrong-type", f"{what} must be true or false, got {_type_name(n.value)}")
            return None
        return n.value

    def duration(self, n: _N | None, what: str) -> float | None:
        if n is None:
            return None
        try:
            return parse_duration(n.value)
        except ValueError as exc:
            self.err(n, "bad-duration", f"{what}: {exc}")
            return None

    def string_list(self, n: _N | None, what: str) -> tuple[str, ...] | None:
        if n is None:
            return None
        if isinstance(n.value, str):
            return (n.value,)
        if not n.is_list:
            self.err(n, "wrong-type", f"{what} must be a list of text, got {_type_name(n.value)}")
            return None
        out: list[str] = []
        for item in n.value:
            s = self.text(item, f"each item of {what}", allow_number=True)
            if s is not None:
                if s in out:
                    self.err(item, "duplicate-value", f"{s!r} appears twice in {what}")
                out.append(s)
        return tuple(out)

    def expr(self, n: _N | None, what: str) -> Expr | None:
        if n is None:
            return None
        source = n.value
        if isinstance(source, bool):
            source = "true" if source else "false"
        elif isinstance(source, (int, float)):
            source = str(source)
        if not isinstance(source, str):
            self.err(n, "wrong-type", f"{what} must be an expression (text), got {_type_name(n.value)}")
            return None
        try:
            return dataclasses.replace(parse_expr(source), span=n.span)
        except ExpressionError as exc:
            self.err(self.loc(n, exc.position), "bad-expression", f"{what}: {exc.reason} in {source!r}")
            return None

    def template(self, n: _N | None, what: str) -> Template | None:
        if n is None:
            return None
        source = n.value
        if isinstance(source, (int, float)) and not isinstance(source, bool):
            source = str(source)
        if not isinstance(source, str):
            self.err(n, "wrong-type", f"{what} must be text, got {_type_name(n.value)}")
            return None
        try:
            return dataclasses.replace(parse_template(source), span=n.span)
        except ExpressionError as exc:
            self.err(self.loc(n, exc.position), "bad-expression", f"{what}: {exc.reason} in {source!r}")
            return Template(source, (source,), span=n.span)  # reported; keep the step so nothing else fails for it

    def choice(self, n: _N | None, what: str, allowed: Iterable[str]) -> str | None:
        value = self.text(n, what)
        allowed = list(allowed)
        if value is None or n is None:
            return None
        if value not in allowed:
            hint = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            self.err(n, "bad-value", f"{what} must be one of {', '.join(allowed)}; got {value!r}{extra}")
            return None
        return value

    def pattern(self, n: _N | None, what: str) -> str | None:
        value = self.text(n, what)
        if value is None or n is None:
            return None
        try:
            compile_pattern(value)
        except PatternError as exc:
            self.err(n, "bad-pattern", f"{what} is not a valid regular expression: {exc}")
            return None
        return value

    def check_range(self, n: _N, what: str, lo: Any, hi: Any, min_len: int | None, max_len: int | None) -> None:
        if lo is not None and hi is not None and lo > hi:
            self.err(n, "bad-range", f"{what}: min ({lo}) is greater than max ({hi})")
        if min_len is not None and max_len is not None and min_len > max_len:
            self.err(n, "bad-range", f"{what}: min_length ({min_len}) is greater than max_length ({max_len})")

    def iso_date(self, n: _N | None, what: str) -> str | None:
        if n is None:
            return None
        if isinstance(n.value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", n.value):
            return n.value
        self.err(n, "wrong-type", f"{what} must be a date written YYYY-MM-DD")
        return None
