"""The DuckDB engine of the anomaly scan (``engine="duckdb"``): the same findings as the
pandas engine of :mod:`flowkit.history.anomalies`, computed in SQL.

The history becomes one Arrow table that DuckDB scans without a copy. A Parquet dataset
whose files all have the canonical column types is read column by column (only the
analysis columns, low-cardinality text as dictionaries) and checked in SQL for what
:func:`~flowkit.history.columns.read_table` refuses (empty required columns, unknown
events or statuses, versions below 1); when that check fails, ``read_table`` reads it
again so the error is the pandas engine's, word for word. Anything else (JSONL, CSV,
Parquet written with other types, a DataFrame) is read and validated by
:mod:`flowkit.history.columns` exactly as the pandas engine does.

Row order is file order, the order the pandas engine breaks ties of duplicated versions
by. When the history is in (session, version) order (what ``flowkit export`` writes;
verified, not assumed) a record's predecessor is the previous row: streaming
``lag() OVER ()``, no sort. Otherwise the windows partition by session and sort by
(version, row). The graph checks join the unnested paths against node and edge tables
built from the flows. Details are formatted in Python by the same code as the pandas
engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flowkit.history._prep import ADMIN_ACTORS, ADMIN_EVENTS
from flowkit.history.columns import (
    EVENTS,
    HISTORY_SCHEMA,
    STATUS_VALUES,
    TERMINAL,
    TS,
    _parquet_files,
    canonical_reprompts,
    read_table,
)
from flowkit.history.flowset import FlowSet

START = "\x00start"  # the virtual node before a session's first step (never a step name)
NOT_RE = "\x01"  # retry key of a record with a path that is not a re-entry


def available() -> bool:
    """Whether the duckdb package can be imported."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _in(values: Iterable[str]) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


def _canonical_type(field: pa.Field) -> bool:
    want = HISTORY_SCHEMA.field(field.name).type
    t = field.type
    if pa.types.is_list(want):
        return bool(pa.types.is_list(t) and pa.types.is_string(t.value_type))
    return bool(t == want)


def canonical_parquet(files: list[Path], columns: Iterable[str]) -> bool:
    """Every file holds ``columns`` with exactly the canonical types (DuckDB may read them as they are)."""
    cols = list(columns)
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError):
            return False
        for c in cols:
            if c not in schema.names or not _canonical_type(schema.field(c)):
                return False
    return True


