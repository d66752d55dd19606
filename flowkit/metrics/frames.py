"""The Redis counters as pandas DataFrames (notebooks, the dashboard, alerts)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from flowkit.metrics.redis import COUNTERS, minutes, split_field, totals


def counters_frame(client: Any) -> pd.DataFrame:
    """All-time counters, one row per (metric, labels): columns metric, labels, value."""
    rows = [{"metric": name, "labels": "|".join(labels), "value": v}
            for f, v in totals(client).items() for name, labels in [split_field(f)]]
    return pd.DataFrame(rows, columns=["metric", "labels", "value"]).sort_values(["metric", "labels"],
                                                                                  ignore_index=True)


def series_frame(client: Any, since_ms: int, until_ms: int, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per-minute values between two times: a UTC DatetimeIndex, one column per counter
    (summed over labels); minutes without traffic are 0. ``metrics``: which counters
    (default: all of :data:`COUNTERS`)."""
    names = metrics or list(COUNTERS)
    data = minutes(client, since_ms, until_ms)
    rows = []
    for _, counts in sorted(data.items()):
        row = dict.fromkeys(names, 0.0)
        for f, v in counts.items():
            name, _ = split_field(f)
            if name in row:
                row[name] += v
        rows.append(row)
    index = pd.to_datetime(sorted(data), unit="ms", utc=True)
    return pd.DataFrame(rows, index=index, columns=names).rename_axis("minute")


def labelled_series(client: Any, since_ms: int, until_ms: int, metric: str) -> pd.DataFrame:
    """Per-minute values of one counter split by its labels (columns: the label values joined by '|')."""
    data = minutes(client, since_ms, until_ms)
    rows: dict[int, dict[str, float]] = {}
    for minute, counts in data.items():
        row: dict[str, float] = {}
        for f, v in counts.items():
            name, labels = split_field(f)
            if name == metric:
                key = "|".join(labels)
                row[key] = row.get(key, 0.0) + v
        rows[minute] = row
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0).sort_index()
    frame.index = pd.to_datetime(frame.index, unit="ms", utc=True)
    return frame.rename_axis("minute")
