"""The ``dask`` engine: ``flowkit analyze`` past one machine, on Dask distributed.

Every anomaly rule is judged per session (records of one session, its snapshot row and
one global ``as_of``), so the work partitions by session. The engine is a plain hash
shuffle written as a task graph, and the checks stay with their one owner, the pandas
finder (:class:`flowkit.history.anomaly_pandas.Finder`):

1. *read* (one task per input file, on the workers): :func:`read_table` reads and
   normalises the file exactly as the pandas engine does, then the rows are split into
   ``buckets`` pieces by a stable hash of ``session_id`` (row order kept inside a piece);
2. *check* (one task per bucket): the pieces of one bucket, in file order, are
   concatenated — the same rows, in the same relative order, as the pandas engine sees
   for those sessions — with the snapshot rows of the same bucket, and the pandas finder
   runs on them;
3. the driver merges the findings (sorted like the finder sorts) and the counts.

``as_of`` is global: when neither the caller nor ``export.json`` gives it, the latest
record time is reduced from the read tasks first. The workers read the files themselves,
so on a real cluster the export must be on storage every worker sees at the same path.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowkit.errors import HistoryError
from flowkit.history.columns import (
    Format,
    Kind,
    _parquet_files,
    locate_export,
    normalize,
    read_meta,
    read_table,
    table_to_frame,
)

ROWS_PER_BUCKET = 1_000_000  # a check task holds about this many records (a few hundred MB)


def available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _require() -> None:
    if not available():
        raise HistoryError("engine 'dask' needs Dask distributed (pip install 'flowkit[distributed]')")


@contextmanager
def connect(scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: to the running scheduler at ``scheduler`` (``tcp://host:8786``), else to a
    local cluster of worker processes started for this call and stopped after it."""
    _require()
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise HistoryError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one "
                               "(dask scheduler) or leave --scheduler out for a local cluster") from None
        try:
            yield client
        finally:
            client.close()
        return
    workers = max(1, min(os.cpu_count() or 1, 8))
    # No dashboard: it needs bokeh and a port, and a one-off analysis has no one watching it. Only the
    # cluster's errors reach stderr: its start/stop chatter is not the command's output.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


# ---------------------------------------------------------------- tasks (run on the workers)


def bucket_of(session_ids: pa.ChunkedArray | pa.Array, buckets: int) -> np.ndarray:
    """A stable bucket per session id (the same in every process: pandas' fixed-key hash)."""
    s = pd.Series(session_ids.to_pandas() if len(session_ids) else [], dtype=object)
    out: np.ndarray = (pd.util.hash_pandas_object(s, index=False).to_numpy() % np.uint64(buckets)).astype(np.int64)
    return out


def split(table: pa.Table, buckets: int) -> list[pa.Table]:
    """``table`` cut into ``buckets`` pieces by session, each piece in the table's row order."""
    b = bucket_of(table.column("session_id"), buckets)
    order = np.argsort(b, kind="stable")
    bounds = np.searchsorted(b[order], np.arange(buckets + 1))
    taken = table.take(pa.array(order)) if len(order) else table
    return [taken.slice(int(bounds[k]), int(bounds[k + 1] - bounds[k])) for k in range(buckets)]


def read_split(path: str, kind: Kind, fmt: Format, columns: Sequence[str] | None, buckets: int) -> tuple[list[pa.Table], int | None]:
    """Read one file and split it; also its latest record time (history) for a global ``as_of``."""
    table = read_table(path, kind, fmt=fmt, columns=columns)
    latest = None
    if kind == "history" and table.num_rows:
        latest = pc.max(table.column("ts")).cast(pa.int64()).as_py()
    return split(table, buckets), latest


def check_bucket(history: list[pa.Table], sessions: list[pa.Table] | None, flows: Any, *, stuck_after: float,
                 retry_threshold: int, as_of_ms: int | None, since: bool) -> dict[str, Any]:
    """The pandas finder on one bucket of sessions; findings plus the counts the summary adds up."""
    from flowkit.history._prep import prepare
    from flowkit.history.anomaly_pandas import Finder

    hist = pa.concat_tables(history, promote_options="permissive")
    df = normalize(table_to_frame(hist, "history"), "history")
    snap = None
    if sessions is not None:
        snap = normalize(table_to_frame(pa.concat_tables(sessions, promote_options="permissive"), "sessions"), "sessions")
    p = prepare(df)
    finder = Finder(p, flows, snap, stuck_after=stuck_after, retry_threshold=retry_threshold, as_of_ms=as_of_ms,
                     since=since)
    return {"found": finder.run(), "rows": p.n, "sessions": len(p.sessions),
            "snapshot_sessions": len(snap) if snap is not None else None, "fv_pairs": list(p.fv_pairs),
            "unchecked": dict(finder.unchecked)}


# ---------------------------------------------------------------- driver


def _files(path: Path, fmt: Format) -> list[str]:
    return [str(f) for f in (_parquet_files(path) if fmt == "parquet" else [path])]


