"""What-if replay: run recorded histories against a new version of a flow, offline.

Each journey of the flow (a ``start`` record and what followed it) is rebuilt into its
input events (the ``input`` column, see :func:`flowkit.engine.replay.event_from_record`)
and fed, at the recorded times, to the pure engine with the *new* flow. The first record
where the new version behaves differently is the journey's divergence:

=================== ==================================================================
kind                the new version...
=================== ==================================================================
now_invalid         rejects an answer the recorded version accepted
now_valid           accepts an answer the recorded version rejected
different_step      leaves the session at another step
different_path      reaches the same step through other steps (a step added/removed on the way)
different_outcome   same step, other status (e.g. ends the session, or keeps it open)
no_effect           ignores the event (a service result or timeout it no longer waits for)
engine_error        cannot handle the event at all (e.g. an expression fails)
=================== ==================================================================

A journey that replays to the end without any of these is ``same``. A journey that
reaches a record which cannot be rebuilt (a rollback, recovery or migration, or input
redacted because it fills a ``sensitive`` slot) stops there as ``not_replayable`` unless
it diverged before. After the first divergence the user would have answered other
questions, so the rest of the journey is not compared.

A step map (``mapping``, ``flowkit whatif --map OLD=NEW``, the same map ``flowkit
migrate`` takes) names the recorded versions' steps by the new version's names before
comparing: with ``ask_address=ask_street`` a renamed question is not a divergence, and
the replay carries on to the changes after it.

Service results are matched to the new version's pending call when it waits at the
same call step: call ids carry the version number, which shifts when steps are added.
The user's WhatsApp profile is not in the history; ``profile`` stands in for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowkit.engine import ServiceResult, Start, State, step
from flowkit.engine.replay import event_from_record
from flowkit.errors import FlowkitError
from flowkit.flow.model import Flow
from flowkit.history._prep import prepare
from flowkit.history.columns import normalize
from flowkit.history.flowset import FlowSet

KINDS = ("same", "now_invalid", "now_valid", "different_step", "different_path", "different_outcome", "no_effect",
         "engine_error", "not_replayable")
DIVERGED = frozenset(KINDS) - {"same", "not_replayable"}
DEFAULT_PROFILE: Mapping[str, Any] = {"name": "Customer"}


@dataclass(frozen=True)
class WhatIfReport:
    """One row per replayed journey (``journeys``) and a summary with counts per kind."""

    journeys: pd.DataFrame
    summary: Mapping[str, Any] = field(default_factory=dict)

    def counts(self) -> pd.DataFrame:
        """Journeys per kind of divergence (every kind listed, zeros included)."""
        c = self.journeys["kind"].value_counts()
        out = pd.DataFrame({"kind": list(KINDS), "journeys": [int(c.get(k, 0)) for k in KINDS]})
        total = max(int(out["journeys"].sum()), 1)
        out["share"] = out["journeys"] / total
        return out

    def by_step(self) -> pd.DataFrame:
        """Where journeys diverge: per recorded step and kind, how many."""
        d = self.journeys[self.journeys["diverged"]]
        if d.empty:
            return pd.DataFrame({"step": pd.Series(dtype=object), "kind": pd.Series(dtype=object),
                                 "journeys": pd.Series(dtype=np.int64)})
        g = d.groupby(["recorded_from", "kind"], observed=True).size().rename("journeys").reset_index()
        return g.rename(columns={"recorded_from": "step"}).sort_values("journeys", ascending=False,
                                                                       kind="stable").reset_index(drop=True)

    @property
    def diverged(self) -> pd.DataFrame:
        return self.journeys[self.journeys["diverged"]].reset_index(drop=True)


_COLUMNS = ["session_id", "journey", "flow", "recorded_version", "records", "replayed", "kind", "diverged", "version",
            "recorded_from", "recorded_step", "replayed_step", "recorded_status", "replayed_status",
            "final_recorded_status", "detail"]


def _call_step(call_id: str) -> str:
    # <session_id>/<version>/<step>: the step is what follows the version number.
    parts = call_id.split("/")
    for i in range(1, len(parts) - 1):
        if parts[i].isdigit():
            return "/".join(parts[i + 1:])
    return parts[-1]


def _renamed(step: Any, mapping: Mapping[str, str]) -> Any:
    """A recorded step by the new version's name (only its root: sub-flow steps are the sub-flow's)."""
    if not mapping or not isinstance(step, str):
        return step
    root, sep, rest = step.partition("/")
    return mapping.get(root, root) + sep + rest


def _compare(rec: Mapping[str, Any], got: Any, mapping: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The kind of difference between a recorded record and the replayed one, with a detail."""
    if mapping:
        rec = {**rec, "to_step": _renamed(rec.get("to_step"), mapping),
               "path": [_renamed(x, mapping) for x in rec.get("path") or []]}
    rec_err = rec.get("error") or ""
    got_err = got.error or ""
    if rec_err.startswith("invalid_input") != got_err.startswith("invalid_input"):
        if got_err.startswith("invalid_input"):
            return "now_invalid", f"answer {rec.get('input')} now rejected ({got_err})"
        return "now_valid", f"answer {rec.get('input')} rejected before ({rec_err}) is now accepted"
    if got.to_step != rec.get("to_step"):
        return "different_step", f"goes to {got.to_step!r} instead of {rec.get('to_step')!r}"
    if list(got.path) != list(rec.get("path") or []):
        return "different_path", f"reaches {got.to_step!r} through {list(got.path)} instead of {list(rec.get('path') or [])}"
    if got.status != rec.get("status"):
        return "different_outcome", f"status {got.status!r} instead of {rec.get('status')!r}"
    return None


