"""Where something was written in a flow file (:class:`Loc`), for every error that points at it.

Models compare by content, so their ``loc`` fields are made with :func:`loc_field`
(excluded from ``==`` and ``repr``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Loc:
    """Where something was written: 1-based line and column in ``file``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NOWHERE = Loc("<memory>", 0, 0)


def loc_field() -> Any:
    """A dataclass field for a :class:`Loc`: ``NOWHERE`` by default, not compared, not shown."""
    return field(default=NOWHERE, compare=False, repr=False)
