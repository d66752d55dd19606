"""Experiments (``split`` steps) read from a history: per split and variant, how many journeys
went through, how many completed, how many reached a goal step, and whether the difference
from the first variant (the control) is more than chance.

A journey's variant is read from its path: the step right after the split step is the
variant's ``goto``. When variants share a ``goto`` (an A/A test), the path cannot tell them
apart, and the variant is worked out the way the engine chose it (the same pure function of
session, flow and step, flowkit/engine/experiments.py) at the version the journey ran on.

The statistics come from statsmodels: a two-sided z-test of two proportions
(``proportions_ztest``) for the p-value and Newcombe's hybrid score interval for the
difference of proportions (``confint_proportions_2indep``), which stays sensible for small
samples and rates near 0 or 1, where the Wald interval does not. A variant with fewer than
:data:`MIN_JOURNEYS` journeys, or a test with an expected count below 5, gets a warning:
the normal approximation both rely on is then not to be trusted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowkit.engine.experiments import assign
from flowkit.errors import HistoryError
from flowkit.flow.model import Flow, FlowStep, SplitStep
from flowkit.history.columns import normalize
from flowkit.history.flowset import FlowGraph, FlowSet

MIN_JOURNEYS = 30  # per variant; below it the normal approximation is poor
MIN_EXPECTED = 5  # expected successes and failures per variant (the usual rule for a z-test)
ALPHA = 0.05

#: What :meth:`FlowSet.of` accepts: a FlowSet, flows (by name or not), or flow files and folders.
FlowsLike = FlowSet | Mapping[str, Flow] | Iterable[Flow] | str | Path

COLUMNS = ("flow", "split", "variant", "weight", "journeys", "completed", "completion_rate", "goal", "converted",
           "conversion_rate", "metric", "diff", "ci_low", "ci_high", "p_value", "significant", "warning")


@dataclass(frozen=True)
class Comparison:
    """A variant's metric against the control's: difference, its 95% interval and the p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    warning: str


def compare(successes: int, n: int, control_successes: int, control_n: int) -> Comparison:
    """``successes / n`` minus ``control_successes / control_n``, with statsmodels' tests."""
    if n == 0 or control_n == 0:
        return Comparison(np.nan, np.nan, np.nan, np.nan, "no journeys to compare")
    diff = successes / n - control_successes / control_n
    warnings = []
    if min(n, control_n) < MIN_JOURNEYS:
        warnings.append(f"small sample: {min(n, control_n)} journeys (< {MIN_JOURNEYS}) in a variant")
    pooled = (successes + control_successes) / (n + control_n)
    if pooled in (0.0, 1.0):
        # every journey did (or none did) the same: nothing varies, so there is no test to run
        warnings.append("no variation: every journey of both variants had the same outcome")
        return Comparison(diff, np.nan, np.nan, np.nan, "; ".join(warnings))
    # imported here: statsmodels (and scipy) cost a second, and `import flowkit.history` is on many paths
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    if min(n, control_n) * min(pooled, 1 - pooled) < MIN_EXPECTED:
        warnings.append(f"expected count below {MIN_EXPECTED}: the z-test is unreliable")
    _, p = proportions_ztest(np.array([successes, control_successes]), np.array([n, control_n]))
    low, high = confint_proportions_2indep(successes, n, control_successes, control_n, method="newcomb",
                                           compare="diff", alpha=ALPHA)
    return Comparison(float(diff), float(low), float(high), float(p), "; ".join(warnings))


