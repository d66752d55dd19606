"""Flow analytics from a history: funnels, drop-off, dwell time, rates, retries, path
variants and the directly-follows graph (process mining), as pandas DataFrames.

The unit is a *journey*: one run of a flow in a session, from a ``start`` record up to
the next ``start`` (a session id is a WhatsApp user, who may come back and start again).
Steps are qualified inside sub-flows (``contact/ask_email``).

The funnel numbers add up by construction, so there is never a negative drop-off
(Typebot's complaint): every journey that entered a step either moved on or ended there,
and every journey ends at exactly one step (the ``to_step`` of its last record)::

    entered = continued + ended_here
    ended_here = completed_here + dropped + active_here
    sum(ended_here over the steps of a flow) = journeys of that flow

``dropped`` counts journeys that ended at the step with a terminal status other than
``completed`` (failed, cancelled, handoff, expired); ``active_here`` those still running
there at export time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flowkit.history._prep import Prepared, prepare
from flowkit.history.columns import EVENTS, normalize
from flowkit.history.flowset import FlowSet

START_NODE = "(start)"


def _prep(history: pd.DataFrame | Prepared) -> Prepared:
    return history if isinstance(history, Prepared) else prepare(normalize(history, "history"))


def _journey_frame(p: Prepared) -> pd.DataFrame:
    """One row per journey: its flow and version (at start), session, times, final step and status."""
    if not p.n:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("journey", np.int64), ("session_id", object), ("flow", object), ("flow_version", object), ("first_row", np.int64),
            ("last_row", np.int64), ("started", np.int64), ("ended", np.int64), ("final_step", np.int32), ("status", object),
            ("records", np.int64))})
    j = p.journey
    starts = np.flatnonzero(np.concatenate(([True], j[1:] != j[:-1])))
    ends = np.concatenate((starts[1:] - 1, [p.n - 1]))
    fv = [p.fv_pairs[c] for c in p.fv[starts]]
    return pd.DataFrame({
        "journey": j[starts], "session_id": p.sessions[p.sid[starts]].astype(object),
        "flow": [f for f, _ in fv], "flow_version": [v for _, v in fv],
        "first_row": starts, "last_row": ends, "started": p.ts[starts], "ended": p.ts[ends],
        "final_step": p.to_step[ends], "status": [p.status_names[s] for s in p.status[ends]],
        "records": ends - starts + 1,
    })


def _filter(frame: pd.DataFrame, flow: str | None) -> pd.DataFrame:
    return frame[frame["flow"] == flow] if flow is not None else frame


def journeys(history: pd.DataFrame | Prepared) -> pd.DataFrame:
    """One row per journey: session_id, flow, flow_version, started/ended (UTC), duration,
    records, final step and status."""
    p = _prep(history)
    jf = _journey_frame(p)
    return pd.DataFrame({
        "session_id": jf["session_id"].astype("str"),
        "journey": jf["journey"].astype(np.int64),
        "flow": jf["flow"].astype("category"),
        "flow_version": jf["flow_version"].astype("category"),
        "started": pd.to_datetime(jf["started"].astype(np.int64), unit="ms", utc=True).astype("datetime64[ms, UTC]"),
        "ended": pd.to_datetime(jf["ended"].astype(np.int64), unit="ms", utc=True).astype("datetime64[ms, UTC]"),
        "duration_s": (jf["ended"] - jf["started"]).astype(float) / 1000.0,
        "records": jf["records"].astype(np.int64),
        "final_step": pd.Categorical([p.step_name(int(c)) for c in jf["final_step"]]),
        "status": jf["status"].astype("category"),
    })


def _entered_pairs(p: Prepared) -> pd.DataFrame:
    """Unique (journey, step) pairs: every step a journey entered (path elements and to_steps)."""
    j_el = p.journey[p.path_parent]
    has_to = p.to_step >= 0
    jj = np.concatenate((j_el, p.journey[has_to]))
    ss = np.concatenate((p.path_values, p.to_step[has_to]))
    key = jj.astype(np.int64) * (len(p.steps) + 1) + ss
    key = np.unique(key)
    return pd.DataFrame({"journey": key // (len(p.steps) + 1), "step": (key % (len(p.steps) + 1)).astype(np.int32)})


def _step_order(flows: FlowSet | None, flow: str, versions: Sequence[str],
                seen: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Steps in the order of the flow graphs (breadth-first from start, end steps last), then
    any others seen; and each step's kind (from the newest version that has it)."""
    order: list[str] = []
    kinds: dict[str, str] = {}
    ends: list[str] = []
    if flows is not None:
        for v in reversed(list(versions)):  # newest first: its order and kinds win
            if not flows.has(flow, v):
                continue
            g = flows.graph(flow, v)
            adj: dict[str, list[str]] = {}
            for a, b in g.edges:
                adj.setdefault(a, []).append(b)
            queue = [g.start]
            visited = {g.start}
            walk: list[str] = []
            while queue:
                cur = queue.pop(0)
                walk.append(cur)
                for b in sorted(adj.get(cur, []), key=list(g.steps).index):
                    if b not in visited:
                        visited.add(b)
                        queue.append(b)
            walk.extend(n for n in g.steps if n not in visited)
            for n in walk:
                kinds.setdefault(n, g.steps[n].kind)
                target = ends if g.steps[n].kind == "end" else order
                if n not in order and n not in ends:
                    target.append(n)
    order.extend(s for s in seen if s not in order and s not in ends)
    return order + ends, kinds


