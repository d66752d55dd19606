"""Small hand-made histories: rows with defaults, for tests that need exact cases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from flowkit.history.columns import rows_to_table, table_to_frame

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z


def rec(sid: str, version: int, from_step: str | None, path: list[str], *, to_step: str | None = None,
        event: str = "message", status: str = "waiting_input", ts: int | None = None, flow: str = "order_pizza",
        flow_version: str = "3", message_id: str | None = "auto", actor: str = "runtime", error: str | None = None,
        input: str | None = None) -> dict[str, Any]:
    """One history row; to_step defaults to the path's last step (or from_step when the path is empty)."""
    return {
        "session_id": sid, "flow": flow, "flow_version": flow_version, "version": version,
        "ts": T0 + version * 60_000 if ts is None else ts, "event": event, "from_step": from_step,
        "to_step": to_step if to_step is not None else (path[-1] if path else from_step), "path": path,
        "status": status, "message_id": f"m.{sid}.{version}" if message_id == "auto" else message_id,
        "input": input, "error": error, "actor": actor,
    }


def pizza_ok(sid: str, *, large: bool = False, t0: int = T0) -> list[dict[str, Any]]:
    """A completed order_pizza v3 journey, as the engine records it."""
    rows = [rec(sid, 1, None, ["welcome", "ask_size"], event="start")]
    if large:
        rows += [rec(sid, 2, "ask_size", ["upsell"]), rec(sid, 3, "upsell", ["ask_qty"])]
    else:
        rows += [rec(sid, 2, "ask_size", ["ask_qty"])]
    v = len(rows)
    rows += [rec(sid, v + 1, "ask_qty", ["ask_address"]),
             rec(sid, v + 2, "ask_address", ["place_order"], status="waiting_service"),
             rec(sid, v + 3, "place_order", ["done"], event="service_result", status="completed",
                 message_id=f"result:{sid}/{v + 2}/place_order")]
    for r in rows:
        r["ts"] = t0 + (r["ts"] - T0)
    return rows


def frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    return table_to_frame(rows_to_table(rows, "history"), "history")


def snapshot(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """The sessions snapshot that agrees with the last record of every session."""
    last: dict[str, Mapping[str, Any]] = {}
    first: dict[str, int] = {}
    for r in rows:
        if r["session_id"] not in last or r["version"] >= last[r["session_id"]]["version"]:
            last[r["session_id"]] = r
        first.setdefault(r["session_id"], r["ts"])
    snap = [{"session_id": s, "flow": r["flow"], "flow_version": r["flow_version"], "version": r["version"],
             "step": r["to_step"], "status": r["status"], "started_at": first[s], "updated_at": r["ts"]}
            for s, r in last.items()]
    return table_to_frame(rows_to_table(snap, "sessions"), "sessions")
