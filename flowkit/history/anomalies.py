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

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flowkit.errors import HistoryError
from flowkit.findings import Finding
from flowkit.flow.model import HELD_STATUSES, format_duration, parse_duration
from flowkit.history._prep import Prepared, prepare
from flowkit.history.columns import (
    EVENTS,
    SESSION_COLUMNS,
    TERMINAL,
    frame_to_table,
    iso,
    locate_export,
    normalize,
    read_export,
    read_meta,
    read_table,
    to_ms,
)
from flowkit.history.flowset import FlowSet
from flowkit.version_rules import duplicate_text, version_gap

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


def _seconds(value: float | str | None, default: float) -> float:
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


def _stuck_text(status: str, step: Any, idle_ms: int, as_of_ms: int, stuck_after: float) -> str:
    where = f" at step {step!r}" if isinstance(step, str) else ""
    return (f"{status}{where}, idle for {format_duration(idle_ms / 1000, approx=True)} at {iso(as_of_ms)} "
            f"(threshold {format_duration(stuck_after, approx=True)})")


class _Finder:
    def __init__(self, p: Prepared, flows: FlowSet | None, sessions: pd.DataFrame | None, *, stuck_after: float,
                 retry_threshold: int, as_of_ms: int | None, since: bool) -> None:
        self.p = p
        self.flows = flows
        self.snapshot = sessions
        self.stuck_after = stuck_after
        self.retry_threshold = retry_threshold
        self.as_of_ms = as_of_ms
        self.since = since
        self.out: list[Anomaly] = []
        self.unchecked: dict[tuple[str, str], int] = {}

    def add(self, code: str, i: int, detail: str, version: int | None = None) -> None:
        p = self.p
        self.out.append(Anomaly(code, p.session_id(i), int(p.version[i]) if version is None else version, detail))

    # -- versions

    def versions(self) -> None:
        p = self.p
        if not p.n:
            return
        same = p.same
        v = p.version
        prev_v = np.empty_like(v)
        prev_v[0] = 0
        prev_v[1:] = v[:-1]
        dup = same & (v == prev_v)
        # One finding per duplicated version: at the second record of each group.
        starts = np.flatnonzero(dup & ~np.concatenate(([False], dup[:-1])))
        for i in starts:
            j = i
            while j + 1 < p.n and dup[j + 1] and v[j + 1] == v[i]:
                j += 1
            count = j - i + 2
            self.add("VERSION_DUPLICATE", int(i), duplicate_text(int(v[i]), int(count)))
        # the vectorised masks only find candidates; version_rules words (and judges) each one
        for i in np.flatnonzero(same & (v > prev_v + 1)):
            gap = version_gap(int(prev_v[i]), int(v[i]))
            if gap is not None:
                self.add("VERSION_GAP", int(i), gap[1], version=gap[0])
        if not self.since:
            for i in np.flatnonzero(p.first & (v > 1)):
                gap = version_gap(None, int(v[i]))
                if gap is not None:
                    self.add("VERSION_GAP", int(i), gap[1], version=gap[0])

    @property
    def unique_version(self) -> np.ndarray:
        p = self.p
        v = p.version
        dup_prev = p.same & np.concatenate(([False], v[1:] == v[:-1]))
        dup_next = np.concatenate((dup_prev[1:], [False]))
        return ~(dup_prev | dup_next)

    def chain(self) -> None:
        p = self.p
        if p.n < 2:
            return
        uniq = self.unique_version
        consecutive = p.same.copy()
        consecutive[1:] &= p.version[1:] == p.version[:-1] + 1
        consecutive[1:] &= uniq[1:] & uniq[:-1]
        prev_to = np.concatenate(([-1], p.to_step[:-1]))
        check = consecutive & ~p.event_is("start") & ~p.exempt
        broken = check & (p.from_step != prev_to)
        for i in np.flatnonzero(broken):
            self.add("CHAIN_BREAK", int(i), f"from_step {p.step_name(int(p.from_step[i]))!r} but version "
                     f"{p.version[i] - 1} ended at {p.step_name(int(prev_to[i]))!r}")

    def after_terminal(self) -> None:
        p = self.p
        if p.n < 2:
            return
        prev_terminal = np.concatenate(([False], p.terminal[:-1]))
        bad = p.same & prev_terminal & ~p.event_is("start") & ~p.event_is("delivery_failed") & ~p.exempt  # a late status may follow the end
        for i in np.flatnonzero(bad):
            prev_status = p.status_names[p.status[i - 1]]
            self.add("AFTER_TERMINAL", int(i), f"{EVENTS[p.event[i]]} record after the session ended "
                     f"({prev_status} at version {p.version[i - 1]}) without a new start")

    def duplicate_messages(self) -> None:
        p = self.p
        mids = p.df["message_id"]
        if not p.n or mids.isna().all():
            return
        codes, uniques = pd.factorize(mids, sort=False)
        codes = codes.astype(np.int64)
        if not (p.order[0] == 0 and np.all(np.diff(p.order) == 1)):
            codes = codes[p.order]
        has = codes >= 0
        key = p.sid[has] * (len(uniques) + 1) + codes[has]
        rows = np.flatnonzero(has)
        dup = pd.Index(key).duplicated(keep="first")
        if not dup.any():
            return
        first_row = dict(zip(key[~dup][np.isin(key[~dup], key[dup])], rows[~dup][np.isin(key[~dup], key[dup])], strict=True))
        for k, i in zip(key[dup], rows[dup], strict=True):
            j = first_row[k]
            mid = uniques[codes[i]]
            self.add("DUPLICATE_MESSAGE", int(i), f"message {mid} was already applied at version {p.version[j]}")

    def retry_loops(self) -> None:
        p = self.p
        n_max = self.retry_threshold
        if not p.n:
            return
        rows = np.flatnonzero(p.path_len > 0)  # empty paths (help, busy) neither count nor break a run
        if not len(rows):
            return
        sid = p.sid[rows]
        step = p.path_first[rows]
        re = (p.event[rows] == EVENTS.index("message")) & (p.path_len[rows] == 1) & (step == p.from_step[rows]) & (step >= 0)
        cont = np.zeros(len(rows), dtype=bool)
        cont[1:] = re[1:] & re[:-1] & (sid[1:] == sid[:-1]) & (step[1:] == step[:-1])
        run_id = np.cumsum(~cont) - 1
        lengths = np.bincount(run_id)
        starts = np.flatnonzero(~cont)
        for r in np.flatnonzero(lengths > n_max):
            s = starts[r]
            if not re[s]:
                continue
            i = rows[s + n_max]  # the (N+1)-th re-entry crosses the threshold
            last = rows[s + lengths[r] - 1]
            self.add("RETRY_LOOP", int(i), f"ask step {p.step_name(int(step[s]))!r} re-entered {lengths[r]} times in a row "
                     f"(versions {p.version[rows[s]]}-{p.version[last]}; threshold {n_max})")

    # -- against the flow graphs

    def graph_checks(self) -> None:
        p = self.p
        if not p.n:
            return
        gid, graphs = p.graphs(self.flows)
        for i, g in enumerate(graphs):
            if g is None:
                rows = int(np.count_nonzero(p.fv == i))
                if rows:
                    self.unchecked[p.fv_pairs[i]] = rows
        if all(g is None for g in graphs):
            return
        width = len(p.steps) + 1  # + the virtual (start) node
        n_graphs = len(graphs)
        node_ok = np.zeros(n_graphs * width, dtype=bool)
        edge_keys: list[np.ndarray] = []
        for gi, g in enumerate(graphs):
            if g is None:
                continue
            idx = p.steps.get_indexer(pd.Index(sorted(g.nodes), dtype=object))
            idx = idx[idx >= 0]
            node_ok[gi * width + idx] = True
            node_ok[gi * width + p.START] = True
            pairs = [(a, b) for a, b in g.edges] + [("\x00start", g.start)]
            a = p.steps.get_indexer(pd.Index([x for x, _ in pairs], dtype=object))
            b = p.steps.get_indexer(pd.Index([y for _, y in pairs], dtype=object))
            a[-1] = p.START
            keep = (a >= 0) & (b >= 0)
            edge_keys.append((gi * width + a[keep]).astype(np.int64) * width + b[keep])
        keys = np.concatenate(edge_keys) if edge_keys else np.zeros(0, np.int64)
        space = n_graphs * width * width
        if space <= 50_000_000:  # a lookup table beats np.isin by far when the key space is small
            edge_ok_table = np.zeros(space, dtype=bool)
            edge_ok_table[keys] = True

            def edge_ok(k: np.ndarray) -> np.ndarray:
                ok: np.ndarray = edge_ok_table[k]
                return ok
        else:  # pragma: no cover - thousands of steps in many versions
            def edge_ok(k: np.ndarray) -> np.ndarray:
                return np.isin(k, keys)

        # Unknown steps: to_step and every path element, first version per (session, step).
        cur = p.path_values
        parent = p.path_parent
        g_el = gid[parent]
        checked_el = g_el >= 0
        unknown_el = checked_el & ~node_ok[np.maximum(g_el, 0) * width + np.maximum(cur, 0)]
        g_to = gid
        has_to = (g_to >= 0) & (p.to_step >= 0)
        unknown_to = has_to & ~node_ok[np.maximum(g_to, 0) * width + np.maximum(p.to_step, 0)]
        un_rows = np.concatenate((parent[unknown_el], np.flatnonzero(unknown_to)))
        un_steps = np.concatenate((cur[unknown_el], p.to_step[unknown_to]))
        if len(un_rows):
            frame = pd.DataFrame({"row": un_rows, "sid": p.sid[un_rows], "step": un_steps}).sort_values("row", kind="stable")
            for row, step in frame.drop_duplicates(["sid", "step"])[["row", "step"]].itertuples(index=False):
                name, version = p.fv_pairs[p.fv[row]]
                self.add("UNKNOWN_STEP", int(row), f"step {p.step_name(int(step))!r} is not in flow {name!r} version {version!r}")

        # Illegal pairs: (from_step, path[0]) and (path[k-1], path[k]).
        pos = p.path_pos
        prev = np.empty_like(cur)
        if len(cur):
            prev[1:] = cur[:-1]
            at0 = pos == 0
            prev[at0] = p.from_step[parent[at0]]
            is_start = p.event[parent] == EVENTS.index("start")
            prev[at0 & (prev < 0) & is_start] = p.START
        check = checked_el & ~p.exempt[parent] & (prev >= 0)
        if len(cur):
            check &= ~((pos == 0) & (p.event[parent] == EVENTS.index("command")))
            gsafe = np.maximum(g_el, 0)
            check &= node_ok[gsafe * width + np.maximum(prev, 0)] & node_ok[gsafe * width + np.maximum(cur, 0)]
            keys_el = (gsafe.astype(np.int64) * width + np.maximum(prev, 0)) * width + np.maximum(cur, 0)
            bad = check & ~edge_ok(np.where(check, keys_el, 0))
        else:
            bad = np.zeros(0, dtype=bool)
        if bad.any():
            bad_rows = parent[bad]
            bad_prev = prev[bad]
            bad_cur = cur[bad]
            seen: dict[int, list[str]] = {}
            for r, a, b in zip(bad_rows, bad_prev, bad_cur, strict=True):
                seen.setdefault(int(r), []).append(f"{p.step_name(int(a))} -> {p.step_name(int(b))}")
            for r, moves in seen.items():
                name, version = p.fv_pairs[p.fv[r]]
                shown = ", ".join(moves[:3]) + (f" (+{len(moves) - 3} more)" if len(moves) > 3 else "")
                self.add("ILLEGAL_TRANSITION", r, f"{EVENTS[p.event[r]]} moved {shown}, not an edge of flow {name!r} "
                         f"version {version!r}")

    # -- against the snapshot and the clock

    def state_mismatch(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        p = self.p
        n = len(snap)
        sids_txt = snap["session_id"].astype(object).to_numpy()
        s_sid = p.sessions.get_indexer(pd.Index(sids_txt, dtype=object)) if p.n else np.full(n, -1)
        dups = pd.Index(sids_txt).duplicated(keep="first")
        versions = snap["version"].to_numpy(dtype=np.int64)
        steps_txt = snap["step"].astype(object).to_numpy()
        statuses = snap["status"].astype(object).to_numpy()
        flows_txt = snap["flow"].astype(object).to_numpy()
        fvs_txt = snap["flow_version"].astype(object).to_numpy()
        # The last record of every session, by session code.
        last_row = np.full(len(p.sessions) + 1, -1, dtype=np.int64)
        last_idx = np.flatnonzero(p.last)
        last_row[p.sid[last_idx]] = last_idx
        row = np.where(s_sid >= 0, last_row[np.maximum(s_sid, 0)] if p.n else -1, -1)
        has = (row >= 0) & ~dups
        r = np.maximum(row, 0)
        # Everything compared as small integer codes of the history's own vocabularies.
        step_codes = p.steps.get_indexer(pd.Index(steps_txt, dtype=object)) if len(p.steps) else np.full(n, -1)
        step_codes = np.where(pd.isna(steps_txt), -1, np.where(step_codes < 0, -2, step_codes))
        status_codes = pd.Index(p.status_names, dtype=object).get_indexer(pd.Index(statuses, dtype=object))
        pair_index = {pair: i for i, pair in enumerate(p.fv_pairs)}
        pair_codes = np.array([pair_index.get((f, v), -1) for f, v in zip(flows_txt, fvs_txt, strict=True)], dtype=np.int64)
        if p.n:
            differs = ((versions != p.version[r]) | (step_codes != p.to_step[r]) | (status_codes != p.status[r])
                       | (pair_codes != p.fv[r]))
        else:
            differs = np.zeros(n, dtype=bool)
        for k in np.flatnonzero(dups):
            self.out.append(Anomaly("STATE_MISMATCH", str(sids_txt[k]), int(versions[k]),
                                    "the snapshot has several rows for this session"))
        for k in np.flatnonzero((row < 0) & ~dups):
            self.out.append(Anomaly("STATE_MISMATCH", str(sids_txt[k]), int(versions[k]),
                                    "the snapshot has this session but the history has no record of it"))
        for k in np.flatnonzero(has & differs):
            i = int(row[k])
            name, version = p.fv_pairs[p.fv[i]]
            last_status = p.status_names[p.status[i]]
            diffs = []
            if versions[k] != p.version[i]:
                diffs.append(f"version {versions[k]} vs {p.version[i]}")
            if step_codes[k] != p.to_step[i]:
                diffs.append(f"step {steps_txt[k]!r} vs to_step {p.step_name(int(p.to_step[i]))!r}")
            if statuses[k] != last_status:
                diffs.append(f"status {statuses[k]!r} vs {last_status!r}")
            if flows_txt[k] != name:
                diffs.append(f"flow {flows_txt[k]!r} vs {name!r}")
            if fvs_txt[k] != version:
                diffs.append(f"flow_version {fvs_txt[k]!r} vs {version!r}")
            self.add("STATE_MISMATCH", i, "snapshot vs last record: " + "; ".join(diffs))
        in_snap = np.zeros(len(p.sessions) + 1, dtype=bool)
        in_snap[s_sid[s_sid >= 0]] = True
        for i in last_idx[~in_snap[p.sid[last_idx]]]:
            self.add("STATE_MISMATCH", int(i), "the session has history but is missing from the snapshot")

    def stuck(self) -> None:
        if self.as_of_ms is None:
            return
        threshold_ms = int(self.stuck_after * 1000)
        snap = self.snapshot
        if snap is not None:
            from flowkit.history.columns import TERMINAL

            updated = snap["updated_at"]
            upd = np.where(updated.isna().to_numpy(), np.iinfo(np.int64).max,
                           updated.astype("datetime64[ms, UTC]").array.asi8 if len(snap) else np.zeros(0, np.int64))
            status = snap["status"].astype(object).to_numpy()
            live = np.array([s not in TERMINAL for s in status], dtype=bool)
            idle = self.as_of_ms - upd
            limits = held_limits(self.flows)
            flows = snap["flow"].astype(object).to_numpy()
            for k in np.flatnonzero(live & (idle > threshold_ms) & (upd != np.iinfo(np.int64).max)):
                if held_not_stuck(str(status[k]), flows[k], int(idle[k]), threshold_ms, limits):
                    continue
                self.out.append(Anomaly("STUCK", str(snap["session_id"].iloc[k]), int(snap["version"].iloc[k]),
                                        self._stuck_detail(str(status[k]), snap["step"].iloc[k], int(idle[k]))))
            return
        p = self.p
        idx = np.flatnonzero(p.last & ~p.terminal & (self.as_of_ms - p.ts > threshold_ms))
        limits = held_limits(self.flows)
        for i in idx:
            if held_not_stuck(p.status_names[p.status[i]], p.fv_pairs[p.fv[i]][0], int(self.as_of_ms - p.ts[i]),
                              threshold_ms, limits):
                continue
            self.add("STUCK", int(i), self._stuck_detail(p.status_names[p.status[i]], p.step_name(int(p.to_step[i])),
                                                         int(self.as_of_ms - p.ts[i])))

    def _stuck_detail(self, status: str, step: Any, idle_ms: int) -> str:
        return _stuck_text(status, step, idle_ms, self.as_of_ms or 0, self.stuck_after)

    def run(self) -> list[Anomaly]:
        self.versions()
        self.chain()
        self.graph_checks()
        self.duplicate_messages()
        self.state_mismatch()
        self.retry_loops()
        self.after_terminal()
        self.stuck()
        order = {c: i for i, c in enumerate(CODES)}
        return sorted(self.out, key=lambda a: (a.session_id, a.version if a.version is not None else -1, order[a.code], a.detail))


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


def _as_of(as_of: Any, exported_at: Any, latest_ms: int | None) -> tuple[int | None, str]:
    if as_of is not None:
        return to_ms(as_of), "as_of"
    if exported_at is not None:
        return to_ms(exported_at), "exported_at"
    if latest_ms is not None:
        return latest_ms, "latest record"
    return None, "none"


def _finish(found: list[Anomaly], codes: Iterable[str] | None, *, rows: int, sessions: int, snapshot_sessions: int | None,
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


def _check_codes(codes: Iterable[str] | None) -> set[str]:
    if codes is None:
        return set(CODES)
    wanted = set(codes)
    unknown = wanted - set(CODES)
    if unknown:
        raise HistoryError(f"unknown anomaly code(s) {', '.join(sorted(unknown))}; known: {', '.join(CODES)}")
    return wanted


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
    stuck_s = _seconds(stuck_after, DEFAULT_STUCK_AFTER)
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
            return _find_duckdb(e, fs, snap is not None, stuck_s=stuck_s, retry_threshold=retry_threshold, as_of=as_of,
                                exported_at=exported_at, since=since, partial=partial, codes=codes)
        finally:
            e.close()
    if eng == "dask":
        from flowkit.history import dask_engine

        _check_codes(codes)
        r = dask_engine.analyze_frames(frame_to_table(df, "history"),
                                       frame_to_table(snap, "sessions") if snap is not None else None, fs,
                                       scheduler=scheduler, buckets=buckets, stuck_after=stuck_s,
                                       retry_threshold=retry_threshold, as_of=as_of, exported_at=exported_at,
                                       since=partial_history)
        return _finish_dask(r, codes, stuck_s=stuck_s, retry_threshold=retry_threshold, since=since, partial=partial,
                            graph=fs is not None)
    p = prepare(df)
    as_of_ms, source = _as_of(as_of, exported_at, int(p.ts.max()) if p.n else None)
    finder = _Finder(p, fs, snap, stuck_after=stuck_s, retry_threshold=retry_threshold, as_of_ms=as_of_ms,
                     since=partial_history)
    found = finder.run()
    return _finish(found, codes, rows=p.n, sessions=len(p.sessions),
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
    return _finish(found, codes, rows=r["rows"], sessions=r["sessions"], snapshot_sessions=r["snapshot_sessions"],
                   fv_pairs=r["fv_pairs"], as_of_ms=r["as_of_ms"], source=r["source"], stuck_s=stuck_s,
                   retry_threshold=retry_threshold, since=since, partial=partial, graph=graph,
                   unchecked=r["unchecked"], engine="dask")


def _find_duckdb(e: Any, fs: FlowSet | None, has_snapshot: bool, *, stuck_s: float, retry_threshold: int, as_of: Any,
                 exported_at: Any, since: Any, partial: bool, codes: Iterable[str] | None) -> AnalysisReport:
    """The checks of :class:`_Finder` in DuckDB (``e``: a :class:`flowkit.history.duck.Engine` with the data loaded)."""
    from flowkit.history.duck import START

    want = _check_codes(codes)
    n, n_sessions, latest, pair_rows = e.stats()
    as_of_ms, source = _as_of(as_of, exported_at, latest)
    out: list[Anomaly] = []
    add = out.append
    since_flag = partial or (since is not None and since is not False)

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
        for sid, v, mid, first_v in e.duplicate_messages():
            add(Anomaly("DUPLICATE_MESSAGE", sid, v, f"message {mid} was already applied at version {first_v}"))

    unchecked: dict[tuple[str, str], int] = {}
    if n:
        missing = set(e.load_graphs(fs, [(f, v) for f, v, _ in pair_rows]))
        unchecked = {(f, v): c for f, v, c in pair_rows if (f, v) in missing}
        if e.graphs:
            if "UNKNOWN_STEP" in want:
                for sid, v, name, version, step in e.unknown_steps():
                    add(Anomaly("UNKNOWN_STEP", sid, v, f"step {step!r} is not in flow {name!r} version {version!r}"))
            if "ILLEGAL_TRANSITION" in want:
                rows: dict[tuple[str, int, int], list[tuple[int, str, str]]] = {}
                info: dict[tuple[str, int, int], tuple[str, str, str]] = {}
                for sid, v, rn, name, version, event, pos, prev, step in e.illegal_pairs():
                    rows.setdefault((sid, v, rn), []).append((pos, prev, step))
                    info[(sid, v, rn)] = (name, version, event)
                for key, pairs in rows.items():
                    name, version, event = info[key]
                    texts = [f"{'(start)' if a == START else a} -> {b}" for _, a, b in sorted(pairs)]
                    shown = ", ".join(texts[:3]) + (f" (+{len(texts) - 3} more)" if len(texts) > 3 else "")
                    add(Anomaly("ILLEGAL_TRANSITION", key[0], key[1], f"{event} moved {shown}, not an edge of flow "
                                f"{name!r} version {version!r}"))

    if has_snapshot and "STATE_MISMATCH" in want:
        dups, diffs = e.state_mismatch()
        for sid, v in dups:
            add(Anomaly("STATE_MISMATCH", sid, v, "the snapshot has several rows for this session"))
        for s_sid, s_v, s_step, s_status, s_flow, s_fv, l_sid, l_v, l_step, l_status, l_flow, l_fv in diffs:
            if l_sid is None:
                add(Anomaly("STATE_MISMATCH", s_sid, s_v, "the snapshot has this session but the history has no record of it"))
            elif s_sid is None:
                add(Anomaly("STATE_MISMATCH", l_sid, l_v, "the session has history but is missing from the snapshot"))
            else:
                diffs_txt = []
                if s_v != l_v:
                    diffs_txt.append(f"version {s_v} vs {l_v}")
                if s_step != l_step:
                    diffs_txt.append(f"step {float('nan') if s_step is None else s_step!r} vs to_step {l_step!r}")
                if s_status != l_status:
                    diffs_txt.append(f"status {s_status!r} vs {l_status!r}")
                if s_flow != l_flow:
                    diffs_txt.append(f"flow {s_flow!r} vs {l_flow!r}")
                if s_fv != l_fv:
                    diffs_txt.append(f"flow_version {s_fv!r} vs {l_fv!r}")
                add(Anomaly("STATE_MISMATCH", l_sid, l_v, "snapshot vs last record: " + "; ".join(diffs_txt)))

    if retry_threshold and "RETRY_LOOP" in want:
        for sid, v, step, length, first_v, last_v in e.retry_loops(retry_threshold):
            add(Anomaly("RETRY_LOOP", sid, v, f"ask step {step!r} re-entered {length} times in a row "
                        f"(versions {first_v}-{last_v}; threshold {retry_threshold})"))

    if as_of_ms is not None and "STUCK" in want:
        threshold_ms = int(stuck_s * 1000)
        limits = held_limits(fs)
        if has_snapshot:
            for sid, v, status, step, upd, flow in e.stuck_snapshot(as_of_ms=as_of_ms, threshold_ms=threshold_ms):
                if not held_not_stuck(status, flow, as_of_ms - upd, threshold_ms, limits):
                    add(Anomaly("STUCK", sid, v, _stuck_text(status, step, as_of_ms - upd, as_of_ms, stuck_s)))
        else:
            for sid, v, status, step, ts, flow in e.last_records(as_of_ms=as_of_ms, threshold_ms=threshold_ms):
                if held_not_stuck(status, flow, as_of_ms - ts, threshold_ms, limits):
                    continue
                add(Anomaly("STUCK", sid, v, _stuck_text(status, step, as_of_ms - ts, as_of_ms, stuck_s)))

    order = {c: i for i, c in enumerate(CODES)}
    found = sorted(out, key=lambda a: (a.session_id, a.version if a.version is not None else -1, order[a.code], a.detail))
    return _finish(found, codes, rows=n, sessions=n_sessions,
                   snapshot_sessions=e.snapshot_rows() if has_snapshot else None,
                   fv_pairs=[(f, v) for f, v, _ in pair_rows], as_of_ms=as_of_ms, source=source, stuck_s=stuck_s,
                   retry_threshold=retry_threshold, since=since, partial=partial, graph=fs is not None,
                   unchecked=unchecked, engine="duckdb")


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

        _check_codes(codes)
        fs = FlowSet.of(flows) if flows is not None else None
        stuck_s = _seconds(stuck_after, DEFAULT_STUCK_AFTER)
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
        stuck_s = _seconds(stuck_after, DEFAULT_STUCK_AFTER)
        if retry_threshold < 1:
            raise HistoryError(f"retry threshold must be at least 1, got {retry_threshold}")
        return _find_duckdb(e, fs, has_snapshot, stuck_s=stuck_s, retry_threshold=retry_threshold, as_of=as_of,
                            exported_at=meta.get("exported_at"), since=meta.get("since"),
                            partial=bool(meta.get("history_trimmed")), codes=codes)
    finally:
        e.close()


def report_frame(anomalies: Iterable[Anomaly] | AnalysisReport) -> pd.DataFrame:
    """Anomalies as a DataFrame (code, session_id, version, detail)."""
    if isinstance(anomalies, AnalysisReport):
        return anomalies.to_frame()
    return AnalysisReport(tuple(anomalies)).to_frame()
