"""Find inconsistent, stuck and looping sessions in a history export (docs/design.md, "Analysis").

Every check is vectorised over the whole history (see ``_prep``); a finding is an
:class:`Anomaly` ``(code, session_id, version, detail)``. The codes are a contract:

==================== ===================================================================
code                 finding (``version`` is the version the finding is about)
==================== ===================================================================
STUCK                a non-terminal session idle longer than ``stuck_after`` at ``as_of``;
                     version: the snapshot's (else the last record's)
VERSION_GAP          versions missing from a session; one finding per run of missing
                     versions, version: the first missing one
VERSION_DUPLICATE    several records with one version; one finding per duplicated version
CHAIN_BREAK          a record's from_step is not the previous record's to_step
ILLEGAL_TRANSITION   a step pair of ``[from_step] + path`` is not an edge of the record's
                     flow version (expanded with sub-flows); one finding per record
UNKNOWN_STEP         a step (to_step or in a path) that the record's flow version does not
                     have; one finding per session and step, at its first version
DUPLICATE_MESSAGE    a message_id applied again; version: the later application
STATE_MISMATCH       the snapshot disagrees with the last record (version, step, status,
                     flow, flow_version), or one of them is missing
RETRY_LOOP           an ask step re-entered more than ``retry_threshold`` times in a row;
                     one finding per run, version: the re-entry that crossed the threshold
AFTER_TERMINAL       a record after a terminal status without a new start
==================== ===================================================================

Exact rules (where docs/design.md leaves room):

- *Exempt records* are those written by an administrator or by recovery: events
  ``rollback``, ``recovery``, ``migrate``, and any record whose actor is ``admin`` or
  ``recovery`` (admin commands such as ``reset`` and ``fail``). They jump by design, so
  they are exempt from ILLEGAL_TRANSITION, CHAIN_BREAK and AFTER_TERMINAL.
- A user's global command (event ``command``: cancel, restart, back, help) jumps from
  ``from_step`` to wherever the command leads, so the first pair of its path is not
  checked; the steps it then runs through must follow edges.
- A ``start`` record has no from_step; its first step must be the flow's start step
  (the pair ``(start) -> step``). Starts are exempt from CHAIN_BREAK (a new start after
  a terminal status is how a session is reused) and from AFTER_TERMINAL.
- A re-entry (for RETRY_LOOP) is a ``message`` record whose path is exactly its
  from_step (the retry self-edge). Records with an empty path (help, a message while a
  service call is pending) neither count nor break a run.
- CHAIN_BREAK compares only consecutive, unique versions (v-1 and v): across a gap or a
  duplicate the previous record is unknown, and VERSION_GAP/VERSION_DUPLICATE report it.
- ILLEGAL_TRANSITION skips pairs with a step the flow version does not have (reported
  once as UNKNOWN_STEP). from_step is not checked by UNKNOWN_STEP: it is the previous
  record's to_step (checked there) or the chain is broken (CHAIN_BREAK).
- Records of a flow version that is not loaded are not checked against a graph; the
  summary lists them under ``unchecked``.
- With ``since`` (an export of recent records only) or a partial history (the store
  keeps only the last N entries: ``history_trimmed`` in ``export.json``) the versions
  before a session's first exported record are not reported as VERSION_GAP.
- STUCK uses the snapshot when there is one (else the last record) and is judged at
  ``as_of``: the argument, else ``exported_at`` of ``export.json``, else the latest
  record's time (the summary says which).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from flowkit.errors import HistoryError
from flowkit.history._prep import prepare
from flowkit.history.anomaly_duckdb import find_duckdb
from flowkit.history.anomaly_pandas import Finder
from flowkit.history.anomaly_report import (
    ANALYSIS_COLUMNS,
    CODES,
    DEFAULT_RETRY_THRESHOLD,
    DEFAULT_STUCK_AFTER,
    AnalysisReport,
    Anomaly,
    check_codes,
    duration_seconds,
    finish_report,
    held_limits,
    held_not_stuck,
    report_frame,
    resolve_as_of,
)
from flowkit.history.columns import (
    SESSION_COLUMNS,
    frame_to_table,
    locate_export,
    normalize,
    read_export,
    read_meta,
    read_table,
)
from flowkit.history.flowset import FlowSet

ENGINES = ("auto", "pandas", "duckdb", "dask")


def resolve_engine(engine: str, *, on_disk: bool, scheduler: str | None = None) -> str:
    """``pandas``, ``duckdb`` or ``dask``: ``auto`` is DuckDB when it can be imported and the input is on disk."""
    from flowkit.history import duck

    if engine not in ENGINES:
        raise HistoryError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "dask":
        from flowkit.history import dask_engine

        dask_engine._require()
        return engine
    if scheduler is not None:
        raise HistoryError(f"a Dask scheduler ({scheduler}) was given for engine {engine!r}; "
                           "use --engine dask with --scheduler, or leave --scheduler out")
    if engine == "auto":
        return "duckdb" if on_disk and duck.available() else "pandas"
    if engine == "duckdb" and not duck.available():
        raise HistoryError("engine 'duckdb' needs the duckdb package (pip install duckdb)")
    return engine


def find_anomalies(history: pd.DataFrame, sessions: pd.DataFrame | None = None, flows: Any = None, *,
                   stuck_after: float | str | None = None, retry_threshold: int = DEFAULT_RETRY_THRESHOLD,
                   as_of: Any = None, exported_at: Any = None, since: Any = None, partial: bool = False,
                   codes: Iterable[str] | None = None, engine: str = "auto", scheduler: str | None = None,
                   buckets: int | None = None) -> AnalysisReport:
    """Every anomaly of docs/design.md in ``history`` (a DataFrame with the documented columns).

    ``sessions`` is the snapshot (enables STATE_MISMATCH and the STUCK check on it);
    ``flows`` anything :meth:`FlowSet.of` takes (enables ILLEGAL_TRANSITION and
    UNKNOWN_STEP); ``stuck_after`` seconds or text like ``"30m"``; ``as_of`` the time
    staleness is judged at (default ``exported_at``, else the latest record); ``since``
    (the export's ``--since``) or ``partial`` (the store trims old history) say that
    histories may legitimately start after version 1; ``codes`` limits the report.
    ``engine``: ``"pandas"``, ``"duckdb"`` (the same findings, computed in SQL) or
    ``"auto"`` (pandas: the data is already in memory) or ``"dask"`` (the pandas checks per
    bucket of sessions on Dask distributed: the cluster at ``scheduler``, else a local one;
    ``buckets`` how many session buckets, default from the workers and rows).
    """
    eng = resolve_engine(engine, on_disk=False, scheduler=scheduler)
    df = normalize(history, "history")
    snap = normalize(sessions, "sessions") if sessions is not None else None
    fs = FlowSet.of(flows) if flows is not None else None
    stuck_s = duration_seconds(stuck_after, DEFAULT_STUCK_AFTER)
    if retry_threshold < 1:
        raise HistoryError(f"retry threshold must be at least 1, got {retry_threshold}")
    partial_history = partial or (since is not None and since is not False)
    if eng == "duckdb":
        from flowkit.history.duck import Engine

        e = Engine()
        try:
            cols = list(ANALYSIS_COLUMNS)
            e.load_history_arrow(pa.Table.from_pandas(df[cols], preserve_index=False))
            if snap is not None:
                e.load_snapshot(pa.Table.from_pandas(snap[list(SESSION_COLUMNS)], preserve_index=False))
            return find_duckdb(e, fs, snap is not None, stuck_s=stuck_s, retry_threshold=retry_threshold, as_of=as_of,
                                exported_at=exported_at, since=since, partial=partial, codes=codes)
        finally:
            e.close()
    if eng == "dask":
        from flowkit.history import dask_engine

        check_codes(codes)
        r = dask_engine.analyze_frames(frame_to_table(df, "history"),
                                       frame_to_table(snap, "sessions") if snap is not None else None, fs,
                                       scheduler=scheduler, buckets=buckets, stuck_after=stuck_s,
                                       retry_threshold=retry_threshold, as_of=as_of, exported_at=exported_at,
                                       since=partial_history)
        return _finish_dask(r, codes, stuck_s=stuck_s, retry_threshold=retry_threshold, since=since, partial=partial,
                            graph=fs is not None)
    p = prepare(df)
    as_of_ms, source = resolve_as_of(as_of, exported_at, int(p.ts.max()) if p.n else None)
    finder = Finder(p, fs, snap, stuck_after=stuck_s, retry_threshold=retry_threshold, as_of_ms=as_of_ms,
                     since=partial_history)
    found = finder.run()
    return finish_report(found, codes, rows=p.n, sessions=len(p.sessions),
                   snapshot_sessions=int(len(snap)) if snap is not None else None, fv_pairs=p.fv_pairs,
                   as_of_ms=as_of_ms, source=source, stuck_s=stuck_s, retry_threshold=retry_threshold, since=since,
                   partial=partial, graph=fs is not None, unchecked=finder.unchecked,
                   engine="pandas")


def _finish_dask(r: Mapping[str, Any], codes: Iterable[str] | None, *, stuck_s: float, retry_threshold: int, since: Any,
                 partial: bool, graph: bool) -> AnalysisReport:
    """The merged per-bucket results of the dask engine as a report (the finder's order)."""
    order = {c: i for i, c in enumerate(CODES)}
    found = sorted(r["found"], key=lambda a: (a.session_id, a.version if a.version is not None else -1, order[a.code],
                                               a.detail))
    return finish_report(found, codes, rows=r["rows"], sessions=r["sessions"], snapshot_sessions=r["snapshot_sessions"],
                   fv_pairs=r["fv_pairs"], as_of_ms=r["as_of_ms"], source=r["source"], stuck_s=stuck_s,
                   retry_threshold=retry_threshold, since=since, partial=partial, graph=graph,
                   unchecked=r["unchecked"], engine="dask")


def analyze(path: str | Path, flows: Any = None, *, stuck_after: float | str | None = None,
            retry_threshold: int = DEFAULT_RETRY_THRESHOLD, as_of: Any = None,
            codes: Iterable[str] | None = None, engine: str = "pandas", scheduler: str | None = None,
            buckets: int | None = None) -> AnalysisReport:
    """Read an export (folder or history file, any format) and find its anomalies.

    Staleness is judged at ``as_of``, else the export's ``exported_at``. ``engine``:
    ``"pandas"`` (the default) reads the files into pandas, ``"duckdb"`` into Arrow
    tables that DuckDB scans, with the checks in SQL; both give the same report.
    ``"auto"`` is DuckDB when the duckdb package can be imported. (DuckDB is not the
    default: it measured no faster, see bench/README.md.) ``"dask"``: the workers of the
    Dask cluster at ``scheduler`` (else a local one) read the files and run the pandas
    checks per bucket of sessions (:mod:`flowkit.history.dask_engine`); the same report.
    """
    eng = resolve_engine(engine, on_disk=True, scheduler=scheduler)
    if eng == "dask":
        from flowkit.history import dask_engine

        check_codes(codes)
        fs = FlowSet.of(flows) if flows is not None else None
        stuck_s = duration_seconds(stuck_after, DEFAULT_STUCK_AFTER)
        if retry_threshold < 1:
            raise HistoryError(f"retry threshold must be at least 1, got {retry_threshold}")
        meta = read_meta(path)
        partial = bool(meta.get("history_trimmed"))
        r = dask_engine.analyze_files(path, fs, scheduler=scheduler, buckets=buckets, stuck_after=stuck_s,
                                      retry_threshold=retry_threshold, as_of=as_of,
                                      since=partial or meta.get("since") not in (None, False))
        return _finish_dask(r, codes, stuck_s=stuck_s, retry_threshold=retry_threshold, since=meta.get("since"),
                            partial=partial, graph=fs is not None)
    if eng == "pandas":
        ex = read_export(path, columns=ANALYSIS_COLUMNS)
        return find_anomalies(ex.history, ex.sessions, flows, stuck_after=stuck_after, retry_threshold=retry_threshold,
                              as_of=as_of, exported_at=ex.meta.get("exported_at"), since=ex.meta.get("since"),
                              partial=bool(ex.meta.get("history_trimmed")), codes=codes, engine="pandas")
    from flowkit.history.duck import Engine

    loc = locate_export(path)
    assert loc.history is not None and loc.history_format is not None
    e = Engine()
    try:
        if loc.history_format == "parquet":
            e.load_history_parquet(loc.history, ANALYSIS_COLUMNS)
        else:
            e.load_history_arrow(read_table(loc.history, "history", fmt=loc.history_format, columns=ANALYSIS_COLUMNS))
        has_snapshot = loc.sessions is not None and loc.sessions_format is not None
        if has_snapshot:
            e.load_snapshot(read_table(loc.sessions, "sessions", fmt=loc.sessions_format))  # type: ignore[arg-type]  # (read_table returns a table for 'sessions')
        meta = read_meta(path)
        fs = FlowSet.of(flows) if flows is not None else None
        stuck_s = duration_seconds(stuck_after, DEFAULT_STUCK_AFTER)
        if retry_threshold < 1:
            raise HistoryError(f"retry threshold must be at least 1, got {retry_threshold}")
        return find_duckdb(e, fs, has_snapshot, stuck_s=stuck_s, retry_threshold=retry_threshold, as_of=as_of,
                            exported_at=meta.get("exported_at"), since=meta.get("since"),
                            partial=bool(meta.get("history_trimmed")), codes=codes)
    finally:
        e.close()


# The report's names are defined in anomaly_report.py; this module is their import path too.
__all__ = [
    "ANALYSIS_COLUMNS", "CODES", "DEFAULT_RETRY_THRESHOLD", "DEFAULT_STUCK_AFTER", "ENGINES",
    "AnalysisReport", "Anomaly", "Finder",
    "analyze", "find_anomalies", "held_limits", "held_not_stuck", "report_frame", "resolve_engine",
]