def _replay_journey(records: list[dict[str, Any]], new: Flow, flows: FlowSet, profile: Mapping[str, Any],
                    mapping: Mapping[str, str] | None = None) -> dict[str, Any]:
    first = records[0]
    out: dict[str, Any] = {"kind": "same", "replayed": 0, "version": None, "recorded_from": None, "recorded_step": None,
                           "replayed_step": None, "recorded_status": None, "replayed_status": None, "detail": ""}
    state: State | None = None
    sid = str(first["session_id"])
    for rec in records:
        event = event_from_record(rec)
        if event is None:
            out.update(kind="not_replayable", version=int(rec["version"]), recorded_from=rec.get("from_step"),
                       detail=f"{rec['event']} record cannot be rebuilt from history; replay stops here")
            return out
        if isinstance(event, Start):
            event = Start(flow=new.name, message_id=event.message_id, text=event.text, args=event.args,
                          profile=profile, actor=event.actor)
        elif isinstance(event, ServiceResult) and state is not None and state.pending and state.pending.get("wait") == "service":
            pending_id = str(state.pending.get("call_id") or "")
            if pending_id != event.call_id and _renamed(_call_step(event.call_id), mapping or {}) == state.pending.get("step"):
                event = ServiceResult(call_id=pending_id, ok=event.ok, value=event.value, error=event.error, actor=event.actor)
        try:
            t = step(new, state, event, int(rec["ts"]), flows=flows, session_id=sid)
        except FlowkitError as exc:
            out.update(kind="engine_error", version=int(rec["version"]), recorded_from=rec.get("from_step"),
                       recorded_step=rec.get("to_step"), recorded_status=rec.get("status"), detail=str(exc).splitlines()[0])
            return out
        out["replayed"] += 1
        if t.record is None:
            out.update(kind="no_effect", version=int(rec["version"]), recorded_from=rec.get("from_step"),
                       recorded_step=rec.get("to_step"), recorded_status=rec.get("status"),
                       replayed_step=state.step if state else None, replayed_status=state.status if state else None,
                       detail=f"the new version ignores this {rec['event']} event")
            return out
        diff = _compare(rec, t.record, mapping)
        if diff is not None:
            out.update(kind=diff[0], version=int(rec["version"]), recorded_from=rec.get("from_step"),
                       recorded_step=rec.get("to_step"), replayed_step=t.record.to_step, recorded_status=rec.get("status"),
                       replayed_status=t.record.status, detail=diff[1])
            return out
        state = t.state
    return out