def funnel(history: pd.DataFrame | Prepared, flows: Any = None, *, flow: str | None = None,
           by_version: bool = False) -> pd.DataFrame:
    """Per flow and step: journeys that entered it, continued, ended there (completed,
    dropped, still active), drop-off rate and reach (share of the flow's journeys).

    With ``flows`` the steps come in graph order and never-entered steps are listed with 0.
    """
    p = _prep(history)
    fs = FlowSet.of(flows) if flows is not None else None
    jf = _journey_frame(p)
    keys = ["flow", "flow_version"] if by_version else ["flow"]
    cols = [*keys, "step", "kind", "entered", "continued", "ended_here", "completed_here", "dropped", "active_here",
            "drop_off_rate", "reach"]
    if jf.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    pairs = _entered_pairs(p)
    meta = jf.set_index("journey")
    pairs = pairs.join(meta[keys], on="journey")
    entered = pairs.groupby([*keys, "step"], observed=True).size().rename("entered")
    final = jf[jf["final_step"] >= 0].rename(columns={"final_step": "step"})
    final = final.assign(completed=final["status"] == "completed",
                         active=~final["status"].isin(["completed", "failed", "cancelled", "handoff", "expired"]))
    ended = final.groupby([*keys, "step"], observed=True).agg(
        ended_here=("journey", "size"), completed_here=("completed", "sum"), active_here=("active", "sum"))
    table = pd.concat([entered, ended], axis=1).fillna(0).astype(np.int64).reset_index()
    per_flow = jf.groupby(keys, observed=True).size().rename("journeys")
    rows = []
    for key, grp in table.groupby(keys, observed=True, sort=True):
        key_t = key if isinstance(key, tuple) else (key,)
        fname = key_t[0]
        if flow is not None and fname != flow:
            continue
        names = {int(c): p.step_name(int(c)) or "" for c in grp["step"]}
        versions = [key_t[1]] if by_version else sorted(set(jf.loc[jf["flow"] == fname, "flow_version"]))
        order, kinds = _step_order(fs, fname, versions, [names[c] for c in grp["step"]])
        by_name = {names[int(r.step)]: r for r in grp.itertuples(index=False)}
        total = int(per_flow.loc[key])
        for step in order:
            r = by_name.get(step)
            e = int(r.entered) if r is not None else 0
            ended_here = int(r.ended_here) if r is not None else 0
            comp = int(r.completed_here) if r is not None else 0
            act = int(r.active_here) if r is not None else 0
            dropped = ended_here - comp - act
            rows.append({**dict(zip(keys, key_t, strict=True)), "step": step,
                         "kind": kinds.get(step),
                         "entered": e, "continued": e - ended_here, "ended_here": ended_here, "completed_here": comp,
                         "dropped": dropped, "active_here": act, "drop_off_rate": dropped / e if e else 0.0,
                         "reach": e / total if total else 0.0})
    out = pd.DataFrame(rows, columns=cols)
    for c in ("entered", "continued", "ended_here", "completed_here", "dropped", "active_here"):
        out[c] = out[c].astype(np.int64)
    for c in ("drop_off_rate", "reach"):
        out[c] = out[c].astype(float)
    return out


