"""Delivery and read rates of the replies, per flow and step (``flowkit analytics -t delivery``).

From an export's ``messages`` table (:mod:`flowkit.history.messages`) joined to its history:
each outbound message belongs to the commit that produced it (``session_id``, ``version``),
and that commit's flow and ``to_step`` (the step the session reached, which asked or said
it) are the message's flow and step. Replies outside any commit (the help text to a user
without a session) count under flow and step ``(none)``.

``sent`` counts the replies Graph accepted; ``delivered`` those WhatsApp reported delivered
or read (a read message was delivered, even if its ``delivered`` status never came);
``read`` those read (or played); ``failed`` those WhatsApp could not deliver. Statuses
arrive for days: rates of recent messages are still rising.
"""

from __future__ import annotations

import pandas as pd

NONE = "(none)"
COLUMNS = ("flow", "step", "sent", "delivered", "read", "failed", "delivered_rate", "read_rate", "failed_rate")


def delivery_rates(messages: pd.DataFrame, history: pd.DataFrame, *, flow: str | None = None) -> pd.DataFrame:
    """One row per (flow, step) with counts and rates, most sent first."""
    out = messages[messages["direction"].astype(str) == "out"]
    steps = history[["session_id", "version", "flow", "to_step"]].astype({"flow": str, "to_step": str})
    steps = steps.assign(version=steps["version"].astype("Int64"))
    merged = out.assign(version=out["version"].astype("Int64")).merge(steps, on=["session_id", "version"], how="left")
    merged["flow"] = merged["flow"].fillna(NONE)
    merged["step"] = merged["to_step"].fillna(NONE)
    if flow is not None:
        merged = merged[merged["flow"] == flow]
    counts = pd.DataFrame({
        "flow": merged["flow"], "step": merged["step"], "sent": 1,
        "delivered": (merged["delivered_ts"].notna() | merged["read_ts"].notna()).astype(int),
        "read": merged["read_ts"].notna().astype(int),
        "failed": merged["failed_ts"].notna().astype(int),
    })
    g = counts.groupby(["flow", "step"], as_index=False, sort=False)[["sent", "delivered", "read", "failed"]].sum()
    for c in ("delivered", "read", "failed"):
        g[f"{c}_rate"] = (g[c] / g["sent"]).round(4)
    return g.sort_values(["sent", "flow", "step"], ascending=[False, True, True]).reset_index(drop=True)[list(COLUMNS)]


__all__ = ["COLUMNS", "delivery_rates"]