def _journeys(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per journey, the history rows with their journey number), as analytics counts
    journeys: a ``start`` record (or a new session) begins one."""
    df = df.sort_values(["session_id", "version"], kind="stable").reset_index(drop=True)
    sid = df["session_id"].astype(str)
    new = (sid != sid.shift()) | (df["event"].astype(str) == "start")
    df = df.assign(journey=new.cumsum() - 1)
    g = df.groupby("journey", sort=True)
    per = pd.DataFrame({
        "session_id": g["session_id"].first().astype(str),
        "flow": g["flow"].first().astype(str),
        "flow_version": g["flow_version"].first().astype(str),
        "status": g["status"].last().astype(str),
    })
    return per, df


def _owner(graph: FlowGraph, qualified: str) -> str:
    """The name of the flow a (qualified) step belongs to: the root, or the sub-flow of its caller."""
    caller, _, _ = qualified.rpartition("/")
    if not caller:
        return graph.flow
    step = graph.steps.get(caller)
    return step.flow if isinstance(step, FlowStep) else graph.flow


def _splits(graph: FlowGraph) -> dict[str, SplitStep]:
    return {q: s for q, s in graph.steps.items() if isinstance(s, SplitStep)}


def assignments(history: pd.DataFrame, flows: FlowsLike) -> pd.DataFrame:
    """One row per journey through a split step: journey, session_id, flow, flow_version,
    split (qualified step name), variant, status (final) and ``steps`` (every step it went through)."""
    fs = FlowSet.of(flows)
    per, rows = _journeys(normalize(history, "history"))
    # only journeys of flow versions that have a split step are read row by row
    with_splits = {(f.name, f.version_id) for f in fs.all() if _splits(fs.graph(f.name, f.version_id))}
    keep = per.index[[(f, v) in with_splits for f, v in zip(per["flow"], per["flow_version"], strict=True)]]
    per, rows = per.loc[keep], rows[rows["journey"].isin(keep)]
    steps = rows[["journey", "path"]].explode("path").dropna()
    visited = steps.groupby("journey")["path"].agg(lambda s: frozenset(map(str, s)))
    out: list[dict[str, Any]] = []
    graphs: dict[tuple[str, str], FlowGraph | None] = {}
    has_why = "why" in rows.columns
    for jid, group in rows.groupby("journey", sort=True):
        path_rows = group["path"]
        told = _told_variants(group["why"]) if has_why else {}
        j = per.loc[jid]
        key = (j["flow"], j["flow_version"])
        if key not in graphs:
            graphs[key] = fs.graph(*key) if fs.has(*key) else None
        graph = graphs[key]
        if graph is None:
            continue
        splits = _splits(graph)
        if not splits:
            continue
        seen: set[str] = set()
        for path in path_rows:
            path = [str(x) for x in path]
            for i, name in enumerate(path):
                st = splits.get(name)
                if st is None or name in seen:
                    continue
                seen.add(name)
                out.append({"journey": int(jid), "session_id": j["session_id"], "flow": j["flow"],
                            "flow_version": j["flow_version"], "split": name,
                            "variant": told.get(name) or _variant(graph, name, st, j["session_id"], path[i + 1: i + 2]),
                            "status": j["status"], "steps": visited.get(jid, frozenset())})
    cols = ["journey", "session_id", "flow", "flow_version", "split", "variant", "status", "steps"]
    return pd.DataFrame(out, columns=cols)


def _told_variants(whys: pd.Series) -> dict[str, str]:
    """The variants the records themselves name (``why.splits``, written by the engine since
    records carry ``why``): exact even where variants share a goto or weights changed."""
    out: dict[str, str] = {}
    for text in whys.dropna():
        try:
            why = json.loads(text)
        except (TypeError, ValueError):
            continue
        for hit in why.get("splits", ()) if isinstance(why, dict) else ():
            if isinstance(hit, dict) and isinstance(hit.get("step"), str) and isinstance(hit.get("variant"), str):
                out.setdefault(hit["step"], hit["variant"])
    return out


def _variant(graph: FlowGraph, qualified: str, st: SplitStep, session_id: str, after: list[str]) -> str:
    prefix = qualified.rpartition("/")[0]
    went = after[0].rpartition("/")[2] if after and after[0].rpartition("/")[0] == prefix else None
    by_goto = [v for v in st.split if v.goto == went]
    if len(by_goto) == 1:
        return by_goto[0].name
    return assign(session_id, _owner(graph, qualified), st.name, st.split).name


def experiment_results(history: pd.DataFrame, flows: FlowsLike | None, *, goal: str | None = None,
                       flow: str | None = None) -> pd.DataFrame:
    """Per split step and variant: journeys, completion, conversion to ``goal`` (a step name,
    qualified inside sub-flows) and the comparison with the first variant.

    ``metric`` says what ``diff``, ``ci_low``/``ci_high`` (95%) and ``p_value`` compare: the
    conversion rate when ``goal`` is given, else the completion rate. ``flows`` (files loaded
    into a :class:`FlowSet`, or flows) must hold the versions the journeys ran on.
    """
    if flows is None:
        raise HistoryError("experiments need the flow files (--flows) to know the split steps and their variants")
    fs = FlowSet.of(flows)
    a = assignments(history, fs)
    if flow is not None:
        a = a[a["flow"] == flow]
    rows: list[dict[str, Any]] = []
    for (flow_name, split), group in a.groupby(["flow", "split"], sort=True):
        order = _variant_order(fs, str(flow_name), str(split))
        counts = _counts(group, goal)
        for name in [*order, *sorted(set(counts) - set(order))]:
            rows.append({"flow": flow_name, "split": split, "variant": name,
                         "weight": order.get(name, np.nan), **counts.get(name, {"journeys": 0, "completed": 0, "converted": 0})})
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    df = pd.DataFrame(rows)
    df["completion_rate"] = df["completed"] / df["journeys"].where(df["journeys"] > 0)
    df["goal"] = goal
    df["conversion_rate"] = (df["converted"] / df["journeys"].where(df["journeys"] > 0)) if goal else np.nan
    if not goal:
        df["converted"] = pd.NA
    df["metric"] = f"conversion to {goal}" if goal else "completion"
    success = "converted" if goal else "completed"
    stats: list[Comparison | None] = []
    for (_, _), group in df.groupby(["flow", "split"], sort=False):
        control = group.iloc[0]
        stats.append(None)
        for _, r in group.iloc[1:].iterrows():
            stats.append(compare(int(r[success]), int(r["journeys"]), int(control[success]), int(control["journeys"])))
    df = df.reset_index(drop=True)
    for col in ("diff", "ci_low", "ci_high", "p_value"):
        df[col] = [getattr(s, col) if s is not None else np.nan for s in stats]
    df["significant"] = [bool(s.p_value < ALPHA and not (s.ci_low <= 0 <= s.ci_high)) if s is not None and s.p_value == s.p_value
                         else pd.NA for s in stats]
    df["warning"] = [_control_warning(r) if s is None else s.warning for s, (_, r) in zip(stats, df.iterrows(), strict=True)]
    return df[list(COLUMNS)]


def _control_warning(r: pd.Series) -> str:
    n = int(r["journeys"])
    if n == 0:
        return "no journeys"
    return f"small sample: {n} journeys (< {MIN_JOURNEYS})" if n < MIN_JOURNEYS else ""


def _variant_order(fs: FlowSet, flow: str, split: str) -> dict[str, int]:
    """Variants of ``split`` with their weights, in the order of the latest version that has it."""
    for version in reversed(fs.versions(flow)):
        st = _splits(fs.graph(flow, version)).get(split)
        if st is not None:
            return {v.name: v.weight for v in st.split}
    return {}


def _counts(group: pd.DataFrame, goal: str | None) -> Mapping[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, g in group.groupby("variant", sort=False):
        out[str(name)] = {
            "journeys": len(g),
            "completed": int((g["status"] == "completed").sum()),
            "converted": int(g["steps"].map(lambda s: goal in s).sum()) if goal else 0,
        }
    return out
