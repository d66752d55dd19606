"""The version rules of a session's history, written once.

Every commit adds exactly one record with the next version, so a session's versions are
1..N with nothing missing and nothing twice. The checker (:mod:`flowkit.check`, on the
store or an export) and every analysis engine (:mod:`flowkit.history.anomalies` on pandas,
DuckDB or Dask) judge by these functions and word their findings with them, so the same
history gives the same ``VERSION_GAP`` and ``VERSION_DUPLICATE`` everywhere.
"""

from __future__ import annotations


def version_gap(prev: int | None, version: int, *, partial: bool = False) -> tuple[int, str] | None:
    """The gap before ``version`` when the previous record had ``prev`` (None: ``version`` is
    the session's first record): (first missing version, what is missing), or None.

    ``partial``: the history may start after version 1 (an export ``--since``), so a first
    record above 1 is not a gap."""
    if prev is None:
        if version <= 1 or partial:
            return None
        hi = version - 1
        what = "version 1 is missing" if hi == 1 else f"versions 1-{hi} are missing"
        return 1, f"{what} (history starts at version {version})"
    if version <= prev + 1:
        return None
    lo, hi = prev + 1, version - 1
    what = f"version {lo} is missing" if lo == hi else f"versions {lo}-{hi} are missing"
    return lo, f"{what} (history goes from {prev} to {version})"


def duplicate_text(version: int, count: int) -> str:
    """The finding for ``count`` records that carry one ``version``."""
    return f"{count} records carry version {version} (a lost or doubled update)"


__all__ = ["duplicate_text", "version_gap"]
