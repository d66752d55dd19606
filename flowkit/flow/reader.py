"""Read YAML or JSON text into located values: every value keeps the line and column it was written at.

This is the part of the loader that knows about PyYAML. It works on PyYAML's node tree
rather than on plain Python values so that every value keeps its place; JSON is read by
the same parser (JSON is YAML), which gives JSON files the same precise errors.

Problems (syntax errors, duplicate keys, alias bombs, nesting too deep) are collected in
``problems`` rather than raised, so the loader can report them together with its own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from flowkit.errors import Problem
from flowkit.flow.expr import Span

MAX_NODES = 50_000  # alias bombs ("billion laughs") stop here
#: The largest flow file read at all, checked before parsing (YAML costs about 2.5 s and
#: hundreds of MB per MB of text). The example flows are about 2 KB; 256 KiB is a flow of
#: a thousand steps.
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 100  # nesting deeper than this is not a flow file (and would exhaust the stack)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so ``options: [yes, no]`` stays text."""


StrictLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Node:
    """A value with the place it was written (1-based line and column).

    ``span`` maps offsets inside a text value to places in the file (for errors inside
    expressions and templates); ``quoted`` says the text was written in quotes.
    """

    value: Any  # scalar, dict[str, tuple[Node, Node]] (key node, value node), or list[Node]
    line: int
    column: int
    quoted: bool = False
    span: Span | None = None

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def plain(self) -> Any:
        if self.is_map:
            return {k: v.plain() for k, (_, v) in self.value.items()}
        if self.is_list:
            return [v.plain() for v in self.value]
        return self.value


def type_name(v: Any) -> str:
    """How a value's type reads in a message ("a mapping", "text", ...)."""
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return "text"


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    def __init__(self, line: int, column: int) -> None:
        self.line = line
        self.column = column


_DQ_ESCAPE_LEN = {"x": 4, "u": 6, "U": 10}


def _scalar_span(node: yaml.ScalarNode, text: str, value: str) -> Span:  # noqa: C901 -- one scanner per YAML scalar style, sharing the position state
    """Where each part of a text scalar's value was written.

    Exact for single-line plain and quoted scalars (escapes included) and for literal
    blocks (``|``); for folded or multi-line flow scalars only the start is known.
    """
    start, end = node.start_mark, node.end_mark
    style = node.style
    line, col = start.line + 1, start.column + 1
    if style in ("'", '"') and start.line == end.line:
        anchors = [(0, line, col + 1)]
        raw_i = start.index + 1  # first character inside the quotes
        k = 0
        while k < len(value) and raw_i < end.index - 1:
            ch = text[raw_i]
            if style == "'" and ch == "'" and text[raw_i + 1 : raw_i + 2] == "'":
                raw_i += 2
            elif style == '"' and ch == "\\":
                raw_i += _DQ_ESCAPE_LEN.get(text[raw_i + 1 : raw_i + 2], 2)
            else:
                raw_i += 1
                k += 1
                continue
            k += 1
            anchors.append((k, line, raw_i - (start.index - start.column) + 1))
        return Span(tuple(anchors))
    if style is None and start.line == end.line:
        return Span(((0, line, col),))
    if style == "|":
        lines = text[start.index : end.index].split("\n")
        body = lines[1:]  # the first line holds the `|` header
        indent = None
        for raw in body:
            if raw.strip():
                indent = len(raw) - len(raw.lstrip(" "))
                break
        if indent is None:
            return Span(((0, line, col),), exact=False)
        anchors = []
        offset = 0
        for i, part in enumerate(value.split("\n")):
            anchors.append((offset, line + 1 + i, indent + 1))
            offset += len(part) + 1
        return Span(tuple(anchors))
    first = col + (1 if style in ("'", '"') else 0)
    if style in ("|", ">"):
        return Span(((0, line + 1, first),), exact=False)
    return Span(((0, line, first),), exact=False)


