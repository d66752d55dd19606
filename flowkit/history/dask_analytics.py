"""``flowkit analytics --engine dask``: the count tables, added up over buckets of sessions.

Each bucket runs the pandas functions of :mod:`flowkit.history.analytics` on its sessions
(:func:`flowkit.history.dask_engine.analytics_bucket`); a journey never crosses sessions,
so the counts of the buckets add up to the counts of the whole export, and the driver
only sums them and recomputes the ratios from the sums with the same arithmetic (so the
floats are the same floats). Step order comes from the same owner (``_step_order``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowkit.errors import HistoryError
from flowkit.history import dask_engine
from flowkit.history.analytics import _step_order
from flowkit.history.flowset import FlowSet

STATUSES = ["completed", "failed", "cancelled", "handoff", "expired"]


def _frames(parts: Sequence[Mapping[str, Any]], name: str) -> list[pd.DataFrame]:
    return [p[name] for p in parts if len(p[name])]


def combine_rates(parts: Sequence[Mapping[str, Any]], *, by_version: bool = False) -> pd.DataFrame:
    keys = ["flow", "flow_version"] if by_version else ["flow"]
    frames = _frames(parts, "rates")
    if not frames:
        return next(iter(p["rates"] for p in parts)) if parts else pd.DataFrame()
    ints = ["journeys", *STATUSES, "active", "records", "answers", "service_calls", "engine_errors"]
    both = pd.concat(frames, ignore_index=True)
    for c in keys:
        both[c] = both[c].astype(object)
    # The rates' numerators are integers: recovered exactly from rate x denominator.
    both["invalid"] = np.rint(both["invalid_input_rate"] * both["answers"]).astype(np.int64)
    both["errors"] = np.rint(both["service_error_rate"] * both["service_calls"]).astype(np.int64)
    out = both.groupby(keys, sort=True)[[*ints, "invalid", "errors"]].sum()
    n = out["journeys"].astype(float)
    out["completion_rate"] = out["completed"] / n
    out["failure_rate"] = out["failed"] / n
    out["handoff_rate"] = out["handoff"] / n
    out["expiry_rate"] = out["expired"] / n
    out["invalid_input_rate"] = (out["invalid"] / out["answers"].where(out["answers"] > 0)).fillna(0.0)
    out["service_error_rate"] = (out["errors"] / out["service_calls"].where(out["service_calls"] > 0)).fillna(0.0)
    out = out.reset_index()
    for c in ints:
        out[c] = out[c].astype(np.int64)
    return out[list(frames[0].columns)]


def combine_funnel(parts: Sequence[Mapping[str, Any]], flows: FlowSet | None, *, by_version: bool = False) -> pd.DataFrame:
    keys = ["flow", "flow_version"] if by_version else ["flow"]
    frames = _frames(parts, "funnel")
    if not frames:
        return next(iter(p["funnel"] for p in parts)) if parts else pd.DataFrame()
    cols = list(frames[0].columns)
    ints = ["entered", "continued", "ended_here", "completed_here", "dropped", "active_here"]
    both = pd.concat(frames, ignore_index=True)
    sums = both.groupby([*keys, "step"], sort=False)[ints].sum()
    totals = combine_rates(parts, by_version=by_version).set_index(keys)["journeys"]
    versions_of: dict[str, set[str]] = {}
    for p in parts:
        for f, v in p["fv_pairs"]:
            versions_of.setdefault(f, set()).add(v)
    rows = []
    for key in sorted({k[:-1] for k in sums.index}):
        fname = key[0]
        versions = [key[1]] if by_version else sorted(versions_of.get(fname, ()))
        mine = sums.loc[key] if len(keys) > 1 else sums.loc[fname]
        seen = sorted(s for s, r in mine.iterrows() if r["entered"] or r["ended_here"])
        order, kinds = _step_order(flows, fname, versions, seen)
        total = int(totals.loc[key if len(keys) > 1 else fname])
        for step in order:
            r = mine.loc[step] if step in mine.index else None
            vals = {c: int(r[c]) if r is not None else 0 for c in ints}
            e, dropped = vals["entered"], vals["dropped"]
            rows.append({**dict(zip(keys, key, strict=True)), "step": step, "kind": kinds.get(step), **vals,
                         "drop_off_rate": dropped / e if e else 0.0, "reach": e / total if total else 0.0})
    out = pd.DataFrame(rows, columns=cols)
    for c in ints:
        out[c] = out[c].astype(np.int64)
    for c in ("drop_off_rate", "reach"):
        out[c] = out[c].astype(float)
    return out


def combine_drop_off(parts: Sequence[Mapping[str, Any]], flows: FlowSet | None, *, top: int | None = None,
                     include_end_steps: bool = False) -> pd.DataFrame:
    """:func:`flowkit.history.analytics.drop_off` over the combined funnel."""
    f = combine_funnel(parts, flows)
    if not len(f):
        f = pd.DataFrame({c: pd.Series(dtype=object) for c in ("flow", "step", "kind", "entered", "dropped", "drop_off_rate")})
        return f
    if not include_end_steps:
        f = f[f["kind"] != "end"]
    f = f[f["dropped"] > 0].sort_values(["dropped", "drop_off_rate"], ascending=False, kind="stable")
    f = f[["flow", "step", "kind", "entered", "dropped", "drop_off_rate"]].reset_index(drop=True)
    return f.head(top) if top is not None else f


def combine_retries(parts: Sequence[Mapping[str, Any]], flows: FlowSet | None) -> pd.DataFrame:
    frames = _frames(parts, "retries")
    if not frames:
        return next(iter(p["retries"] for p in parts)) if parts else pd.DataFrame()
    cols = list(frames[0].columns)
    both = pd.concat(frames, ignore_index=True)
    both["flow"] = both["flow"].astype(object)
    g = both.groupby(["flow", "step"], sort=True)
    out = g[["answers", "invalid", "journeys", "journeys_with_retry", "failed_over"]].sum()
    out["max_in_row"] = g["max_in_row"].max()
    out = out.reset_index()
    if flows is not None:
        # Ask steps of every flow version in the export (not of one bucket's versions).
        asks = set()
        for name, version in sorted({fv for p in parts for fv in p["fv_pairs"]}):
            if flows.has(name, version):
                asks |= {(name, s) for s in flows.graph(name, version).ask_steps}
        out = out[[(f, s) in asks for f, s in zip(out["flow"], out["step"], strict=True)]]
    out["retry_rate"] = out["invalid"] / out["answers"]
    for c in ("answers", "invalid", "journeys", "journeys_with_retry", "max_in_row", "failed_over"):
        out[c] = out[c].astype(np.int64)
    return out[cols].sort_values(["flow", "retry_rate"], ascending=[True, False], kind="stable").reset_index(drop=True)


def table(path: str | Path, name: str, flows: Any = None, *, flow: str | None = None, scheduler: str | None = None,
          buckets: int | None = None) -> pd.DataFrame:
    """One analytics table of an export, computed on Dask (the same DataFrame as the pandas engine's)."""
    if name not in dask_engine.ANALYTICS_TABLES:
        raise HistoryError(f"table {name!r} is not available on the dask engine (its medians and quantiles do not add "
                           f"up over buckets of sessions); use --engine pandas, or one of "
                           f"{', '.join(dask_engine.ANALYTICS_TABLES)}")
    dask_engine._require()
    fs = FlowSet.of(flows) if flows is not None else None
    parts = dask_engine.analytics_files(path, scheduler=scheduler, buckets=buckets, flows=fs,
                                        flow=flow if name in ("funnel", "drop_off", "retries") else None)
    if name == "funnel":
        return combine_funnel(parts, fs)
    if name == "drop_off":
        return combine_drop_off(parts, fs)
    if name == "retries":
        return combine_retries(parts, fs)
    return combine_rates(parts)
