"""Bulk repair: one action applied to every session a query finds (Temporal's batch reset).

The sessions are found first (:func:`flowkit.store.find.find_sessions`), then acted on one
by one, each as an ordinary admin commit with its own history record (actor ``admin``), so
every change is visible in ``flowkit session history`` and can itself be rolled back. A
session that changed between the query and its turn is judged again before it is touched
(``recheck``): a bulk ``fail`` of sessions stuck at ``ask_address`` never fails one that
the user has just moved on.

Actions:

- ``rollback``: back ``back`` versions (default 1), or to ``to_version``;
- ``migrate``: to flow version ``to_version`` with an optional step map (the sessions of
  one flow; refusals as in ``flowkit migrate``);
- ``fail``: end the session as ``failed`` with ``reason`` (the flow's end path does not run);
- ``expire``: end the session as ``expired`` with ``reason``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flowkit.engine import Command
from flowkit.errors import FlowkitError, QueryError
from flowkit.store.find import Query, compile_query, match

if TYPE_CHECKING:
    from flowkit.runtime.sync_runtime import Runtime
    from flowkit.types import StoreProtocol

#: ``rollback``: the version to go back to; ``migrate``: the flow version to move to.
ToVersion = int | str | None

Action = Literal["rollback", "migrate", "fail", "expire"]
ACTIONS: tuple[Action, ...] = ("rollback", "migrate", "fail", "expire")


@dataclass(frozen=True)
class BulkOutcome:
    session_id: str
    result: Literal["done", "skipped", "failed", "would"]
    detail: str = ""
    version: int | None = None  # the version the action committed

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "result": self.result, "detail": self.detail, "version": self.version}


@dataclass
class BulkReport:
    action: Action
    query: str
    dry_run: bool
    outcomes: list[BulkOutcome] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "query": self.query, "dry_run": self.dry_run,
                "sessions": len(self.outcomes), "done": self.count("done"), "would": self.count("would"),
                "skipped": self.count("skipped"), "failed": self.count("failed"),
                "outcomes": [o.to_dict() for o in self.outcomes]}


def bulk(runtime: Runtime, action: Action, session_ids: Iterable[str], *, query: Query | str, dry_run: bool = False,
         back: int = 1, to_version: ToVersion = None, mapping: Mapping[str, str] | None = None, reason: str = "",
         recheck: bool = True, progress: Callable[[int], None] | None = None) -> BulkReport:
    """Apply ``action`` to each of ``session_ids`` through ``runtime`` (a sync
    :class:`~flowkit.runtime.Runtime` on the store the query ran on)."""
    if action not in ACTIONS:
        raise QueryError(f"unknown bulk action {action!r}; use one of {', '.join(ACTIONS)}")
    q = compile_query(query) if isinstance(query, str) else query
    store = runtime.store
    sids = list(session_ids)
    report = BulkReport(action, q.expr.source, dry_run)
    if action == "migrate":
        return _migrate(runtime, report, sids, q, to_version, mapping, dry_run, progress)
    if action == "rollback" and to_version is None and back < 1:
        raise QueryError(f"--back must be at least 1, got {back}")
    for n, sid in enumerate(sids, 1):
        report.outcomes.append(_one(runtime, store, action, sid, q, dry_run=dry_run, back=back, to_version=to_version,
                                    reason=reason, recheck=recheck))
        if progress is not None:
            progress(n)
    return report


def _still_matches(store: StoreProtocol, sid: str, q: Query) -> bool:
    return bool(match(store, q, [sid], now_ms=int(store.now_ms())))


def _one(runtime: Runtime, store: StoreProtocol, action: Action, sid: str, q: Query, *, dry_run: bool, back: int,
         to_version: ToVersion, reason: str, recheck: bool) -> BulkOutcome:
    if recheck and not _still_matches(store, sid, q):
        return BulkOutcome(sid, "skipped", "no longer matches the query")
    state = store.load(sid)
    if state is None:
        return BulkOutcome(sid, "skipped", "gone")
    if action == "rollback":
        return _rollback(runtime, store, sid, state, to_version, back, dry_run)
    if state["status"] not in ("active", "waiting_input", "waiting_service"):
        return BulkOutcome(sid, "skipped", f"already {state['status']}")
    if dry_run:
        return BulkOutcome(sid, "would", f"{action} at step {state.get('step')!r}")
    try:
        return _fail(runtime, sid, reason) if action == "fail" else _expire(runtime, store, sid, reason)
    except FlowkitError as exc:
        return BulkOutcome(sid, "failed", str(exc))


def _rollback(runtime: Runtime, store: StoreProtocol, sid: str, state: Mapping[str, Any], to_version: ToVersion,
              back: int, dry_run: bool) -> BulkOutcome:
    target = int(to_version) if to_version is not None else state["version"] - back
    if target < 1 or target >= state["version"]:
        return BulkOutcome(sid, "skipped", f"at version {state['version']}: nothing to roll back to "
                                           f"(target {target})")
    if dry_run:
        return BulkOutcome(sid, "would", f"roll back from version {state['version']} to {target}")
    try:
        result = store.rollback(sid, target, actor="admin")
    except FlowkitError as exc:
        return BulkOutcome(sid, "failed", str(exc))
    runtime.forget(sid)
    return BulkOutcome(sid, "done", f"version {result.version} equals version {target}", result.version)


def _fail(runtime: Runtime, sid: str, reason: str) -> BulkOutcome:
    out = runtime.handle(sid, Command(name="fail", args={"reason": reason or "failed by bulk repair"}, actor="admin"))
    if out.status != "applied":
        return BulkOutcome(sid, "failed", out.error or out.status)
    return BulkOutcome(sid, "done", "failed", out.version)


def _expire(runtime: Runtime, store: StoreProtocol, sid: str, reason: str) -> BulkOutcome:
    result = store.expire(sid, actor="admin", reason=reason or "expired by bulk repair")
    runtime.forget(sid)
    if result is None:
        return BulkOutcome(sid, "skipped", "ended meanwhile")
    return BulkOutcome(sid, "done", "expired", result.version)


def _migrate(runtime: Runtime, report: BulkReport, sids: list[str], q: Query, to_version: ToVersion,
             mapping: Mapping[str, str] | None, dry_run: bool, progress: Callable[[int], None] | None) -> BulkReport:
    from flowkit.runtime.migrate import apply_migration, plan_migration

    if to_version is None:
        raise QueryError("a bulk migrate needs the target version (--to)")
    states = [s for s in (runtime.store.load(sid) for sid in sids) if s is not None]
    flows = sorted({s["flow"] for s in states})
    if len(flows) > 1:
        raise QueryError(f"the query finds sessions of several flows ({', '.join(flows)}); add `flow == 'NAME'` "
                         "to migrate one flow at a time")
    if not flows:
        return report
    target = runtime.registry.get(flows[0], str(to_version))
    plan = plan_migration(states, target, mapping)
    refused = {r.session_id: r.reason for r in plan.refused}
    result = apply_migration(runtime, plan, partial=True) if not dry_run else None
    failed = dict(result.failed) if result else {}
    moved = set(result.migrated) if result else set()
    moves = {sid: (a, b) for sid, a, b in plan.moves}
    for n, s in enumerate(states, 1):
        sid = s["session_id"]
        if sid in refused:
            report.outcomes.append(BulkOutcome(sid, "skipped", refused[sid]))
        elif sid in moves:
            a, b = moves[sid]
            if dry_run:
                report.outcomes.append(BulkOutcome(sid, "would", f"move {a} -> {b} on version {plan.to_version}"))
            elif sid in moved:
                report.outcomes.append(BulkOutcome(sid, "done", f"moved {a} -> {b}", (runtime.store.load(sid) or {}).get("version")))
            else:
                report.outcomes.append(BulkOutcome(sid, "failed", failed.get(sid, "not migrated")))
        else:
            report.outcomes.append(BulkOutcome(sid, "skipped", "ended, or already on that version"))
        if progress is not None:
            progress(n)
    return report


__all__ = ["ACTIONS", "BulkOutcome", "BulkReport", "bulk"]
