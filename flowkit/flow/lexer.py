"""The tokenizer of flow expressions: the one place the expression language uses Python's ``re``.

It reads only what flow authors wrote (an expression's source, at most ``MAX_LENGTH``
characters of flow-file text, once at load time), never a user's answer or a slot value; evaluation
(flowkit/flow/expr/) uses no regular expressions. tests/engine/test_no_re.py holds
this module to that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from flowkit.errors import ExpressionError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|//|\*\*|[<>+\-*/%().,\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    pos: int


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    while i < len(src):
        m = _TOKEN.match(src, i)
        if m is None:
            if src[i] in "'\"":
                raise ExpressionError("unterminated string", src, i)
            if src[i] == "=":
                raise ExpressionError("unexpected '=' (use '==' to compare)", src, i)
            if src[i] == "|":
                raise ExpressionError("unexpected '|' (there are no filters: write upper(name), not name | upper)", src, i)
            raise ExpressionError(f"unexpected character {src[i]!r}", src, i)
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(Tok(kind, m.group(), i))
        i = m.end()
    toks.append(Tok("end", "", len(src.rstrip())))
    return toks


_WORDS = re.compile(r"""'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[A-Za-z_][A-Za-z0-9_]*""")


def source_words(source: str) -> Iterator[tuple[str, int]]:
    """Each quoted string and name in ``source`` with its offset (to explain a parse error)."""
    for m in _WORDS.finditer(source):
        yield m.group(), m.start()