class Engine:
    """One DuckDB connection over one history (view ``hv``) and optionally a snapshot (table ``sn``).

    The history is an Arrow table in memory (DuckDB scans it without a copy): every check
    is one scan. When the history is in (session, version) order — what ``flowkit export``
    writes, and checked here as the pandas engine checks it — a record's predecessor is
    the previous row (streaming ``lag() OVER ()``, no sort); otherwise the windows
    partition by session and sort by (version, row).
    """

    def __init__(self) -> None:
        import duckdb

        self.con = duckdb.connect(config={"threads": max(1, os.cpu_count() or 1)})
        self.con.execute("SET TimeZone = 'UTC'")
        self.win = "OVER ()"
        self.graphs = 0

    def close(self) -> None:
        self.con.close()

    # ------------------------------------------------------------ loading

    def load_history_parquet(self, path: Path, columns: Iterable[str]) -> None:
        """A Parquet history (``path`` a file or a dataset folder) read column by column into Arrow, low-
        cardinality text as dictionaries; not canonical files go through read_table, and bad values raise
        read_table's error."""
        files = _parquet_files(path)
        cols = list(columns)
        if not files or not canonical_parquet(files, cols):
            self.load_history_arrow(read_table(path, "history", fmt="parquet", columns=cols))
            return
        dictionary = [c for c in ("flow", "flow_version", "event", "from_step", "to_step", "status", "actor") if c in cols]
        # A re-prompt's meaning needs its error (columns.canonical_reprompts); read it, apply, drop it.
        extra = ["error"] if "path" in cols and "error" not in cols and canonical_parquet(files, ["error"]) else []
        tables = [pq.read_table(f, columns=cols + extra, read_dictionary=dictionary) for f in files]
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        table = canonical_reprompts(table)
        self.load_history_arrow(table.drop_columns(extra) if extra else table)
        if not self._valid():
            # The same error as the pandas engine's reader (it reads only to raise).
            self.load_history_arrow(read_table(path, "history", fmt="parquet", columns=cols))

    def load_history_arrow(self, table: pa.Table) -> None:
        """A history with the canonical columns, in file order (the order that breaks ties of duplicates)."""
        import numpy as np

        table = table.append_column("rn", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        self.con.register("history_arrow", table)
        self.con.execute(f"""
            CREATE OR REPLACE TEMP VIEW hv AS
            SELECT CAST(session_id AS VARCHAR) AS session_id, CAST(flow AS VARCHAR) AS flow,
                CAST(flow_version AS VARCHAR) AS flow_version, version, epoch_ms(ts) AS ts,
                CAST(event AS VARCHAR) AS event, CAST(from_step AS VARCHAR) AS from_step,
                CAST(to_step AS VARCHAR) AS to_step, coalesce(CAST(path AS VARCHAR[]), []) AS path,
                CAST(status AS VARCHAR) AS status, CAST(message_id AS VARCHAR) AS message_id,
                CAST(event AS VARCHAR) IN {_in(ADMIN_EVENTS)} OR coalesce(CAST(actor AS VARCHAR) IN {_in(ADMIN_ACTORS)}, false)
                    AS exempt,
                CASE WHEN len(path) = 0 OR path IS NULL THEN NULL
                     WHEN event = 'message' AND len(path) = 1 AND path[1] = from_step THEN CAST(path[1] AS VARCHAR)
                     ELSE {_lit(NOT_RE)} END AS rk,
                rn
            FROM history_arrow
        """)
        # Exports are written session by session in version order: verify that instead of sorting.
        starts, backwards, sessions = self.con.execute("""
            SELECT count(*) FILTER (WHERE psid IS DISTINCT FROM session_id),
                   count(*) FILTER (WHERE psid = session_id AND version < pv), count(DISTINCT session_id)
            FROM (SELECT session_id, version, lag(session_id) OVER () AS psid, lag(version) OVER () AS pv FROM hv)
        """).fetchall()[0]
        ordered = starts == sessions and not backwards
        self.win = "OVER ()" if ordered else "OVER (PARTITION BY session_id ORDER BY version, rn)"
        self.sessions = int(sessions)

    def _valid(self) -> bool:
        """What read_table refuses in a canonical file: empty required columns, unknown values, version < 1."""
        def empty(c: str) -> str:
            return f"({c} IS NULL OR {c} = '')"

        row = self.con.execute(f"""
            SELECT count(*) FILTER (WHERE {empty('session_id')} OR {empty('flow')} OR {empty('flow_version')}
                                     OR version IS NULL OR ts IS NULL OR {empty('event')} OR {empty('status')}
                                     OR event NOT IN {_in(EVENTS)} OR status NOT IN {_in(STATUS_VALUES)}
                                     OR version < 1)
            FROM hv
        """).fetchall()[0]
        return not row[0]

    def load_snapshot(self, table: pa.Table) -> None:
        """A sessions snapshot, validated (``read_table``/``normalize``), as table ``sn``."""
        table = table.append_column("srn", pa.array(range(table.num_rows), pa.int64()))
        if table.schema.field("updated_at").type != TS:
            table = table.set_column(table.schema.get_field_index("updated_at"), "updated_at",
                                     table.column("updated_at").cast(TS))
        self.con.register("snapshot_arrow", table)
        self.con.execute("""
            CREATE OR REPLACE TEMP TABLE sn AS
            SELECT CAST(session_id AS VARCHAR) AS session_id, CAST(flow AS VARCHAR) AS flow,
                CAST(flow_version AS VARCHAR) AS flow_version, CAST(version AS BIGINT) AS version,
                CAST(step AS VARCHAR) AS step, CAST(status AS VARCHAR) AS status, epoch_ms(updated_at) AS upd, srn,
                row_number() OVER (PARTITION BY session_id ORDER BY srn) AS dk
            FROM snapshot_arrow
        """)
        self.con.unregister("snapshot_arrow")

    # ------------------------------------------------------------ queries

    def stats(self) -> tuple[int, int, int | None, list[tuple[str, str, int]]]:
        """Rows, sessions, the latest ts (ms) and the rows per (flow, flow_version)."""
        pairs = self.con.execute("SELECT flow, flow_version, count(*), max(ts) FROM hv GROUP BY ALL").fetchall()
        n = sum(int(c) for _, _, c, _ in pairs)
        max_ts = max((int(t) for _, _, _, t in pairs), default=None)
        return n, self.sessions, max_ts, [(str(f), str(v), int(c)) for f, v, c, _ in pairs]

    def _last(self, columns: str) -> str:
        return f"""(SELECT {columns} FROM (SELECT {columns}, lead(session_id) {self.win} AS nsid FROM hv)
                    WHERE nsid IS DISTINCT FROM session_id)"""

    def row_checks(self, *, since: bool, want: set[str]) -> list[tuple[Any, ...]]:
        """Records flagged by a window check: (session_id, version, prev_v (None at a session's first record),
        dup (one of several records of its version), event, exempt, from_step, prev_to, prev_status)."""
        conds = []
        if "VERSION_GAP" in want:
            conds.append("(prev_v IS NOT NULL AND version > prev_v + 1)")
            if not since:
                conds.append("(prev_v IS NULL AND version > 1)")
        if "VERSION_DUPLICATE" in want:
            conds.append("dup")
        if "CHAIN_BREAK" in want:
            conds.append("(prev_v = version - 1 AND NOT dup AND NOT prev_dup AND event <> 'start' AND NOT exempt "
                         "AND from_step IS DISTINCT FROM prev_to)")
        if "AFTER_TERMINAL" in want:
            conds.append(f"(prev_v IS NOT NULL AND prev_status IN {_in(TERMINAL)} AND event <> 'start' AND NOT exempt)")
        if not conds:
            return []
        w = self.win
        return self.con.execute(f"""
            WITH a AS (
                SELECT session_id, version, event, exempt, from_step,
                    CASE WHEN lag(session_id) {w} = session_id THEN lag(version) {w} END AS prev_v,
                    CASE WHEN lag(session_id, 2) {w} = session_id THEN lag(version, 2) {w} END AS prev_v2,
                    CASE WHEN lead(session_id) {w} = session_id THEN lead(version) {w} END AS next_v,
                    lag(to_step) {w} AS prev_to, lag(status) {w} AS prev_status
                FROM hv
            ), b AS (
                SELECT *, (prev_v IS NOT DISTINCT FROM version OR next_v IS NOT DISTINCT FROM version) AS dup,
                       (prev_v2 IS NOT DISTINCT FROM prev_v AND prev_v IS NOT NULL) AS prev_dup
                FROM a
            )
            SELECT session_id, version, prev_v, dup, event, exempt, from_step, prev_to, prev_status
            FROM b WHERE {' OR '.join(conds)}
        """).fetchall()

    def duplicate_messages(self) -> list[tuple[Any, ...]]:
        """(session_id, version, message_id, version of the first application) of every re-application."""
        return self.con.execute("""
            WITH d AS (SELECT session_id, message_id FROM hv WHERE message_id IS NOT NULL
                       GROUP BY ALL HAVING count(*) > 1)
            SELECT session_id, version, message_id, first_value(version) OVER m AS first_v
            FROM hv SEMI JOIN d USING (session_id, message_id)
            WINDOW m AS (PARTITION BY session_id, message_id ORDER BY version, rn)
            QUALIFY row_number() OVER m > 1
        """).fetchall()

    def retry_loops(self, n_max: int) -> list[tuple[Any, ...]]:
        """(session_id, version of the crossing re-entry, step, run length, first and last version)."""
        w = self.win
        return self.con.execute(f"""
            WITH p AS (
                SELECT session_id, version, rn, rk, lag(session_id) {w} AS psid, lag(rk) {w} AS prk
                FROM hv WHERE rk IS NOT NULL
            ), r AS (
                SELECT session_id, version, rn, rk AS step,
                       sum(CASE WHEN psid = session_id AND prk = rk THEN 0 ELSE 1 END)
                           OVER (PARTITION BY session_id ORDER BY version, rn ROWS UNBOUNDED PRECEDING) AS run
                FROM p WHERE rk <> {_lit(NOT_RE)}
            ), k AS (
                SELECT *, row_number() OVER g AS k, count(*) OVER (PARTITION BY session_id, run) AS n,
                       min(version) OVER (PARTITION BY session_id, run) AS first_v,
                       max(version) OVER (PARTITION BY session_id, run) AS last_v
                FROM r WINDOW g AS (PARTITION BY session_id, run ORDER BY version, rn)
            )
            SELECT session_id, version, step, n, first_v, last_v FROM k WHERE n > {int(n_max)} AND k = {int(n_max) + 1}
        """).fetchall()

    def last_records(self, *, as_of_ms: int, threshold_ms: int) -> list[tuple[Any, ...]]:
        """STUCK without a snapshot: the last record of every live session idle past the threshold."""
        last = self._last("session_id, version, status, to_step, ts, flow")
        return self.con.execute(f"""
            SELECT * FROM {last}
            WHERE status NOT IN {_in(TERMINAL)} AND {int(as_of_ms)} - ts > {int(threshold_ms)}
        """).fetchall()

    def stuck_snapshot(self, *, as_of_ms: int, threshold_ms: int) -> list[tuple[Any, ...]]:
        return self.con.execute(f"""
            SELECT session_id, version, status, step, upd, flow FROM sn
            WHERE status NOT IN {_in(TERMINAL)} AND upd IS NOT NULL AND {int(as_of_ms)} - upd > {int(threshold_ms)}
        """).fetchall()

    def snapshot_rows(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM sn").fetchall()[0][0])

    def state_mismatch(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(duplicated snapshot rows, rows where the snapshot and the last record disagree or one is missing)."""
        dups = self.con.execute("SELECT session_id, version FROM sn WHERE dk > 1").fetchall()
        last = self._last("session_id, version, to_step, status, flow, flow_version")
        diff = self.con.execute(f"""
            SELECT s.session_id, s.version, s.step, s.status, s.flow, s.flow_version,
                   l.session_id, l.version, l.to_step, l.status, l.flow, l.flow_version
            FROM (SELECT * FROM sn WHERE dk = 1) s
            FULL OUTER JOIN {last} l ON s.session_id = l.session_id
            WHERE s.session_id IS NULL OR l.session_id IS NULL OR s.version <> l.version
               OR s.step IS DISTINCT FROM l.to_step OR s.status <> l.status OR s.flow <> l.flow
               OR s.flow_version <> l.flow_version
        """).fetchall()
        return dups, diff

    def load_graphs(self, flows: FlowSet | None, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Tables ``g`` (flow, flow_version, gid), ``nodes`` (gid, step) and ``edges`` (gid, a, b) of the
        loaded flow versions among ``pairs``; returns the pairs that are not loaded."""
        g_rows: list[tuple[str, str, int]] = []
        nodes: list[tuple[int, str]] = []
        edges: list[tuple[int, str, str]] = []
        missing = []
        for name, version in pairs:
            if flows is None or not flows.has(name, version):
                missing.append((name, version))
                continue
            graph = flows.graph(name, version)
            gid = len(g_rows)
            g_rows.append((name, version, gid))
            nodes.extend((gid, s) for s in sorted(graph.nodes))
            nodes.append((gid, START))
            edges.extend((gid, a, b) for a, b in sorted(graph.edges))
            edges.append((gid, START, graph.start))
        self.con.register("g_arrow", pa.table({"flow": [r[0] for r in g_rows], "flow_version": [r[1] for r in g_rows],
                                               "gid": pa.array([r[2] for r in g_rows], pa.int32())}))
        self.con.register("nodes_arrow", pa.table({"gid": pa.array([r[0] for r in nodes], pa.int32()),
                                                   "step": pa.array([r[1] for r in nodes], pa.string())}))
        self.con.register("edges_arrow", pa.table({"gid": pa.array([r[0] for r in edges], pa.int32()),
                                                   "a": pa.array([r[1] for r in edges], pa.string()),
                                                   "b": pa.array([r[2] for r in edges], pa.string())}))
        for name in ("g", "nodes", "edges"):
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
            self.con.unregister(f"{name}_arrow")
        self.graphs = len(g_rows)
        return missing

    def unknown_steps(self) -> list[tuple[Any, ...]]:
        """(session_id, version, flow, flow_version, step) at the first record per session and unknown step."""
        return self.con.execute("""
            WITH el AS (
                SELECT session_id, version, rn, flow, flow_version, gid, unnest(path) AS step
                FROM hv JOIN g USING (flow, flow_version)
                UNION ALL
                SELECT session_id, version, rn, flow, flow_version, gid, to_step AS step
                FROM hv JOIN g USING (flow, flow_version) WHERE to_step IS NOT NULL
            )
            SELECT el.session_id, el.version, el.flow, el.flow_version, el.step
            FROM el ANTI JOIN nodes n ON n.gid = el.gid AND n.step = el.step
            WHERE el.step IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY el.session_id, el.step ORDER BY el.version, el.rn) = 1
        """).fetchall()

    def illegal_pairs(self) -> list[tuple[Any, ...]]:
        """(session_id, version, rn, flow, flow_version, event, pos, prev, step) of every step pair that is
        no edge, between steps the flow version has, outside the exemptions."""
        return self.con.execute(f"""
            WITH el AS (
                SELECT session_id, version, rn, flow, flow_version, event, gid, path, from_step,
                       unnest(path) AS step, generate_subscripts(path, 1) AS pos
                FROM hv JOIN g USING (flow, flow_version) WHERE NOT exempt
            ), pr AS (
                SELECT *, CASE WHEN pos > 1 THEN path[pos - 1]
                               WHEN from_step IS NULL AND event = 'start' THEN {_lit(START)}
                               ELSE from_step END AS prev
                FROM el WHERE NOT (pos = 1 AND event = 'command')
            )
            SELECT pr.session_id, pr.version, pr.rn, pr.flow, pr.flow_version, pr.event, pr.pos, pr.prev, pr.step
            FROM pr
            SEMI JOIN nodes nc ON nc.gid = pr.gid AND nc.step = pr.step
            SEMI JOIN nodes np ON np.gid = pr.gid AND np.step = pr.prev
            ANTI JOIN edges e ON e.gid = pr.gid AND e.a = pr.prev AND e.b = pr.step
        """).fetchall()
