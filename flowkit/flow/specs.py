"""What a slot holds and what an ``ask`` step accepts: :class:`SlotSpec` and :class:`InputSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowkit.flow.location import Loc, loc_field


@dataclass(frozen=True, kw_only=True)
class SlotSpec:
    """One slot of the session state, validated on every commit."""

    name: str
    type: str = "any"
    options: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    sensitive: bool = False
    loc: Loc = loc_field()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for key in ("options", "min", "max", "min_length", "max_length", "pattern"):
            v = getattr(self, key)
            if v is not None:
                d[key] = list(v) if key == "options" else _num_out(v)
        if self.sensitive:
            d["sensitive"] = True
        return d


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What an ``ask`` step accepts. ``min``/``max`` bound numbers (or ISO dates for ``date``)."""

    type: str
    options: tuple[str, ...] | None = None
    min: float | str | None = None
    max: float | str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    media: tuple[str, ...] | None = None
    loc: Loc = loc_field()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for key in ("options", "min", "max", "min_length", "max_length", "pattern", "media"):
            v = getattr(self, key)
            if v is not None:
                d[key] = list(v) if isinstance(v, tuple) else _num_out(v)
        return d


def _num_out(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v
