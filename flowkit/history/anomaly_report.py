"""What analysis reports: the anomaly codes, :class:`AnalysisReport` and its summary, and the
helpers every engine shares (staleness judged at which time, hand-off limits, the STUCK text)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flowkit.errors import HistoryError
from flowkit.findings import Finding
from flowkit.flow.model import HELD_STATUSES, format_duration, parse_duration
from flowkit.history.columns import (
    iso,
    to_ms,
)
from flowkit.history.flowset import FlowSet

CODES = ("STUCK", "VERSION_GAP", "VERSION_DUPLICATE", "CHAIN_BREAK", "ILLEGAL_TRANSITION", "UNKNOWN_STEP",
         "DUPLICATE_MESSAGE", "STATE_MISMATCH", "RETRY_LOOP", "AFTER_TERMINAL")
DEFAULT_STUCK_AFTER = 30 * 60.0
DEFAULT_RETRY_THRESHOLD = 5
# The columns the checks read: analysis skips `input` and `error`, the widest ones.
ANALYSIS_COLUMNS = ("session_id", "flow", "flow_version", "version", "ts", "event", "from_step", "to_step", "path",
                    "status", "message_id", "actor")


Anomaly = Finding  # something analysis flags in a history (flowkit/findings.py)


@dataclass(frozen=True)
class AnalysisReport:
    """The anomalies found and a summary (counts per code, what was checked against what)."""

    anomalies: tuple[Anomaly, ...]
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def counts(self) -> dict[str, int]:
        c = Counter(a.code for a in self.anomalies)
        return {code: c.get(code, 0) for code in CODES}

    def to_frame(self) -> pd.DataFrame:
        """The anomalies as a DataFrame (code, session_id, version, detail)."""
        return pd.DataFrame({
            "code": pd.Categorical([a.code for a in self.anomalies], categories=list(CODES)),
            "session_id": pd.array([a.session_id for a in self.anomalies], dtype="str"),
            "version": pd.array([a.version for a in self.anomalies], dtype="Int64"),
            "detail": pd.array([a.detail for a in self.anomalies], dtype="str"),
        })

    def to_dict(self) -> dict[str, Any]:
        return {"summary": dict(self.summary), "anomalies": [a.to_dict() for a in self.anomalies]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)


def duration_seconds(value: float | str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise HistoryError(str(exc)) from None


def held_limits(flows: FlowSet | None) -> dict[str, int]:
    """Flow name -> its hand-off timeout in ms (the longest over its loaded versions).

    A session in ``handoff`` waits for people, not for the bot: it is STUCK only when idle
    past its flow's hand-off timeout plus ``stuck_after`` (the timeout should have returned it
    to the bot). A flow without a hand-off timeout holds it as long as people need, and
    without flows nothing says how long that is: such sessions are never STUCK (the agents'
    queue shows their wait)."""
    out: dict[str, int] = {}
    for f in flows.all() if flows is not None else ():
        if f.handoff is not None:
            out[f.name] = max(out.get(f.name, 0), int(f.handoff.timeout * 1000))
    return out


def held_not_stuck(status: str, flow: Any, idle_ms: int, threshold_ms: int, limits: Mapping[str, int]) -> bool:
    """Is this idle session one held by people within its hand-off timeout (see :func:`held_limits`)?"""
    if status not in HELD_STATUSES:
        return False
    limit = limits.get(str(flow))
    return limit is None or idle_ms <= threshold_ms + limit


def stuck_text(status: str, step: Any, idle_ms: int, as_of_ms: int, stuck_after: float) -> str:
    where = f" at step {step!r}" if isinstance(step, str) else ""
    return (f"{status}{where}, idle for {format_duration(idle_ms / 1000, approx=True)} at {iso(as_of_ms)} "
            f"(threshold {format_duration(stuck_after, approx=True)})")


def resolve_as_of(as_of: Any, exported_at: Any, latest_ms: int | None) -> tuple[int | None, str]:
    if as_of is not None:
        return to_ms(as_of), "as_of"
    if exported_at is not None:
        return to_ms(exported_at), "exported_at"
    if latest_ms is not None:
        return latest_ms, "latest record"
    return None, "none"


def finish_report(found: list[Anomaly], codes: Iterable[str] | None, *, rows: int, sessions: int, snapshot_sessions: int | None,
            fv_pairs: Iterable[tuple[str, str]], as_of_ms: int | None, source: str, stuck_s: float,
            retry_threshold: int, since: Any, partial: bool, graph: bool, unchecked: Mapping[tuple[str, str], int],
            engine: str) -> AnalysisReport:
    """The codes filter and the summary, shared by both engines."""
    if codes is not None:
        wanted = set(codes)
        unknown = wanted - set(CODES)
        if unknown:
            raise HistoryError(f"unknown anomaly code(s) {', '.join(sorted(unknown))}; known: {', '.join(CODES)}")
        found = [a for a in found if a.code in wanted]
    counts = Counter(a.code for a in found)
    flows_seen: dict[str, list[str]] = {}
    for name, version in fv_pairs:
        flows_seen.setdefault(name, []).append(version)
    summary = {
        "rows": int(rows),
        "sessions": int(sessions),
        "snapshot_sessions": snapshot_sessions,
        "flows": {k: sorted(v) for k, v in sorted(flows_seen.items())},
        "as_of": iso(as_of_ms) if as_of_ms is not None else None,
        "as_of_source": source,
        "stuck_after": format_duration(stuck_s, approx=True),
        "retry_threshold": retry_threshold,
        "since": iso(to_ms(since)) if since not in (None, False, True) else (True if since is True else None),
        "partial_history": bool(partial or since not in (None, False)),
        "checks": {"graph": graph, "snapshot": snapshot_sessions is not None},
        "unchecked": [{"flow": f, "flow_version": v, "rows": n} for (f, v), n in sorted(unchecked.items())],
        "counts": {c: counts.get(c, 0) for c in CODES if codes is None or c in set(codes)},
        "anomalies": len(found),
        "sessions_with_anomalies": len({a.session_id for a in found}),
        "engine": engine,
    }
    return AnalysisReport(tuple(found), summary)


def check_codes(codes: Iterable[str] | None) -> set[str]:
    if codes is None:
        return set(CODES)
    wanted = set(codes)
    unknown = wanted - set(CODES)
    if unknown:
        raise HistoryError(f"unknown anomaly code(s) {', '.join(sorted(unknown))}; known: {', '.join(CODES)}")
    return wanted


def report_frame(anomalies: Iterable[Anomaly] | AnalysisReport) -> pd.DataFrame:
    """Anomalies as a DataFrame (code, session_id, version, detail)."""
    if isinstance(anomalies, AnalysisReport):
        return anomalies.to_frame()
    return AnalysisReport(tuple(anomalies)).to_frame()
