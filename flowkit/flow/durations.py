"""Durations as flow files write them (``30m``, ``1h30m``, ``500ms``) and back."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_DURATION_S = 366 * 86400  # the longest timeout a flow may set


def parse_duration(value: object) -> float:
    """``"30m"``, ``"1h30m"``, ``"10s"``, ``"500ms"``, ``"2d"`` or a number of seconds -> seconds.

    Raises ``ValueError`` with a message meant for the user.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: use a number of seconds or text like 30s, 10m, 1h30m, 2d")
    if isinstance(value, (int, float)):
        if not value > 0:  # (NaN is not > 0 either)
            raise ValueError(f"duration must be positive, got {value}")
        return _bounded(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: use text like 30s, 10m, 1h30m, 2d")
    text = value.strip().replace(" ", "")
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {value!r}: use text like 30s, 10m, 1h30m, 2d (units ms, s, m, h, d)")
    if total <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return _bounded(total, value)


def _bounded(seconds: float, value: object) -> float:
    # Deadlines are integer milliseconds from now: 1e308 s would overflow them (and no
    # conversation waits a year for an answer).
    if not seconds <= MAX_DURATION_S:
        raise ValueError(f"duration {value!r} is too long: at most {MAX_DURATION_S // 86400} days")
    return seconds


def _approx_duration(seconds: float) -> str:
    d, s = divmod(int(seconds), 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if h:
        parts.append(f"{h}h")
    if m and not d:
        parts.append(f"{m}m")
    return "".join(parts) or f"{s}s"


def format_duration(seconds: float, *, approx: bool = False) -> str:
    """The canonical text of a duration (``1800`` -> ``"30m"``); ``approx``: for people, the
    two largest units that matter (``93784`` -> ``"1d2h"``, ``3725`` -> ``"1h2m"``)."""
    if approx:
        return _approx_duration(seconds)
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    return "".join(out)
