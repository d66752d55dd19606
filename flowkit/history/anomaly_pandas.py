"""The anomaly checks on pandas/NumPy: every check vectorised over the whole prepared history
(:mod:`flowkit.history._prep`), one method per family of codes (:class:`Finder`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from flowkit.history._prep import Prepared
from flowkit.history.anomaly_report import CODES, Anomaly, held_limits, held_not_stuck, stuck_text
from flowkit.history.columns import EVENTS
from flowkit.history.flowset import FlowGraph, FlowSet
from flowkit.version_rules import duplicate_text, version_gap


class Finder:
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
        node_ok, edge_ok = self._graph_tables(graphs, width)
        g_el = gid[p.path_parent]  # the graph of each path element's record
        self._unknown_steps(gid, g_el, node_ok, width)
        self._illegal_transitions(g_el, node_ok, edge_ok, width)

    def _graph_tables(self, graphs: list[FlowGraph | None], width: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Which (graph, step) nodes exist, and a test for (graph, step, step) edge keys."""
        p = self.p
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
        return node_ok, edge_ok

    def _unknown_steps(self, gid: np.ndarray, g_el: np.ndarray, node_ok: np.ndarray, width: int) -> None:
        """UNKNOWN_STEP: to_step and every path element, first version per (session, step)."""
        p = self.p
        cur = p.path_values
        parent = p.path_parent
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

    def _illegal_transitions(self, g_el: np.ndarray, node_ok: np.ndarray,
                             edge_ok: Callable[[np.ndarray], np.ndarray], width: int) -> None:
        """ILLEGAL_TRANSITION: the pairs (from_step, path[0]) and (path[k-1], path[k]), one finding per record."""
        p = self.p
        cur = p.path_values
        parent = p.path_parent
        checked_el = g_el >= 0
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
        if not bad.any():
            return
        seen: dict[int, list[str]] = {}
        for r, a, b in zip(parent[bad], prev[bad], cur[bad], strict=True):
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
            diffs = [text for differ, text in (
                (versions[k] != p.version[i], f"version {versions[k]} vs {p.version[i]}"),
                (step_codes[k] != p.to_step[i], f"step {steps_txt[k]!r} vs to_step {p.step_name(int(p.to_step[i]))!r}"),
                (statuses[k] != last_status, f"status {statuses[k]!r} vs {last_status!r}"),
                (flows_txt[k] != name, f"flow {flows_txt[k]!r} vs {name!r}"),
                (fvs_txt[k] != version, f"flow_version {fvs_txt[k]!r} vs {version!r}"),
            ) if differ]
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
        return stuck_text(status, step, idle_ms, self.as_of_ms or 0, self.stuck_after)

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


