"""The one shape of a finding about stored or exported history.

The checker (:mod:`flowkit.check`) reports *violations* of its invariants and analysis
(:mod:`flowkit.history.anomalies`) reports *anomalies*; both are a code, a session, the
version concerned (None: the session as a whole) and a sentence, so they are one class
under two names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One finding. ``version`` is None when the finding is about the session as a whole."""

    code: str
    session_id: str
    version: int | None
    detail: str

    def __str__(self) -> str:
        v = f" v{self.version}" if self.version is not None else ""
        return f"{self.code} {self.session_id}{v}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["Finding"]