def run(client: Any, history: list[Any], sessions: list[Any] | None, flows: Any, *, buckets: int, stuck_after: float,
        retry_threshold: int, as_of: Any, exported_at: Any, since: bool) -> dict[str, Any]:
    """Run the checks on ``client``: ``history``/``sessions`` are futures of :func:`read_split`
    results (or of ``(pieces, latest)`` built in the driver)."""
    from flowkit.history.anomaly_report import resolve_as_of

    latest = None
    if as_of is None and exported_at is None:
        times = [t for _, t in client.gather([client.submit(lambda r: (None, r[1]), h, pure=False) for h in history])
                 if t is not None]
        latest = max(times) if times else None
    as_of_ms, source = resolve_as_of(as_of, exported_at, latest)
    flows_f = client.scatter(flows, broadcast=True) if flows is not None else None

    def piece(r: tuple[list[pa.Table], int | None], k: int) -> pa.Table:
        return r[0][k]

    jobs = []
    for k in range(buckets):
        h = [client.submit(piece, f, k, pure=False) for f in history]
        s = [client.submit(piece, f, k, pure=False) for f in sessions] if sessions is not None else None
        jobs.append(client.submit(check_bucket, h, s, flows_f, stuck_after=stuck_after, retry_threshold=retry_threshold,
                                  as_of_ms=as_of_ms, since=since, pure=False))
    parts = client.gather(jobs)
    found = [a for part in parts for a in part["found"]]
    unchecked: Counter[tuple[str, str]] = Counter()
    pairs: set[tuple[str, str]] = set()
    for part in parts:
        unchecked.update(part["unchecked"])
        pairs.update(part["fv_pairs"])
    return {"found": found, "rows": sum(p["rows"] for p in parts), "sessions": sum(p["sessions"] for p in parts),
            "snapshot_sessions": sum(p["snapshot_sessions"] for p in parts) if sessions is not None else None,
            "fv_pairs": sorted(pairs), "unchecked": dict(unchecked), "as_of_ms": as_of_ms, "source": source}


def default_buckets(client: Any, rows: int | None = None) -> int:
    threads = sum(client.nthreads().values()) or 1
    by_size = -(-rows // ROWS_PER_BUCKET) if rows else 1
    return max(2 * threads, by_size)


def analyze_files(path: str | Path, flows: Any, *, scheduler: str | None, buckets: int | None, **kw: Any) -> dict[str, Any]:
    """:func:`run` on an export on disk (read by the workers); ``kw`` as :func:`run`."""
    from flowkit.history.anomaly_report import ANALYSIS_COLUMNS

    loc = locate_export(path)
    assert loc.history is not None and loc.history_format is not None
    meta = read_meta(path)
    h_files = _files(loc.history, loc.history_format)
    s_files = _files(loc.sessions, loc.sessions_format) if loc.sessions is not None and loc.sessions_format else None
    rows = (meta.get("history") or {}).get("rows") if isinstance(meta.get("history"), dict) else None
    with connect(scheduler) as client:
        n = buckets or default_buckets(client, rows if isinstance(rows, int) else None)
        h = [client.submit(read_split, f, "history", loc.history_format, ANALYSIS_COLUMNS, n, pure=False) for f in h_files]
        s = ([client.submit(read_split, f, "sessions", loc.sessions_format, None, n, pure=False) for f in s_files]
             if s_files is not None else None)
        out = run(client, h, s, flows, buckets=n, exported_at=meta.get("exported_at"), **kw)
    out["meta"] = meta
    return out


def analyze_frames(history: pa.Table, sessions: pa.Table | None, flows: Any, *, scheduler: str | None,
                   buckets: int | None, **kw: Any) -> dict[str, Any]:
    """:func:`run` on tables already in the driver's memory (split here, scattered to the workers)."""
    with connect(scheduler) as client:
        n = buckets or default_buckets(client, history.num_rows)
        latest = pc.max(history.column("ts")).cast(pa.int64()).as_py() if history.num_rows else None
        h = [client.scatter((split(history, n), latest))]
        s = [client.scatter((split(sessions, n), None))] if sessions is not None else None
        return run(client, h, s, flows, buckets=n, **kw)


# ---------------------------------------------------------------- analytics

#: The analytics tables the dask engine computes: those made of counts, which add up over
#: buckets of sessions (a journey never crosses sessions). dwell, variants and dfg report
#: medians and quantiles, which per-bucket results cannot give exactly.
ANALYTICS_TABLES = ("funnel", "drop_off", "rates", "retries")


def analytics_bucket(history: list[pa.Table], flows: Any, *, flow: str | None, by_version: bool) -> dict[str, Any]:
    """The pandas analytics of one bucket of sessions (the parts the driver adds up)."""
    from flowkit.history import analytics as an
    from flowkit.history._prep import prepare

    p = prepare(normalize(table_to_frame(pa.concat_tables(history, promote_options="permissive"), "history"), "history"))
    return {"funnel": an.funnel(p, flows, flow=flow, by_version=by_version), "rates": an.rates(p, by_version=by_version),
            "retries": an.retries(p, None, flow=flow), "fv_pairs": list(p.fv_pairs)}


def analytics_files(path: str | Path, *, scheduler: str | None, buckets: int | None, flows: Any, flow: str | None,
                    by_version: bool = False) -> list[dict[str, Any]]:
    """:func:`analytics_bucket` on every bucket of an export on disk (read by the workers)."""
    loc = locate_export(path)
    assert loc.history is not None and loc.history_format is not None
    meta = read_meta(path)
    rows = (meta.get("history") or {}).get("rows") if isinstance(meta.get("history"), dict) else None
    with connect(scheduler) as client:
        n = buckets or default_buckets(client, rows if isinstance(rows, int) else None)
        h = [client.submit(read_split, f, "history", loc.history_format, None, n, pure=False)
             for f in _files(loc.history, loc.history_format)]
        flows_f = client.scatter(flows, broadcast=True) if flows is not None else None

        def piece(r: tuple[list[pa.Table], int | None], k: int) -> pa.Table:
            return r[0][k]

        jobs = [client.submit(analytics_bucket, [client.submit(piece, f, k, pure=False) for f in h], flows_f, flow=flow,
                              by_version=by_version, pure=False) for k in range(n)]
        gathered: list[dict[str, Any]] = client.gather(jobs)
        return gathered
