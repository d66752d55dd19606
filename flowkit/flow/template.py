"""``{{ expression }}`` templates in reply texts, parsed once at load time.

There are no filters: a placeholder holds one expression of the safe language, so
``{{ upper(name) }}`` and ``{{ profile.name or 'there' }}`` work and ``{{ name | upper }}``
is refused at load time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowkit.errors import ExpressionError
from flowkit.flow.bounds import MAX_VALUE_SIZE
from flowkit.flow.expr import Expr, Span, parse_expr


@dataclass(frozen=True)
class Template:
    """Text with ``{{ expr }}`` placeholders; ``parts`` alternate literal text and expressions.

    ``span`` says where the text was written in a flow file, if it came from one.
    """

    source: str
    parts: tuple[str | Expr, ...]
    span: Span | None = field(default=None, compare=False, repr=False)

    def names(self) -> frozenset[str]:
        names = self.__dict__.get("_names")
        if names is None:
            out: set[str] = set()
            for p in self.parts:
                if isinstance(p, Expr):
                    out |= p.names()
            names = frozenset(out)
            object.__setattr__(self, "_names", names)
        return names

    def expressions(self) -> Iterator[tuple[Expr, int]]:
        """Each placeholder's expression with the offset in ``source`` where its text starts."""
        offset = 0
        for p in self.parts:
            if isinstance(p, str):
                offset += len(p)
            else:
                yield p, offset + 2
                offset += len(p.source) + 4

    def name_positions(self) -> dict[str, int]:
        """Each root name the placeholders read, with the offset in ``source`` where it is first read."""
        out: dict[str, int] = {}
        for e, start in self.expressions():
            for name, pos in e.name_positions().items():
                out.setdefault(name, start + pos)
        return out

    def canonical(self) -> str:
        """The text with each placeholder's expression in its canonical spelling."""
        return "".join(p if isinstance(p, str) else "{{" + p.canonical() + "}}" for p in self.parts)

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, env: Mapping[str, Any]) -> str:
        out: list[str] = []
        start = 0
        size = 0  # characters rendered so far: bounded like any value an expression builds
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                start += len(p)
                size += len(p)
                continue
            start += 2  # past "{{"
            try:
                value = p.evaluate(env)
            except ExpressionError as exc:
                raise ExpressionError(exc.reason, self.source, start + exc.position) from None
            if value is None:
                raise ExpressionError(
                    f"{{{{ {p.source.strip()} }}}} has no value; set it before this reply or give a default "
                    f"with `or` (e.g. {{{{ {p.source.strip()} or '...' }}}})",
                    self.source,
                    start + len(p.source) - len(p.source.lstrip()),
                )
            text = format_value(value)
            size += len(text)
            if size > MAX_VALUE_SIZE:
                raise ExpressionError(f"the text would be longer than {MAX_VALUE_SIZE} characters",
                                      self.source, start + len(p.source) - len(p.source.lstrip()))
            out.append(text)
            start += len(p.source) + 2
        return "".join(out)

    def __str__(self) -> str:
        return self.source


def format_value(value: Any) -> str:
    """How a slot value reads inside a message."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, Mapping):
        if "latitude" in value and "longitude" in value:
            return str(value.get("name") or f"{value['latitude']},{value['longitude']}")
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    return str(value)


def _closing(source: str, start: int) -> int:
    """Index of the ``}}`` that closes a placeholder whose text starts at ``start`` (skipping
    ``}}`` inside quoted strings), or -1."""
    quote = None
    j = start
    while j < len(source):
        c = source[j]
        if quote is not None:
            if c == "\\":
                j += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif source.startswith("}}", j):
            return j
        j += 1
    return source.find("}}", start)  # an unterminated string: let the expression parser say so


def parse_template(source: str) -> Template:
    """Parse a text with placeholders; errors carry the position inside the whole text."""
    if not isinstance(source, str):
        raise ExpressionError(f"a text must be a string, got {type(source).__name__}", str(source), 0)
    parts: list[str | Expr] = []
    last = 0
    while True:
        open_at = source.find("{{", last)
        if open_at < 0:
            break
        close_at = _closing(source, open_at + 2)
        if close_at < 0:
            raise ExpressionError("'{{' without a closing '}}'", source, open_at)
        if open_at > last:
            parts.append(source[last:open_at])
        inner = source[open_at + 2 : close_at]
        try:
            parts.append(parse_expr(inner))
        except ExpressionError as exc:
            raise ExpressionError(exc.reason, source, open_at + 2 + exc.position) from None
        last = close_at + 2
    if last < len(source):
        parts.append(source[last:])
    return Template(source, tuple(parts))
