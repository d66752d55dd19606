"""Integer arrays of a history, in session/version order: the shared input of the
vectorised anomaly checks and flow analytics.

Strings are turned into small integer codes once (session ids, step names, events...),
rows are sorted by (session, version) once — skipped when the export is already in that
order, which :func:`flowkit.history.export` guarantees — and every check after that is a
NumPy comparison of shifted arrays. That is what keeps 10M rows in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowkit.history.columns import EVENTS, TERMINAL
from flowkit.history.flowset import FlowGraph, FlowSet

ADMIN_EVENTS = ("rollback", "recovery", "migrate")
ADMIN_ACTORS = ("admin", "recovery")


def _cat_codes(s: pd.Series, vocab: pd.Index) -> np.ndarray:
    """Codes of a categorical column in ``vocab`` (-1 for null)."""
    cat = s.astype("category") if not isinstance(s.dtype, pd.CategoricalDtype) else s
    table = vocab.get_indexer(cat.cat.categories).astype(np.int32)
    codes = cat.cat.codes.to_numpy()
    out = np.where(codes >= 0, table[np.maximum(codes, 0)] if len(table) else -1, -1).astype(np.int32)
    return out


def _categories(s: pd.Series) -> list[str]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [str(c) for c in s.cat.categories]
    return [str(c) for c in pd.unique(s.dropna())]


@dataclass
class Prepared:
    """Arrays in sorted order (index ``i`` is the i-th record of the sorted history).

    ``order[i]`` is the row of the original frame. Step names share one vocabulary
    ``steps`` (codes into it; -1 is null); ``START`` (= len(steps)) is the virtual node
    before a session's first step.
    """

    df: pd.DataFrame
    order: np.ndarray
    sid: np.ndarray
    sessions: pd.Index
    version: np.ndarray
    ts: np.ndarray
    event: np.ndarray  # codes into EVENTS
    status: np.ndarray  # codes into status_names
    status_names: list[str]
    terminal: np.ndarray  # bool
    actor_admin: np.ndarray  # bool
    from_step: np.ndarray
    to_step: np.ndarray
    steps: pd.Index
    path_offsets: np.ndarray  # len n+1, into path_values (sorted order)
    path_values: np.ndarray
    fv: np.ndarray  # codes of (flow, flow_version) pairs
    fv_pairs: list[tuple[str, str]]
    journey: np.ndarray  # per row: journey number (a new one at every start)

    @property
    def n(self) -> int:
        return len(self.version)

    @property
    def START(self) -> int:  # noqa: N802 - a constant of this vocabulary
        return len(self.steps)

    @cached_property
    def same(self) -> np.ndarray:
        """same[i]: row i has a previous row of the same session (row i-1)."""
        out = np.zeros(self.n, dtype=bool)
        out[1:] = self.sid[1:] == self.sid[:-1]
        return out

    @cached_property
    def first(self) -> np.ndarray:
        return ~self.same

    @cached_property
    def last(self) -> np.ndarray:
        out = np.ones(self.n, dtype=bool)
        out[:-1] = self.sid[:-1] != self.sid[1:]
        return out

    @cached_property
    def path_len(self) -> np.ndarray:
        return np.diff(self.path_offsets)

    @cached_property
    def path_parent(self) -> np.ndarray:
        """For each path element, the (sorted) row it belongs to."""
        return np.repeat(np.arange(self.n), self.path_len)

    @cached_property
    def path_pos(self) -> np.ndarray:
        pos: np.ndarray = np.arange(len(self.path_values)) - self.path_offsets[:-1][self.path_parent]
        return pos

    @cached_property
    def path_first(self) -> np.ndarray:
        """The first step of each row's path (-1 when empty)."""
        out = np.full(self.n, -1, dtype=np.int32)
        has = self.path_len > 0
        out[has] = self.path_values[self.path_offsets[:-1][has]]
        return out

    def event_is(self, *names: str) -> np.ndarray:
        codes = [EVENTS.index(n) for n in names]
        return np.isin(self.event, codes)

    @cached_property
    def exempt(self) -> np.ndarray:
        """Records written by an administrator or by recovery (rollback, recovery, migrate, admin commands)."""
        exempt: np.ndarray = self.event_is(*ADMIN_EVENTS) | self.actor_admin
        return exempt

    def step_name(self, code: int) -> str | None:
        if code < 0:
            return None
        if code == self.START:
            return "(start)"
        return str(self.steps[code])

    def session_id(self, i: int) -> str:
        return str(self.sessions[self.sid[i]])

    def graphs(self, flows: FlowSet | None) -> tuple[np.ndarray, list[FlowGraph | None]]:
        """Per row, the index of its expanded flow graph (-1 when that flow version is not loaded)."""
        graphs: list[FlowGraph | None] = []
        for name, version in self.fv_pairs:
            graphs.append(flows.graph(name, version) if flows is not None and flows.has(name, version) else None)
        table = np.array([i if g is not None else -1 for i, g in enumerate(graphs)] or [-1], dtype=np.int32)
        return table[self.fv] if self.n else np.zeros(0, np.int32), graphs


