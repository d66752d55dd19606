"""Moving in-flight sessions of a flow to another version (``flowkit migrate``).

A session is pinned to the version it started on; a deploy never changes a conversation
under a user's feet. Migration is the explicit, audited exception: each moved session gets
a ``migrate`` commit (actor ``admin``) through the normal CAS path, with its step mapped
to the new version. It is all-or-nothing by default, like a schema migration: if any
session cannot be moved (its step is gone and not mapped, or it is inside a sub-flow),
nothing is moved and the refusals are listed.

A move is also refused when it would skip a question whose answer a later step reads:
the target step is past a question that every route of the new version asks, the
session never answered it, and a step ahead reads the slot (see
:mod:`flowkit.flow.dataflow`). Without that check ``--map upsell=ask_address`` would take
a session that never gave a quantity to the address question, and ``orders.create``
would then be called without ``qty``. The refusal names the slot, the step that reads it
and the latest step before it that is safe to map to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowkit.engine import Command
from flowkit.errors import FlowkitError
from flowkit.flow.dataflow import held, safe_step_before, unmet_needs
from flowkit.flow.model import TERMINAL_STATUSES, Flow

if TYPE_CHECKING:
    from flowkit.engine import Event
    from flowkit.runtime.outcome import Outcome


class _Handles(Protocol):
    """What a migration needs of a runtime (a sync :class:`~flowkit.runtime.Runtime`)."""

    def handle(self, session_id: str, event: Event) -> Outcome: ...


@dataclass(frozen=True)
class Refusal:
    session_id: str
    step: str
    reason: str


@dataclass(frozen=True)
class MigrationPlan:
    """Which running sessions of ``flow`` move to ``to_version`` and where."""

    flow: str
    to_version: str
    moves: tuple[tuple[str, str, str], ...] = ()  # (session_id, from step, to step)
    refused: tuple[Refusal, ...] = ()
    already: int = 0  # running sessions already on the target version

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(frozen=True)
class MigrationResult:
    plan: MigrationPlan
    migrated: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = field(default=())  # (session_id, error)

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {"flow": p.flow, "to_version": p.to_version, "already_on_version": p.already,
                "migrated": list(self.migrated),
                "moves": [{"session_id": s, "from": a, "to": b} for s, a, b in p.moves],
                "refused": [{"session_id": r.session_id, "step": r.step, "reason": r.reason} for r in p.refused],
                "failed": [{"session_id": s, "error": e} for s, e in self.failed]}


def plan_migration(sessions: Iterable[Mapping[str, Any]], target: Flow, mapping: Mapping[str, str] | None = None) -> MigrationPlan:
    """Plan from the stored states (``store.iter_sessions()``); reads nothing else, writes nothing."""
    mapping = dict(mapping or {})
    bad = sorted(v for v in mapping.values() if v not in target.steps)
    if bad:
        raise FlowkitError(f"the step mapping points at steps that flow {target.name!r} version "
                           f"{target.version_id} does not have: {', '.join(bad)}")
    moves, refused, already = [], [], 0
    verdicts: dict[tuple[str, str, frozenset[str]], str] = {}  # sessions share few (step, answers) pairs
    for st in sessions:
        if st.get("flow") != target.name or st.get("status") in TERMINAL_STATUSES:
            continue
        if st.get("flow_version") == target.version_id:
            already += 1
            continue
        sid, step = st["session_id"], st.get("step") or ""
        root_step = step.split("/", 1)[0]
        if st.get("stack"):
            refused.append(Refusal(sid, step, f"inside sub-flow {root_step!r}: wait until it returns"))
        elif root_step in mapping or root_step in target.steps:
            to_step = mapping.get(root_step, root_step)
            key = (root_step, to_step, held(st.get("slots")))
            skipped = verdicts.get(key)
            if skipped is None:
                skipped = verdicts[key] = _skipped(target, *key)
            if skipped:
                refused.append(Refusal(sid, step, skipped))
            else:
                moves.append((sid, step, to_step))
        else:
            refused.append(Refusal(sid, step, f"step {root_step!r} does not exist in version {target.version_id}; "
                                              f"map it with --map {root_step}=NEW_STEP"))
    return MigrationPlan(target.name, target.version_id, tuple(sorted(moves)),
                         tuple(sorted(refused, key=lambda r: r.session_id)), already)


def _skipped(target: Flow, root_step: str, to_step: str, have: frozenset[str]) -> str:
    """Why moving a session holding ``have`` to ``to_step`` would skip a needed answer ("" if it would not)."""
    needs = unmet_needs(target, to_step, have)
    if not needs:
        return ""
    what = "; ".join(f"step {n.step!r} reads {n.slot!r}" for n in needs)
    safe = safe_step_before(target, to_step, have)
    fix = f"map it to a step that asks for it, e.g. --map {root_step}={safe}" if safe else \
        "no step of the new version before it is safe: let the session finish on its version"
    return (f"moving to {to_step!r} skips a needed answer: {what}, and the session has no "
            f"{', '.join(repr(n.slot) for n in needs)} (version {target.version_id} asks for it before "
            f"{to_step!r}); {fix}")


def apply_migration(runtime: _Handles, plan: MigrationPlan, *, partial: bool = False) -> MigrationResult:
    """Commit the plan through ``runtime`` (a sync :class:`~flowkit.runtime.Runtime`).

    Refuses the whole plan if anything was refused, unless ``partial``."""
    if plan.refused and not partial:
        return MigrationResult(plan)
    migrated, failed = [], []
    for sid, _, to_step in plan.moves:
        cmd = Command(name="migrate", args={"flow_version": plan.to_version, "step": to_step}, actor="admin")
        try:
            out = runtime.handle(sid, cmd)
        except FlowkitError as exc:
            failed.append((sid, str(exc)))
            continue
        if out.status == "applied" and not (out.error or "").startswith("engine_error"):
            migrated.append(sid)
        else:
            failed.append((sid, out.error or out.status))
    return MigrationResult(plan, tuple(migrated), tuple(failed))


__all__ = ["MigrationPlan", "MigrationResult", "Refusal", "apply_migration", "plan_migration"]
