"""``{{ expression }}`` templates in reply texts, parsed once at load time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowkit.errors import ExpressionError
from flowkit.flow.expr import Expr, parse_expr

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


@dataclass(frozen=True)
class Template:
    """Text with ``{{ expr }}`` placeholders; ``parts`` alternate literal text and expressions."""

    source: str
    parts: tuple[str | Expr, ...]

    def names(self) -> frozenset[str]:
        out: set[str] = set()
        for p in self.parts:
            if isinstance(p, Expr):
                out |= p.names()
        return frozenset(out)

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, env: Mapping[str, Any]) -> str:
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            value = p.evaluate(env)
            if value is None:
                raise ExpressionError(
                    f"{{{{ {p.source.strip()} }}}} has no value; set it before this reply or give a default "
                    f"with `or` (e.g. {{{{ {p.source.strip()} or '...' }}}})",
                    self.source,
                    self.source.find(p.source),
                )
            out.append(format_value(value))
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


def parse_template(source: str) -> Template:
    """Parse a text with placeholders; errors carry the position inside the whole text."""
    if not isinstance(source, str):
        raise ExpressionError(f"a text must be a string, got {type(source).__name__}", str(source), 0)
    parts: list[str | Expr] = []
    last = 0
    for m in _PLACEHOLDER.finditer(source):
        if m.start() > last:
            parts.append(source[last : m.start()])
        inner = m.group(1)
        try:
            parts.append(parse_expr(inner))
        except ExpressionError as exc:
            raise ExpressionError(exc.reason, source, m.start(1) + exc.position) from None
        last = m.end()
    rest = source[last:]
    if "{{" in rest:
        raise ExpressionError("'{{' without a closing '}}'", source, last + rest.index("{{"))
    if rest:
        parts.append(rest)
    return Template(source, tuple(parts))
