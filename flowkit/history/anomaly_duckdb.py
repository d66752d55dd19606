"""The anomaly checks of :class:`~flowkit.history.anomaly_pandas.Finder` on DuckDB: the rows the
SQL of :mod:`flowkit.history.duck` returns, worded as the same findings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flowkit.history.anomaly_report import (
    CODES,
    AnalysisReport,
    Anomaly,
    check_codes,
    finish_report,
    held_limits,
    held_not_stuck,
    resolve_as_of,
    stuck_text,
)
from flowkit.history.columns import TERMINAL
from flowkit.history.flowset import FlowSet
from flowkit.version_rules import duplicate_text, version_gap

if TYPE_CHECKING:
    from flowkit.history.duck import Engine


def find_duckdb(e: Engine, fs: FlowSet | None, has_snapshot: bool, *, stuck_s: float, retry_threshold: int,
                as_of: Any, exported_at: Any, since: Any, partial: bool,
                codes: Iterable[str] | None) -> AnalysisReport:
    """The checks of :class:`Finder` in DuckDB (``e``: a :class:`flowkit.history.duck.Engine` with the data loaded)."""
    want = check_codes(codes)
    n, n_sessions, latest, pair_rows = e.stats()
    as_of_ms, source = resolve_as_of(as_of, exported_at, latest)
    since_flag = partial or (since is not None and since is not False)

    out = _sequence_findings(e, want, since_flag)
    unchecked: dict[tuple[str, str], int] = {}
    if n:
        unchecked = _graph_findings(e, fs, pair_rows, want, out)
    if has_snapshot and "STATE_MISMATCH" in want:
        out += _mismatch_findings(e)
    if retry_threshold and "RETRY_LOOP" in want:
        for sid, v, step, length, first_v, last_v in e.retry_loops(retry_threshold):
            out.append(Anomaly("RETRY_LOOP", sid, v, f"ask step {step!r} re-entered {length} times in a row "
                               f"(versions {first_v}-{last_v}; threshold {retry_threshold})"))
    if as_of_ms is not None and "STUCK" in want:
        out += _stuck_findings(e, fs, has_snapshot, as_of_ms, stuck_s)

    order = {c: i for i, c in enumerate(CODES)}
    found = sorted(out, key=lambda a: (a.session_id, a.version if a.version is not None else -1, order[a.code], a.detail))
    return finish_report(found, codes, rows=n, sessions=n_sessions,
                         snapshot_sessions=e.snapshot_rows() if has_snapshot else None,
                         fv_pairs=[(f, v) for f, v, _ in pair_rows], as_of_ms=as_of_ms, source=source, stuck_s=stuck_s,
                         retry_threshold=retry_threshold, since=since, partial=partial, graph=fs is not None,
                         unchecked=unchecked, engine="duckdb")


def _sequence_findings(e: Engine, want: set[str], since_flag: bool) -> list[Anomaly]:
    """VERSION_GAP, CHAIN_BREAK, AFTER_TERMINAL and VERSION_DUPLICATE: each record against the
    one before it in its session (and DUPLICATE_MESSAGE, also per session)."""
    out: list[Anomaly] = []
    add = out.append
    dup_count: Counter[tuple[str, int]] = Counter()
    for sid, v, prev_v, dup, event, exempt, from_step, prev_to, prev_status in e.row_checks(since=since_flag, want=want):
        if dup:
            dup_count[(sid, v)] += 1
        if "VERSION_GAP" in want:
            gap = version_gap(prev_v, v, partial=since_flag)
            if gap is not None:
                add(Anomaly("VERSION_GAP", sid, gap[0], gap[1]))
        if ("CHAIN_BREAK" in want and prev_v == v - 1 and not dup and event != "start" and not exempt
                and from_step != prev_to):
            add(Anomaly("CHAIN_BREAK", sid, v, f"from_step {from_step!r} but version {v - 1} ended at {prev_to!r}"))
        if ("AFTER_TERMINAL" in want and prev_v is not None and prev_status in TERMINAL and event != "start"
                and not exempt):
            add(Anomaly("AFTER_TERMINAL", sid, v, f"{event} record after the session ended "
                        f"({prev_status} at version {prev_v}) without a new start"))
    if "VERSION_DUPLICATE" in want:
        for (sid, v), count in dup_count.items():
            add(Anomaly("VERSION_DUPLICATE", sid, v, duplicate_text(v, count)))
    if "DUPLICATE_MESSAGE" in want:
        out += _duplicate_message_findings(e)
    return out


def _duplicate_message_findings(e: Engine) -> list[Anomaly]:
    return [Anomaly("DUPLICATE_MESSAGE", sid, v, f"message {mid} was already applied at version {first_v}")
            for sid, v, mid, first_v in e.duplicate_messages()]


def _graph_findings(e: Engine, fs: FlowSet | None, pair_rows: list[tuple[str, str, int]], want: set[str],
                    out: list[Anomaly]) -> dict[tuple[str, str], int]:
    """UNKNOWN_STEP and ILLEGAL_TRANSITION (appended to ``out``); returns the rows of flow
    versions that are not loaded, which nothing could check."""
    missing = set(e.load_graphs(fs, [(f, v) for f, v, _ in pair_rows]))
    unchecked = {(f, v): c for f, v, c in pair_rows if (f, v) in missing}
    if not e.graphs:
        return unchecked
    if "UNKNOWN_STEP" in want:
        for sid, v, name, version, step in e.unknown_steps():
            out.append(Anomaly("UNKNOWN_STEP", sid, v, f"step {step!r} is not in flow {name!r} version {version!r}"))
    if "ILLEGAL_TRANSITION" in want:
        out += _illegal_findings(e)
    return unchecked


def _illegal_findings(e: Engine) -> list[Anomaly]:
    """One ILLEGAL_TRANSITION per record, naming its first three illegal moves."""
    from flowkit.history.duck import START

    rows: dict[tuple[str, int, int], list[tuple[int, str, str]]] = {}
    info: dict[tuple[str, int, int], tuple[str, str, str]] = {}
    for sid, v, rn, name, version, event, pos, prev, step in e.illegal_pairs():
        rows.setdefault((sid, v, rn), []).append((pos, prev, step))
        info[(sid, v, rn)] = (name, version, event)
    out: list[Anomaly] = []
    for key, pairs in rows.items():
        name, version, event = info[key]
        texts = [f"{'(start)' if a == START else a} -> {b}" for _, a, b in sorted(pairs)]
        shown = ", ".join(texts[:3]) + (f" (+{len(texts) - 3} more)" if len(texts) > 3 else "")
        out.append(Anomaly("ILLEGAL_TRANSITION", key[0], key[1], f"{event} moved {shown}, not an edge of flow "
                           f"{name!r} version {version!r}"))
    return out


def _mismatch_findings(e: Engine) -> list[Anomaly]:
    """STATE_MISMATCH: the snapshot against each session's last record."""
    out: list[Anomaly] = []
    dups, diffs = e.state_mismatch()
    for sid, v in dups:
        out.append(Anomaly("STATE_MISMATCH", sid, v, "the snapshot has several rows for this session"))
    for s_sid, s_v, s_step, s_status, s_flow, s_fv, l_sid, l_v, l_step, l_status, l_flow, l_fv in diffs:
        if l_sid is None:
            out.append(Anomaly("STATE_MISMATCH", s_sid, s_v,
                               "the snapshot has this session but the history has no record of it"))
        elif s_sid is None:
            out.append(Anomaly("STATE_MISMATCH", l_sid, l_v, "the session has history but is missing from the snapshot"))
        else:
            diffs_txt = _differences((s_v, l_v), (s_step, l_step), (s_status, l_status), (s_flow, l_flow), (s_fv, l_fv))
            out.append(Anomaly("STATE_MISMATCH", l_sid, l_v, "snapshot vs last record: " + "; ".join(diffs_txt)))
    return out