def whatif(history: pd.DataFrame, new: Flow, flows: Any = None, *, sessions: Iterable[str] | None = None,
           limit: int | None = None, profile: Mapping[str, Any] | None = None,
           mapping: Mapping[str, str] | None = None) -> WhatIfReport:
    """Replay every journey of flow ``new.name`` in ``history`` against ``new`` and report
    where it diverges (see the module docs). ``flows`` resolves sub-flows (``new``
    itself is always used for its own name); ``sessions`` limits the replay to some
    session ids, ``limit`` to the first N journeys; ``mapping`` ({old step: new step})
    names renamed steps as ``flowkit migrate --map`` does."""
    if not isinstance(new, Flow):
        raise TypeError(f"whatif needs the new flow version as a Flow, got {type(new).__name__}")
    mapping = dict(mapping or {})
    bad = sorted(v for v in mapping.values() if v not in new.steps)
    if bad:
        raise FlowkitError(f"the step mapping points at steps that flow {new.name!r} version {new.version_id} "
                           f"does not have: {', '.join(bad)}; give --map OLD_STEP=NEW_STEP with a step of the new version")
    df = normalize(history, "history")
    fs = FlowSet.of(flows) if flows is not None else FlowSet()
    fs = FlowSet(fs)  # a copy: adding `new` must not change the caller's set
    fs.add(new)
    if sessions is not None:
        wanted = set(sessions)
        df = df[df["session_id"].isin(wanted)]
    df = df[df["flow"] == new.name] if len(df) else df
    p = prepare(df.reset_index(drop=True))
    rows: list[dict[str, Any]] = []
    if p.n:
        cols = {c: p.df[c].to_numpy(dtype=object)[p.order] for c in ("session_id", "flow", "flow_version", "event",
                                                                      "from_step", "to_step", "status", "message_id",
                                                                      "input", "error", "actor")}
        paths = p.df["path"].to_list()
        versions = p.version
        ts = p.ts
        j = p.journey
        starts = np.flatnonzero(np.concatenate(([True], j[1:] != j[:-1])))
        ends = np.concatenate((starts[1:], [p.n]))
        for n_done, (a, b) in enumerate(zip(starts, ends, strict=True)):
            if limit is not None and n_done >= limit:
                break
            recs = []
            for i in range(a, b):
                rec = {c: (None if _na(v[i]) else v[i]) for c, v in cols.items()}
                rec["path"] = list(paths[p.order[i]] or [])
                rec["version"] = int(versions[i])
                rec["ts"] = int(ts[i])
                recs.append(rec)
            base = {"session_id": recs[0]["session_id"], "journey": int(j[a]), "flow": new.name,
                    "recorded_version": recs[0]["flow_version"], "records": len(recs),
                    "final_recorded_status": recs[-1]["status"]}
            if recs[0]["event"] != "start":
                rows.append({**base, "kind": "not_replayable", "replayed": 0, "version": recs[0]["version"],
                             "recorded_from": recs[0]["from_step"], "recorded_step": None, "replayed_step": None,
                             "recorded_status": None, "replayed_status": None,
                             "detail": "the journey's start is not in the history (an export --since?)"})
                continue
            rows.append({**base, **_replay_journey(recs, new, fs, profile or DEFAULT_PROFILE, mapping)})
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out["diverged"] = out["kind"].isin(DIVERGED).astype(bool)
    out["kind"] = pd.Categorical(out["kind"], categories=list(KINDS))
    out["version"] = out["version"].astype("Int64")
    for c in ("records", "replayed", "journey"):
        out[c] = out[c].astype(np.int64)
    counts = out["kind"].value_counts()
    summary = {
        "flow": new.name, "new_version": new.version_id,
        "recorded_versions": sorted({str(v) for v in out["recorded_version"].dropna()}),
        "journeys": int(len(out)), "sessions": int(out["session_id"].nunique()),
        "diverged": int(out["diverged"].sum()),
        "counts": {k: int(counts.get(k, 0)) for k in KINDS},
        "mapping": mapping,
    }
    return WhatIfReport(out, summary)


def _na(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA


def whatif_json(report: WhatIfReport) -> str:
    """The report as JSON: ``{"summary": {...}, "journeys": [...]}`` (diverged journeys only)."""
    d = report.diverged.astype(object).where(report.diverged.notna(), None)
    return json.dumps({"summary": dict(report.summary), "journeys": d.to_dict(orient="records")}, indent=2, default=str)

