"""Change impact: which running sessions a new flow version affects, and the step
mapping to give ``flowkit migrate``.

A running session (not terminal) is pinned to its flow version and waits at a step. For
a new version of its flow, that step is

============ ==================================================================
change       meaning
============ ==================================================================
unchanged    the step exists and means the same (its outgoing routes may differ)
changed      the step exists but means something else: another kind, another
             question (input type/options/bounds), another slot, service or sub-flow;
             or it means the same but the new version asks, before it, a question
             whose answer a later step reads (see "needed answers" below)
removed      the new version has no step of that name
in_subflow   the session is inside a sub-flow: the engine migrates only at the root,
             so it is mapped by its calling step (which is classified as above)
unknown      the session's own flow version is not loaded, so nothing can be compared
============ ==================================================================

Mapping proposals for removed and changed steps, in order of preference:

1. ``renamed``: a step of the new version, absent from the old one, with the same
   meaning (kind, question, slot...);
2. ``same_slot``: a new step of the same kind that saves the same slot;
3. ``same_step``: for a changed step, the step itself (migrating re-enters it, so the
   user sees the new question);
4. ``next_surviving``: the nearest step after it in the old graph that the new version
   still has (not an end step): the session skips what was removed;
5. ``previous_surviving``: the nearest such step before it (the session repeats a step);
6. ``start``: the new version's start step.

Needed answers: whatever rule proposed a step, the proposal must not skip a question
whose answer a later step reads (:func:`flowkit.flow.dataflow.unmet_needs`, with the
slots the old version assures at the session's step). ``--map upsell=ask_address``
would move a session that never gave its quantity past the quantity question, and the
order service would be called without it. Such a proposal is replaced by

7. ``before_need``: the latest step before it (walking back along the new version's
   routes) where the session lacks nothing, usually the skipped question itself;
8. ``none_safe``: no step is safe; nothing is proposed (let the session finish on its
   version).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flowkit.flow.dataflow import assured, safe_step_before, unmet_needs
from flowkit.flow.graph import to_networkx
from flowkit.flow.model import Flow, Step
from flowkit.history.columns import TERMINAL, normalize
from flowkit.history.flowset import FlowSet

CHANGES = ("unchanged", "changed", "removed", "in_subflow", "unknown")


def meaning(step: Step) -> tuple[Any, ...]:
    """What a step *does*, without wording or routing: two steps with equal meanings are
    interchangeable for a session waiting at them."""
    body = step.to_dict()
    body.pop("next", None)
    for key in ("on_fail", "on_error", "on_timeout", "retries", "invalid", "timeout"):
        body.pop(key, None)
    for key in ("say", "ask"):  # the wording may change; buttons and options may not
        v = body.get(key)
        if isinstance(v, str):
            body[key] = "<text>"
        elif isinstance(v, dict):
            body[key] = {k: (x if k != "text" else "<text>") for k, x in v.items()}
    return (step.kind, json.dumps(body, sort_keys=True, default=str))


def _save(step: Step) -> Any:
    return getattr(step, "save", None)


@dataclass(frozen=True)
class StepChange:
    """How one step of an old version fares in the new version, and where to map it."""

    step: str
    change: str
    proposed: str | None
    reason: str
    detail: str = ""


def classify(old: Flow, new: Flow, step: str) -> StepChange:
    """Compare the root-level ``step`` of ``old`` with the new version and propose a target
    that skips no needed answer (see the module docs)."""
    sc = _classify(old, new, step)
    if sc.change == "unknown" or sc.proposed is None:
        return sc
    have = assured(old, sc.step)
    needs = unmet_needs(new, sc.proposed, have)
    if not needs:
        return sc
    skipped = ", ".join(f"{n.slot!r} (read by {n.step!r})" for n in needs)
    why = f"{sc.proposed!r} would skip the answer {skipped}"
    change = "changed" if sc.change == "unchanged" else sc.change
    detail = sc.detail if sc.change != "unchanged" else "same meaning, but a question before it is new"
    safe = safe_step_before(new, sc.proposed, have)
    if safe is None:
        return StepChange(sc.step, change, None, "none_safe", f"{detail}; {why} and no step before it is safe")
    return StepChange(sc.step, change, safe, "before_need", f"{detail}; {why}, so {safe!r}, the latest safe "
                      "step before it")


def _classify(old: Flow, new: Flow, step: str) -> StepChange:
    root = step.split("/", 1)[0]
    old_step = old.steps.get(root)
    new_step = new.steps.get(root)
    if old_step is None:
        return StepChange(root, "unknown", new.start, "start", f"step {root!r} is not in version {old.version_id} either")
    if new_step is not None and meaning(new_step) == meaning(old_step):
        routes = "" if sorted(t for _, t in old_step.targets()) == sorted(t for _, t in new_step.targets()) \
            else "; its routes changed"
        return StepChange(root, "unchanged", root, "same_step", f"same meaning{routes}")
    change = "removed" if new_step is None else "changed"
    what = _difference(old_step, new_step)
    # 1. renamed: a new step (not in the old version) with the same meaning.
    same = [n for n, s in new.steps.items() if n not in old.steps and meaning(s) == meaning(old_step)]
    if same:
        return StepChange(root, change, same[0], "renamed", what + f"; {same[0]!r} has the same meaning")
    # 2. a new step of the same kind saving the same slot.
    if _save(old_step):
        slot = [n for n, s in new.steps.items()
                if n not in old.steps and s.kind == old_step.kind and _save(s) == _save(old_step)]
        if slot:
            return StepChange(root, change, slot[0], "same_slot", what + f"; {slot[0]!r} saves the same slot")
    # 3. a changed step keeps its name: migrating re-enters it with the new meaning.
    if new_step is not None:
        return StepChange(root, change, root, "same_step", what)
    return _nearest_surviving(old, new, root, change, what)


def _nearest_surviving(old: Flow, new: Flow, root: str, change: str, what: str) -> StepChange:
    """Rules 4 and 5 of :func:`_classify`: the nearest surviving step after (or before) ``root``
    in the old graph, else the new start."""
    g = to_networkx(old)
    # Surviving: the step is still there by name (if its meaning changed, migrating re-enters
    # it with the new meaning, which is what the new version wants for sessions reaching it).
    surviving = {n for n in old.steps if n in new.steps and new.steps[n].kind != "end"}
    for direction, reason in ((g.successors, "next_surviving"), (g.predecessors, "previous_surviving")):
        seen = {root}
        queue = deque([root])
        while queue:
            cur = queue.popleft()
            for nxt in direction(cur):
                if nxt in seen:
                    continue
                seen.add(nxt)
                if nxt in surviving:
                    return StepChange(root, change, nxt, reason, what + f"; {nxt!r} is the nearest step "
                                      f"{'after' if reason == 'next_surviving' else 'before'} it that remains")
                queue.append(nxt)
    return StepChange(root, change, new.start, "start", what + "; no nearby step remains, so the session starts over")


def _difference(old: Step, new: Step | None) -> str:
    if new is None:
        return "removed"
    if old.kind != new.kind:
        return f"was a {old.kind} step, now a {new.kind} step"
    if _save(old) != _save(new):
        return f"saved {_save(old)!r}, now saves {_save(new)!r}"
    for attr in ("input", "call", "flow", "end"):
        a, b = getattr(old, attr, None), getattr(new, attr, None)
        if a != b:
            return f"its {attr} changed"
    return "its content changed"


@dataclass(frozen=True)
class ImpactReport:
    """Running sessions affected by a new version, per-step changes and the proposed mapping."""

    sessions: pd.DataFrame
    steps: pd.DataFrame
    mapping: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # old version -> {old step: new step}
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def affected(self) -> pd.DataFrame:
        return self.sessions[self.sessions["change"].isin(["changed", "removed", "unknown"])].reset_index(drop=True)

    def migrate_args(self, version: str | None = None) -> list[str]:
        """``old=new`` pairs for ``flowkit migrate --map`` (steps that move)."""
        out: list[str] = []
        for v, m in sorted(self.mapping.items()):
            if version is not None and v != version:
                continue
            out.extend(f"{a}={b}" for a, b in sorted(m.items()) if a != b)
        return out

    def to_dict(self) -> dict[str, Any]:
        steps = self.steps.astype(object).where(self.steps.notna(), None)
        sessions = self.affected.astype(object).where(self.affected.notna(), None)
        return {"summary": dict(self.summary), "mapping": {k: dict(v) for k, v in self.mapping.items()},
                "steps": steps.to_dict(orient="records"), "sessions": sessions.to_dict(orient="records")}


def _running(sessions: pd.DataFrame) -> pd.DataFrame:
    """The snapshot rows (or last history rows) of sessions that are not terminal."""
    cols = set(sessions.columns)
    if {"step", "updated_at"} <= cols:
        snap = normalize(sessions, "sessions")
    else:
        h = normalize(sessions, "history").sort_values(["session_id", "version"], kind="stable")
        last = h.groupby("session_id", observed=True, sort=False).tail(1)
        snap = pd.DataFrame({"session_id": last["session_id"], "flow": last["flow"], "flow_version": last["flow_version"],
                             "version": last["version"], "step": last["to_step"], "status": last["status"],
                             "started_at": last["ts"], "updated_at": last["ts"]})
    live = ~snap["status"].astype(object).isin(TERMINAL)
    return snap[live].reset_index(drop=True)


def change_impact(sessions: pd.DataFrame, new: Flow, flows: Any = None) -> ImpactReport:
    """Which running sessions of ``new.name`` are affected by deploying ``new``.

    ``sessions`` is the sessions snapshot of an export (or a history, whose last record
    per session stands in for it); ``flows`` must hold the versions the sessions are
    pinned to. Sessions already on ``new``'s version are not affected.
    """
    fs = FlowSet.of(flows) if flows is not None else FlowSet()
    running = _running(sessions)
    running = running[(running["flow"].astype(object) == new.name) &
                      (running["flow_version"].astype(object) != new.version_id)].reset_index(drop=True)
    rows = []
    step_rows: dict[tuple[str, str], StepChange] = {}
    counts: dict[tuple[str, str], int] = {}
    for r in running.itertuples(index=False):
        version = str(r.flow_version)
        step = None if pd.isna(r.step) else str(r.step)
        if not fs.has(new.name, version) or step is None:
            rows.append({"session_id": r.session_id, "flow_version": version, "step": step, "status": str(r.status),
                         "change": "unknown", "proposed_step": None, "reason": None,
                         "detail": f"version {version} is not loaded" if step else "the session has no step"})
            continue
        old = fs.get(new.name, version)
        key = (version, step.split("/", 1)[0])
        sc = step_rows.get(key)
        if sc is None:
            sc = step_rows[key] = classify(old, new, step)
        counts[key] = counts.get(key, 0) + 1
        change = sc.change
        detail = sc.detail
        if "/" in step and change == "unchanged":
            change = "in_subflow"
            detail = f"inside sub-flow step {sc.step!r}; migrate after it returns (or map {sc.step!r})"
        rows.append({"session_id": r.session_id, "flow_version": version, "step": step, "status": str(r.status),
                     "change": change, "proposed_step": sc.proposed, "reason": sc.reason, "detail": detail})
    sess = pd.DataFrame(rows, columns=["session_id", "flow_version", "step", "status", "change", "proposed_step",
                                       "reason", "detail"])
    sess["change"] = pd.Categorical(sess["change"], categories=list(CHANGES))
    steps = pd.DataFrame([{"flow_version": v, "step": s, "sessions": counts[(v, s)], "change": c.change,
                           "proposed_step": c.proposed, "reason": c.reason, "detail": c.detail}
                          for (v, s), c in sorted(step_rows.items())],
                         columns=["flow_version", "step", "sessions", "change", "proposed_step", "reason", "detail"])
    mapping: dict[str, dict[str, str]] = {}
    for (v, s), c in sorted(step_rows.items()):
        if c.change in ("changed", "removed") and c.proposed is not None:
            mapping.setdefault(v, {})[s] = c.proposed
    vc = sess["change"].value_counts()
    summary = {"flow": new.name, "new_version": new.version_id, "running_sessions": int(len(sess)),
               "affected": int(sess["change"].isin(["changed", "removed", "unknown"]).sum()),
               "counts": {c: int(vc.get(c, 0)) for c in CHANGES}}
    return ImpactReport(sess, steps, mapping, summary)
