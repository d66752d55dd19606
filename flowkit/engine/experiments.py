"""Which variant of a ``split`` step a session gets: a pure function of who and where.

The variant is drawn from a keyed hash of (session id, flow name, step name), never from a
random generator or the clock: the engine stays pure, a replayed history takes the same
branches, and a WhatsApp user (the session id) who restarts the flow lands in the same
variant again. BLAKE2b (not Python's ``hash``, which is salted per process) makes that
hold across processes and machines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from flowkit.engine.state import EXPERIMENTS  # the reserved slot {qualified split step: variant}
from flowkit.flow.model import Variant

__all__ = ["EXPERIMENTS", "assign", "bucket", "recorded"]


_BUCKETS = 2**64


def bucket(session_id: str, flow: str, step: str) -> float:
    """A number in [0, 1), uniform over sessions and independent between split steps."""
    key = "\x1f".join((flow, step, session_id)).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(key, digest_size=8, person=b"flowkit-split").digest()
    return int.from_bytes(digest, "big") / _BUCKETS


def assign(session_id: str, flow: str, step: str, variants: Sequence[Variant]) -> Variant:
    """The variant of ``step`` for this session: its bucket mapped onto the cumulative weights."""
    total = sum(v.weight for v in variants)
    point = bucket(session_id, flow, step) * total
    upto = 0
    for v in variants:
        upto += v.weight
        if point < upto:
            return v
    return variants[-1]  # unreachable with bucket < 1; kept for float rounding at the edge


def recorded(slots: Mapping[str, Any]) -> dict[str, str]:
    """The variants a session's slots record (empty when none or malformed)."""
    value = slots.get(EXPERIMENTS)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}