def drop_off(history: pd.DataFrame | Prepared, flows: Any = None, *, flow: str | None = None,
             top: int | None = None, include_end_steps: bool = False) -> pd.DataFrame:
    """Where journeys are lost: the funnel's steps with drop-offs, most dropped first.

    End steps (a designed ``handoff`` or ``failed`` ending) are left out unless
    ``include_end_steps``: what matters is where users leave in the middle of a flow.
    """
    f = funnel(history, flows, flow=flow)
    if not include_end_steps:
        f = f[f["kind"] != "end"]  # without flows the kind is unknown and every step stays
    f = f[f["dropped"] > 0].sort_values(["dropped", "drop_off_rate"], ascending=False, kind="stable")
    f = f[["flow", "step", "kind", "entered", "dropped", "drop_off_rate"]].reset_index(drop=True)
    return f.head(top) if top is not None else f


def dwell(history: pd.DataFrame | Prepared, *, flow: str | None = None) -> pd.DataFrame:
    """Time spent at each step where sessions wait (ask, call, sub-flow), per visit, in
    seconds: count, median, p90, mean, max.

    A visit runs from the record that brought the session to the step to the first record
    that moved it elsewhere or ended it; re-prompts stay in the visit. Visits still open at
    export time are left out (their length is unknown).
    """
    p = _prep(history)
    cols = ["flow", "step", "visits", "median_s", "p90_s", "mean_s", "max_s"]
    if p.n < 2:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    j = p.journey
    prev_same = np.concatenate(([False], j[1:] == j[:-1]))
    prev_terminal = np.concatenate(([False], p.terminal[:-1]))
    prev_to = np.concatenate(([-2], p.to_step[:-1]))
    new_seg = ~prev_same | (p.to_step != prev_to) | p.terminal | prev_terminal
    seg = np.cumsum(new_seg) - 1
    seg_start = np.flatnonzero(new_seg)
    seg_j = j[seg_start]
    seg_ts = p.ts[seg_start]
    has_next = np.concatenate((seg_j[1:] == seg_j[:-1], [False]))
    keep = has_next & ~p.terminal[seg_start] & (p.to_step[seg_start] >= 0)
    dur = (np.concatenate((seg_ts[1:], [0])) - seg_ts)[keep] / 1000.0
    rows = seg_start[keep]
    del seg
    flows_of = np.array([f for f, _ in p.fv_pairs] or [""], dtype=object)
    frame = pd.DataFrame({"flow": flows_of[p.fv[rows]] if len(rows) else np.array([], dtype=object),
                          "step": p.to_step[rows], "seconds": dur})
    frame = _filter(frame, flow)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    g = frame.groupby(["flow", "step"], observed=True)["seconds"]
    out = pd.DataFrame({"visits": g.size(), "median_s": g.median(), "p90_s": g.quantile(0.9), "mean_s": g.mean(),
                        "max_s": g.max()}).reset_index()
    out["step"] = [p.step_name(int(c)) for c in out["step"]]
    return out[cols].sort_values(["flow", "median_s"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _error_classes(p: Prepared) -> np.ndarray | None:
    if "error" not in p.df.columns:
        return None
    err = p.df["error"]
    if err.isna().all():
        return np.full(p.n, "", dtype=object)
    cls = err.fillna("").astype(str).str.split(":", n=1).str[0].to_numpy(dtype=object)
    ordered: np.ndarray = cls if (not p.n or (p.order[0] == 0 and np.all(np.diff(p.order) == 1))) else cls[p.order]
    return ordered


def rates(history: pd.DataFrame | Prepared, *, by_version: bool = False) -> pd.DataFrame:
    """Per flow: journeys by final status, completion/failure/handoff/expiry rates, and
    error rates (invalid answers per answer, failed service calls per call outcome)."""
    p = _prep(history)
    jf = _journey_frame(p)
    keys = ["flow", "flow_version"] if by_version else ["flow"]
    statuses = ["completed", "failed", "cancelled", "handoff", "expired"]
    if jf.empty:
        cols = [*keys, "journeys", *statuses, "active", "completion_rate", "failure_rate", "handoff_rate", "expiry_rate",
                "records", "answers", "invalid_input_rate", "service_calls", "service_error_rate", "engine_errors"]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    counts = pd.crosstab([jf[k] for k in keys], jf["status"])
    for s in statuses:
        if s not in counts.columns:
            counts[s] = 0
    out = counts[statuses].copy()
    out.columns.name = None
    out.insert(0, "journeys", counts.sum(axis=1))
    out["active"] = out["journeys"] - out[statuses].sum(axis=1)
    n = out["journeys"].astype(float)
    out["completion_rate"] = out["completed"] / n
    out["failure_rate"] = out["failed"] / n
    out["handoff_rate"] = out["handoff"] / n
    out["expiry_rate"] = out["expired"] / n
    # Record-level error rates.
    row_flow = np.array([p.fv_pairs[c][0] for c in range(len(p.fv_pairs))] or [""], dtype=object)[p.fv]
    row_ver = np.array([p.fv_pairs[c][1] for c in range(len(p.fv_pairs))] or [""], dtype=object)[p.fv]
    cls = _error_classes(p)
    is_msg = p.event == EVENTS.index("message")
    rec = pd.DataFrame({"flow": row_flow, "flow_version": row_ver, "answer": is_msg,
                        "invalid": is_msg & (cls == "invalid_input") if cls is not None else False,
                        "call": p.event_is("service_result"),
                        "call_error": (p.event_is("service_result") & (cls == "service_error")) if cls is not None else False,
                        "call_timeout": (p.event_is("timeout") & (cls == "timeout")) if cls is not None else False,
                        "engine_error": np.array([c == "engine_error" for c in cls], dtype=bool) if cls is not None else False})
    agg = rec.groupby(keys, observed=True).agg(records=("answer", "size"), answers=("answer", "sum"),
                                               invalid=("invalid", "sum"), calls=("call", "sum"),
                                               call_errors=("call_error", "sum"), call_timeouts=("call_timeout", "sum"),
                                               engine_errors=("engine_error", "sum"))
    out = out.join(agg)
    out["invalid_input_rate"] = (out["invalid"] / out["answers"].where(out["answers"] > 0)).fillna(0.0)
    out["service_calls"] = out["calls"] + out["call_timeouts"]
    out["service_error_rate"] = ((out["call_errors"] + out["call_timeouts"]) /
                                 out["service_calls"].where(out["service_calls"] > 0)).fillna(0.0)
    out = out.drop(columns=["invalid", "calls", "call_errors", "call_timeouts"]).reset_index()
    for c in ("journeys", *statuses, "active", "records", "answers", "service_calls", "engine_errors"):
        out[c] = out[c].astype(np.int64)
    return out


def retries(history: pd.DataFrame | Prepared, flows: Any = None, *, flow: str | None = None) -> pd.DataFrame:
    """Per ask step: answers, invalid answers, retry rate, journeys that needed a retry,
    the longest run of invalid answers in a row and how often invalid answers led to
    ``on_fail``."""
    p = _prep(history)
    fs = FlowSet.of(flows) if flows is not None else None
    cols = ["flow", "step", "answers", "invalid", "retry_rate", "journeys", "journeys_with_retry", "max_in_row",
            "failed_over"]
    cls = _error_classes(p)
    is_msg = (p.event == EVENTS.index("message")) & (p.from_step >= 0)
    if not is_msg.any() or cls is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    invalid = is_msg & (cls == "invalid_input")
    reentry = invalid & (p.path_len == 1) & (p.path_first == p.from_step)
    failed_over = invalid & ~reentry & (p.path_len > 0)
    rows = np.flatnonzero(is_msg)
    flows_of = np.array([f for f, _ in p.fv_pairs] or [""], dtype=object)
    frame = pd.DataFrame({"flow": flows_of[p.fv[rows]], "step": p.from_step[rows], "journey": p.journey[rows],
                          "invalid": invalid[rows], "reentry": reentry[rows], "failed_over": failed_over[rows]})
    frame = _filter(frame, flow)
    # Runs of invalid answers in a row at one step (per journey).
    brk = np.ones(len(frame), dtype=bool)
    inv = frame["invalid"].to_numpy()
    st = frame["step"].to_numpy()
    jj = frame["journey"].to_numpy()
    if len(frame) > 1:
        brk[1:] = ~(inv[1:] & inv[:-1] & (st[1:] == st[:-1]) & (jj[1:] == jj[:-1]))
    run = np.cumsum(brk)
    frame["run"] = np.where(inv, run, -1)
    run_len = frame[frame["run"] >= 0].groupby("run").size()
    frame["run_len"] = frame["run"].map(run_len).fillna(0).astype(np.int64)
    g = frame.groupby(["flow", "step"], observed=True)
    out = pd.DataFrame({
        "answers": g.size(), "invalid": g["invalid"].sum(), "journeys": g["journey"].nunique(),
        "journeys_with_retry": frame[frame["invalid"]].groupby(["flow", "step"], observed=True)["journey"].nunique(),
        "max_in_row": g["run_len"].max(), "failed_over": g["failed_over"].sum(),
    }).fillna(0).reset_index()
    out["step"] = [p.step_name(int(c)) for c in out["step"]]
    if fs is not None:
        asks = set()
        for name, version in p.fv_pairs:
            if fs.has(name, version):
                g2 = fs.graph(name, version)
                asks |= {(name, s) for s in g2.ask_steps}
        out = out[[(f, s) in asks for f, s in zip(out["flow"], out["step"], strict=True)]]
    out["retry_rate"] = out["invalid"] / out["answers"]
    for c in ("answers", "invalid", "journeys", "journeys_with_retry", "max_in_row", "failed_over"):
        out[c] = out[c].astype(np.int64)
    return out[cols].sort_values(["flow", "retry_rate"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _sequences(p: Prepared, collapse_retries: bool) -> pd.DataFrame:
    """Flattened step sequences: (journey, step code, ts), in order."""
    j_el = p.journey[p.path_parent]
    s_el = p.path_values
    ts_el = p.ts[p.path_parent]
    if collapse_retries and len(s_el):
        keep = np.ones(len(s_el), dtype=bool)
        keep[1:] = ~((j_el[1:] == j_el[:-1]) & (s_el[1:] == s_el[:-1]))
        j_el, s_el, ts_el = j_el[keep], s_el[keep], ts_el[keep]
    return pd.DataFrame({"journey": j_el, "step": s_el, "ts": ts_el})


def variants(history: pd.DataFrame | Prepared, *, flow: str | None = None, top: int | None = 20,
             collapse_retries: bool = True, separator: str = " > ") -> pd.DataFrame:
    """Path variants (process-mining style): each distinct sequence of steps a journey went
    through, with its count, share of the flow's journeys, completion share and median duration."""
    p = _prep(history)
    cols = ["flow", "variant", "journeys", "share", "completed_share", "median_duration_s", "steps"]
    jf = _journey_frame(p)
    if jf.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    seq = _sequences(p, collapse_retries)
    names = np.array([str(s) for s in p.steps] + [START_NODE], dtype=object)
    seq["name"] = names[seq["step"].to_numpy()]
    joined = seq.groupby("journey", sort=True)["name"].agg(separator.join)
    lengths = seq.groupby("journey", sort=True).size()
    jf = jf.set_index("journey")
    jf["variant"] = joined.reindex(jf.index).fillna("")
    jf["steps"] = lengths.reindex(jf.index).fillna(0).astype(np.int64)
    jf["duration_s"] = (jf["ended"] - jf["started"]) / 1000.0
    jf["is_completed"] = jf["status"] == "completed"
    jf = _filter(jf, flow)
    g = jf.groupby(["flow", "variant"], observed=True)
    out = pd.DataFrame({"journeys": g.size(), "completed_share": g["is_completed"].mean(),
                        "median_duration_s": g["duration_s"].median(), "steps": g["steps"].first()}).reset_index()
    totals = jf.groupby("flow").size()
    out["share"] = out["journeys"] / out["flow"].map(totals).astype(float)
    out = out.sort_values(["flow", "journeys", "variant"], ascending=[True, False, True], kind="stable")
    if top is not None:
        out = out.groupby("flow", sort=False).head(top)
    out["journeys"] = out["journeys"].astype(np.int64)
    return out[cols].reset_index(drop=True)


def dfg(history: pd.DataFrame | Prepared, *, flow: str | None = None, collapse_retries: bool = False) -> pd.DataFrame:
    """The directly-follows graph: how often step ``target`` came right after ``source``
    in a journey (retries are the self-pairs of ask steps), with ``(start)`` before the
    first step and ``(end: status)`` after the last; count, distinct journeys and the
    median seconds between them."""
    p = _prep(history)
    cols = ["flow", "source", "target", "count", "journeys", "median_s"]
    jf = _journey_frame(p)
    if jf.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    seq = _sequences(p, collapse_retries)
    names = np.array([str(s) for s in p.steps] + [START_NODE], dtype=object)
    j = seq["journey"].to_numpy()
    s = seq["step"].to_numpy()
    ts = seq["ts"].to_numpy()
    first = np.ones(len(j), dtype=bool)
    first[1:] = j[1:] != j[:-1]
    src = np.where(first, len(p.steps), np.concatenate(([0], s[:-1])))
    dt_ms = np.where(first, 0, ts - np.concatenate(([0], ts[:-1])))
    journey_flow = jf.set_index("journey")["flow"]
    pairs = pd.DataFrame({"journey": j, "source": names[src], "target": names[s], "ms": dt_ms})
    # The end of each journey: its last step (to_step of the last record) -> (end: status).
    last = jf[jf["final_step"] >= 0]
    ends = pd.DataFrame({"journey": last["journey"].to_numpy(),
                         "source": names[last["final_step"].to_numpy()],
                         "target": ["(end: " + st + ")" if st in ("completed", "failed", "cancelled", "handoff", "expired")
                                    else "(active)" for st in last["status"]],
                         "ms": 0})
    pairs = pd.concat([pairs, ends], ignore_index=True)
    pairs["flow"] = pairs["journey"].map(journey_flow)
    pairs = _filter(pairs, flow)
    g = pairs.groupby(["flow", "source", "target"], observed=True)
    out = pd.DataFrame({"count": g.size(), "journeys": g["journey"].nunique(), "median_s": g["ms"].median() / 1000.0})
    out = out.reset_index().sort_values(["flow", "count"], ascending=[True, False], kind="stable")
    out["count"] = out["count"].astype(np.int64)
    out["journeys"] = out["journeys"].astype(np.int64)
    return out[cols].reset_index(drop=True)


def summary(history: pd.DataFrame | Prepared, flows: Any = None) -> dict[str, pd.DataFrame]:
    """Every analytics table at once (one preparation of the data): funnel, drop_off,
    dwell, rates, retries, variants, dfg."""
    p = _prep(history)
    return {"funnel": funnel(p, flows), "drop_off": drop_off(p, flows), "dwell": dwell(p), "rates": rates(p),
            "retries": retries(p, flows), "variants": variants(p), "dfg": dfg(p)}


TABLES = ("funnel", "drop_off", "dwell", "rates", "retries", "variants", "dfg")