def prepare(df: pd.DataFrame) -> Prepared:
    """Sort and encode a canonical history frame (see :func:`flowkit.history.columns.normalize`)."""
    n = len(df)
    sid_codes, sessions = pd.factorize(df["session_id"], sort=False)
    sid_codes = sid_codes.astype(np.int64)
    version = df["version"].to_numpy(dtype=np.int64)
    # Exports are written session by session in version order; verify that instead of sorting.
    if n and (np.all(sid_codes[1:] >= sid_codes[:-1]) and
              np.all((sid_codes[1:] != sid_codes[:-1]) | (version[1:] >= version[:-1]))):
        order = np.arange(n)
    else:
        order = np.lexsort((version, sid_codes)) if n else np.zeros(0, dtype=np.int64)
    sorted_identity = bool(n == 0 or (order[0] == 0 and np.all(np.diff(order) == 1)))

    def take(a: np.ndarray) -> np.ndarray:
        return a if sorted_identity else a[order]

    # One vocabulary for every step name: from_step, to_step and path elements.
    path_arr = pa.array(df["path"]) if n else pa.array([], pa.list_(pa.string()))
    if isinstance(path_arr, pa.ChunkedArray):
        path_arr = path_arr.combine_chunks()
    if not sorted_identity:
        path_arr = path_arr.take(pa.array(order))
    flat = pc.list_flatten(path_arr)
    enc = pc.dictionary_encode(flat) if len(flat) else pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), pa.array([], pa.string()))
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    path_dict = [str(x) for x in enc.dictionary.to_pylist()]
    vocab_list = sorted(set(_categories(df["from_step"])) | set(_categories(df["to_step"])) | set(path_dict))
    steps = pd.Index(vocab_list, dtype=object)
    dict_map = steps.get_indexer(pd.Index(path_dict, dtype=object)).astype(np.int32)
    path_values = dict_map[enc.indices.to_numpy(zero_copy_only=False)] if len(flat) else np.zeros(0, np.int32)
    offsets = path_arr.offsets.to_numpy()
    path_offsets = (offsets - offsets[0]).astype(np.int64)

    event_codes = _cat_codes(df["event"], pd.Index(list(EVENTS), dtype=object))
    status_cat = df["status"] if isinstance(df["status"].dtype, pd.CategoricalDtype) else df["status"].astype("category")
    status_names = [str(c) for c in status_cat.cat.categories]
    status = status_cat.cat.codes.to_numpy().astype(np.int16)
    terminal_table = np.array([s in TERMINAL for s in status_names] + [False], dtype=bool)
    actor = df["actor"] if isinstance(df["actor"].dtype, pd.CategoricalDtype) else df["actor"].astype("category")
    admin_table = np.array([str(a) in ADMIN_ACTORS for a in actor.cat.categories] + [False], dtype=bool)
    actor_admin = admin_table[actor.cat.codes.to_numpy()]  # code -1 (null) indexes the trailing False

    flow = df["flow"].astype("category") if not isinstance(df["flow"].dtype, pd.CategoricalDtype) else df["flow"]
    fver = (df["flow_version"].astype("category") if not isinstance(df["flow_version"].dtype, pd.CategoricalDtype)
            else df["flow_version"])
    fc = flow.cat.codes.to_numpy().astype(np.int64)
    vc = fver.cat.codes.to_numpy().astype(np.int64)
    pair = fc * (len(fver.cat.categories) + 1) + vc
    pair_codes, pair_uniques = pd.factorize(pair) if n else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    width = len(fver.cat.categories) + 1
    fv_pairs = [(str(flow.cat.categories[int(p) // width]), str(fver.cat.categories[int(p) % width])) for p in pair_uniques]

    ev = take(event_codes)
    sid_sorted = take(sid_codes)
    start_code = EVENTS.index("start")
    new_journey = np.ones(n, dtype=bool)
    if n:
        new_journey[1:] = (sid_sorted[1:] != sid_sorted[:-1]) | (ev[1:] == start_code)
    journey = np.cumsum(new_journey) - 1

    return Prepared(
        df=df, order=order, sid=sid_sorted, sessions=pd.Index(sessions), version=take(version),
        ts=take(df["ts"].array.asi8 if n else np.zeros(0, np.int64)).astype(np.int64),
        event=ev, status=take(status), status_names=status_names,
        terminal=take(terminal_table[status]), actor_admin=take(actor_admin),
        from_step=take(_cat_codes(df["from_step"], steps)), to_step=take(_cat_codes(df["to_step"], steps)),
        steps=steps, path_offsets=path_offsets, path_values=path_values.astype(np.int32),
        fv=take(pair_codes.astype(np.int32)), fv_pairs=fv_pairs, journey=journey,
    )