def _differences(version: tuple[Any, Any], step: tuple[Any, Any], status: tuple[Any, Any], flow: tuple[Any, Any],
                 flow_version: tuple[Any, Any]) -> list[str]:
    """What differs between a snapshot row and the last record, (snapshot, record) each."""
    out = []
    if version[0] != version[1]:
        out.append(f"version {version[0]} vs {version[1]}")
    if step[0] != step[1]:
        out.append(f"step {float('nan') if step[0] is None else step[0]!r} vs to_step {step[1]!r}")
    if status[0] != status[1]:
        out.append(f"status {status[0]!r} vs {status[1]!r}")
    if flow[0] != flow[1]:
        out.append(f"flow {flow[0]!r} vs {flow[1]!r}")
    if flow_version[0] != flow_version[1]:
        out.append(f"flow_version {flow_version[0]!r} vs {flow_version[1]!r}")
    return out


def _stuck_findings(e: Engine, fs: FlowSet | None, has_snapshot: bool, as_of_ms: int, stuck_s: float) -> list[Anomaly]:
    """STUCK at ``as_of_ms``: from the snapshot when there is one, else from each session's last record."""
    threshold_ms = int(stuck_s * 1000)
    limits = held_limits(fs)
    rows = (e.stuck_snapshot(as_of_ms=as_of_ms, threshold_ms=threshold_ms) if has_snapshot
            else e.last_records(as_of_ms=as_of_ms, threshold_ms=threshold_ms))
    out: list[Anomaly] = []
    for sid, v, status, step, since_ms, flow in rows:  # since_ms: updated_at (snapshot) or ts (record)
        if not held_not_stuck(status, flow, as_of_ms - since_ms, threshold_ms, limits):
            out.append(Anomaly("STUCK", sid, v, stuck_text(status, step, as_of_ms - since_ms, as_of_ms, stuck_s)))
    return out