class Reader:
    """Composes one file's text into :class:`Node` values, collecting problems."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.problems: list[Problem] = []
        self._nodes = 0

    def err(self, line: int, column: int, code: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, column, code, message))

    def read(self) -> Node | None:
        """The root value, or None if the text is not usable (the problems say why)."""
        try:
            loader = StrictLoader(self.text)
        except yaml.YAMLError as exc:  # e.g. a NUL byte: the reader checks characters up front
            self._yaml_error(exc)
            return None
        try:
            try:
                node = loader.get_single_node()
            except RecursionError:
                mark = loader.get_mark()
                self.err(mark.line + 1, mark.column + 1, "too-deep", f"values are nested more than {MAX_DEPTH} levels deep")
                return None
            except yaml.YAMLError as exc:
                self._yaml_error(exc)
                return None
            if node is None:
                self.err(1, 1, "empty-file", "the file is empty; a flow needs at least `flow`, `start` and `steps`")
                return None
            try:
                return self._convert(node, loader, 0)
            except _TooBig:
                self.err(1, 1, "too-big", f"the file expands to more than {MAX_NODES} values (alias bomb?)")
            except _TooDeep as exc:
                self.err(exc.line, exc.column, "too-deep", f"values are nested more than {MAX_DEPTH} levels deep")
            return None
        finally:
            loader.dispose()

    def _yaml_error(self, exc: yaml.YAMLError) -> None:
        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            what = exc.problem or exc.context or "invalid YAML"
            self.err(line, col, "yaml-syntax", f"YAML syntax error: {what}")
        elif isinstance(exc, yaml.reader.ReaderError):
            # position is a character offset into the text
            before = self.text[: exc.position]
            line = before.count("\n") + 1
            col = exc.position - (before.rfind("\n") + 1) + 1
            char = chr(exc.character) if isinstance(exc.character, int) else exc.character
            self.err(line, col, "yaml-syntax", f"YAML syntax error: character {char!r} (code {ord(char)}) is not allowed in a flow file")
        else:  # pragma: no cover - PyYAML raises only the two kinds above
            self.err(1, 1, "yaml-syntax", f"YAML error: {exc}")

    def _convert(self, node: yaml.Node, loader: yaml.SafeLoader, depth: int) -> Node:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooBig
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if depth > MAX_DEPTH:
            raise _TooDeep(line, col)
        if isinstance(node, yaml.MappingNode):
            return Node(self._convert_mapping(node, loader, depth), line, col)
        if isinstance(node, yaml.SequenceNode):
            return Node([self._convert(v, loader, depth + 1) for v in node.value], line, col)
        scalar: Any
        try:
            scalar = loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.err(line, col, "bad-value", f"cannot read value: {exc}")
            scalar = None
        except (ValueError, OverflowError) as exc:  # e.g. a timestamp like 2024-13-45
            self.err(line, col, "bad-value", f"cannot read value {node.value!r}: {exc}")
            scalar = None
        if isinstance(scalar, float) and not math.isfinite(scalar):
            # .nan, .inf, 1e999: no bound, threshold or value of a flow means anything as one
            self.err(line, col, "bad-value", f"{node.value!r} is not a finite number; write the number itself")
            scalar = None
        if not isinstance(scalar, (str, int, float, bool)) and scalar is not None:
            scalar = str(node.value)  # dates and timestamps stay text as written; the model decides what they mean
        span = _scalar_span(node, self.text, scalar) if isinstance(scalar, str) and isinstance(node, yaml.ScalarNode) else None
        return Node(scalar, line, col, quoted=getattr(node, "style", None) in ("'", '"'), span=span)

    def _convert_mapping(self, node: yaml.MappingNode, loader: yaml.SafeLoader,
                         depth: int) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries by key text; merge keys, non-text keys and duplicates are reported and left out."""
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            key = self._convert(knode, loader, depth + 1)
            value = self._convert(vnode, loader, depth + 1)
            if knode.tag == "tag:yaml.org,2002:merge":
                self.err(key.line, key.column, "unsupported", "YAML merge keys (<<) are not supported in flow files; write the keys out")
                continue
            if not isinstance(key.value, str):
                if isinstance(key.value, (int, float, bool)) or key.value is None:
                    key.value = "null" if key.value is None else str(key.value).lower()
                else:
                    self.err(key.line, key.column, "wrong-type", "a mapping key must be text")
                    continue
            if key.value in out:
                first = out[key.value][0]
                self.err(
                    key.line, key.column + (1 if key.quoted else 0), "duplicate-key",
                    f"duplicate key {key.value!r} (first defined at line {first.line})",
                )
                continue
            out[key.value] = (key, value)
        return out
