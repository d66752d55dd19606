"""The dashboard's Experiments tab: split steps and their variants as the live states say.

Unlike the other tabs (counters and indexes only), this one must read session states: the
variant lives in each state's ``experiments`` slot. It reads at most ``limit`` of them (a
bounded SCAN), when the page loads or on the tab's Refresh button, never on a timer. The
unit is a user's latest session; the full analysis of every journey is
``flowkit analytics EXPORT -t experiments`` (flowkit/history/experiments.py), whose
statistics this reuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd

from flowkit.engine.state import EXPERIMENTS
from flowkit.flow.model import TERMINAL_STATUSES, Flow, SplitStep
from flowkit.history.experiments import Comparison, compare

DEFAULT_LIMIT = 2_000
COLUMNS = ("flow", "split", "variant", "sessions", "live", "completed", "completion_rate", "diff", "ci_low", "ci_high",
           "p_value", "warning")


def _order(flows: Mapping[str, Flow], flow: str, split: str, seen: Iterable[str]) -> list[str]:
    """The variants of ``split`` in the flow's order (the first is the control), then any others seen."""
    st = flows[flow].steps.get(split) if flow in flows else None
    declared = [v.name for v in st.split] if isinstance(st, SplitStep) else []
    return declared + sorted(set(seen) - set(declared))


def live_experiments(states: Iterable[Mapping[str, Any]], flows: Mapping[str, Flow], *,
                     limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """Per flow, split step and variant: sessions, live ones, completed, the completion rate
    and its comparison with the first variant (from at most ``limit`` states)."""
    rows = []
    for state in islice(states, limit):
        slot = (state.get("slots") or {}).get(EXPERIMENTS)
        if not isinstance(slot, Mapping):
            continue
        for split, variant in slot.items():
            rows.append((str(state.get("flow")), str(split), str(variant), str(state.get("status"))))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    seen = pd.DataFrame(rows, columns=["flow", "split", "variant", "status"])
    out: list[dict[str, Any]] = []
    for (flow, split), group in seen.groupby(["flow", "split"], sort=True):
        counts = {str(v): g for v, g in group.groupby("variant")}
        control: tuple[int, int] | None = None
        for variant in _order(flows, str(flow), str(split), counts):
            g = counts.get(variant, group.iloc[0:0])
            n, done = len(g), int((g["status"] == "completed").sum())
            c: Comparison | None = compare(done, n, *control) if control is not None else None
            out.append({"flow": flow, "split": split, "variant": variant, "sessions": n,
                        "live": int((~g["status"].isin(TERMINAL_STATUSES)).sum()), "completed": done,
                        "completion_rate": done / n if n else np.nan,
                        "diff": c.diff if c else np.nan, "ci_low": c.ci_low if c else np.nan,
                        "ci_high": c.ci_high if c else np.nan, "p_value": c.p_value if c else np.nan,
                        "warning": c.warning if c else ""})
            if control is None:
                control = (done, n)
    return pd.DataFrame(out, columns=list(COLUMNS))
