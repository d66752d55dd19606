"""Find sessions with flowkit's safe expression language, as Temporal finds workflows by
their search attributes: ``status == 'waiting_input' and step == 'ask_address' and idle > 2 * hours``.

Names a query can read:

=================== =====================================================================
``flow``            the session's root flow
``flow_version``    the flow version it runs on
``step``            its current step (``contact/ask_email`` inside a sub-flow)
``status``          ``active``, ``waiting_input``, ``waiting_service``, ``completed``, …
``version``         its current version (number of commits)
``updated_at``      last change, epoch milliseconds
``idle``            seconds since the last change
``slots``           the slot values (``slots.size``, ``slots['qty']``); ``None`` when unset
``minutes``, ``hours``, ``days``  60, 3600, 86400 (``idle > 30 * minutes``)
=================== =====================================================================

A query is planned from its top-level ``and`` terms: when they confine ``status`` to live
statuses (``active``, ``waiting_input``, ``waiting_service``), only the sessions of the
active index are read, and an ``idle > N`` term narrows that to one range of the index
(both are O(log n + matches) in Redis). Otherwise every session is scanned. Either way
each candidate costs one ``HMGET`` of the state hash's small fields, pipelined per batch;
the state JSON is read only for queries that need slots or ``flow_version``, and for the
matches (whose rows carry ``flow_version``).

A session whose query raises (``slots.qty > 3`` where ``qty`` is unset) does not match;
:class:`FindStats` counts them and keeps the first error, so a typo does not pass as
"no sessions".
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flowkit.batching import batched
from flowkit.errors import ExpressionError, QueryError
from flowkit.flow.expr import BinOp, BoolOp, Compare, Const, Expr, ListExpr, Name, Node, parse_expr
from flowkit.flow.model import STATUSES, TERMINAL_STATUSES
from flowkit.store import keys as K
from flowkit.store.driver import Batch, Op
from flowkit.store.ops import check, state_head

NAMES = frozenset({"flow", "flow_version", "step", "status", "version", "updated_at", "idle", "slots",
                   "minutes", "hours", "days"})
LIVE_STATUSES = frozenset(STATUSES) - TERMINAL_STATUSES
_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
_FIELDS = ("flow", "step", "status", "updated_at", "version")


@dataclass(frozen=True)
class Query:
    """A parsed query and what the planner learned from it."""

    expr: Expr
    needs_state: bool  # reads slots or flow_version: the state JSON of every candidate is read
    live_only: bool  # its statuses are all live: the active index holds every possible match
    idle_over_s: float | None  # an `idle > N` term: only sessions idle longer can match

    @property
    def plan(self) -> str:
        if not self.live_only:
            return "scan every session"
        return "active index" + (f", idle > {self.idle_over_s:g}s" if self.idle_over_s is not None else "")


@dataclass
class FindStats:
    candidates: int = 0
    matched: int = 0
    errors: int = 0
    first_error: str | None = None
    unreadable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": self.candidates, "matched": self.matched, "errors": self.errors,
                "first_error": self.first_error, "unreadable": list(self.unreadable)}


def compile_query(text: str) -> Query:
    """Parse and plan a query; an unknown name or a syntax error raises :class:`QueryError` with its position.

    >>> compile_query("status == 'waiting_input' and idle > 2 * hours").plan
    'active index, idle > 7200s'
    >>> compile_query("flow == 'order_pizza' and slots.size == 'large'").plan
    'scan every session'
    >>> compile_query("stauts == 'failed'")
    Traceback (most recent call last):
    ...
    flowkit.errors.QueryError: unknown name(s) 'stauts' in "stauts == 'failed'" (did you mean 'status'?); ...
    """
    try:
        expr = parse_expr(text)
    except ExpressionError as exc:
        raise QueryError(f"cannot parse the query: {exc}") from None
    unknown = sorted(expr.names() - NAMES)
    if unknown:
        near = [m for u in unknown for m in difflib.get_close_matches(u, sorted(NAMES), n=1)]
        hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
        raise QueryError(f"unknown name(s) {', '.join(map(repr, unknown))} in {text!r}{hint}; a query reads "
                         f"{', '.join(sorted(NAMES))} (slot values as slots.NAME)")
    terms = _conjuncts(expr.tree)
    statuses: set[str] | None = None
    idle: float | None = None
    for t in terms:
        s = _status_term(t)
        if s is not None:
            statuses = s if statuses is None else statuses & s
        n = _idle_term(t)
        if n is not None:
            idle = n if idle is None else max(idle, n)
    return Query(expr, needs_state=bool(expr.names() & {"slots", "flow_version"}),
                 live_only=statuses is not None and statuses <= LIVE_STATUSES, idle_over_s=idle)


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, BoolOp) and node.op == "and":
        return [t for v in node.operands for t in _conjuncts(v)]
    return [node]


def _const(node: Node) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, ListExpr) and all(isinstance(i, Const) for i in node.items):
        return [i.value for i in node.items]  # type: ignore[attr-defined]  # (every item is a Const (checked by the caller))
    return None


def _status_term(node: Node) -> set[str] | None:
    """``status == 'x'`` or ``status in ['x', 'y']``: the statuses it allows."""
    if not (isinstance(node, Compare) and len(node.ops) == 1 and isinstance(node.first, Name)
            and node.first.name == "status"):
        return None
    value = _const(node.rest[0])
    if node.ops[0] == "==" and isinstance(value, str):
        return {value}
    if node.ops[0] == "in" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    return None


def _number(node: Node) -> float | None:
    """A constant number, or a constant times a unit name (``2 * hours``)."""
    v = _const(node)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(node, Name) and node.name in _UNITS:
        return float(_UNITS[node.name])
    if isinstance(node, BinOp) and node.op == "*":
        a, b = _number(node.left), _number(node.right)
        if a is not None and b is not None:
            return a * b
    return None


def _idle_term(node: Node) -> float | None:
    """``idle > N`` / ``idle >= N`` / ``N < idle``: sessions idle at least N seconds."""
    if not (isinstance(node, Compare) and len(node.ops) == 1):
        return None
    left, op, right = node.first, node.ops[0], node.rest[0]
    if isinstance(left, Name) and left.name == "idle" and op in (">", ">="):
        return _number(right)
    if isinstance(right, Name) and right.name == "idle" and op in ("<", "<="):
        return _number(left)
    return None


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _candidates(store: Any, q: Query, now_ms: int, batch: int) -> Iterator[list[str]]:
    if not q.live_only:
        yield from (list(c) for c in batched(store.iter_session_ids(batch), batch))
    elif q.idle_over_s is None:
        # every live session: ZSCAN's cursor costs O(1) per member (an offset would cost O(offset) per page)
        yield from (list(c) for c in batched((_text(m) for m, _ in store.client.zscan_iter(K.IDX_ACTIVE, count=batch)),
                                             batch))
    else:
        yield from _idle_range(store.client, now_ms - int(q.idle_over_s * 1000), batch)


def _idle_range(client: Any, hi: int, batch: int) -> Iterator[list[str]]:
    """Members of the active index with a score <= ``hi``, oldest first, paged by score (not by
    offset): each page starts at the last score seen, skipping the members already given there."""
    lo: Any = "-inf"
    at_lo: set[str] = set()
    while True:
        page = [(_text(m), sc) for m, sc in client.zrangebyscore(K.IDX_ACTIVE, lo, hi, start=0,
                                                                   num=batch + len(at_lo), withscores=True)]
        fresh = [m for m, _ in page if m not in at_lo]
        if not fresh:
            return
        yield fresh
        if len(page) < batch + len(at_lo):
            return
        last = page[-1][1]
        at_lo = {m for m, sc in page if sc == last} | (at_lo if last == lo else set())
        lo = last


def _env(sid: str, fields: list[Any], state: dict[str, Any] | None, now_ms: int) -> dict[str, Any]:
    flow, step, status, updated, version = [f.decode() if isinstance(f, bytes) else f for f in fields]
    updated_ms = int(updated) if updated else 0
    env: dict[str, Any] = {"flow": flow, "step": step or None, "status": status,
                           "version": int(version) if version else 0, "updated_at": updated_ms,
                           "idle": max(0.0, (now_ms - updated_ms) / 1000), **_UNITS}
    if state is not None:
        env["flow_version"] = state.get("flow_version")
        env["slots"] = _Slots(state.get("slots") or {})
    return env


class _Slots(dict):  # type: ignore[type-arg]  # (a dict subclass for attribute-free lookups)
    """Slot values; an unset slot reads as None (a query about one slot must not fail on others)."""

    def __missing__(self, key: str) -> None:
        return None


def _row(sid: str, env: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": sid, "flow": env["flow"], "flow_version": env.get("flow_version"), "step": env["step"],
            "status": env["status"], "version": env["version"],
            "updated_at": dt.datetime.fromtimestamp(env["updated_at"] / 1000, dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "idle_s": round(env["idle"], 3)}


def find_sessions(store: Any, query: Query | str, *, now_ms: int | None = None, limit: int | None = None,
                  batch: int = 500, stats: FindStats | None = None,
                  progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """The sessions matching ``query``: dicts with ``session_id, flow, flow_version, step, status,
    version, updated_at`` (ISO-8601 UTC) and ``idle_s``. ``stats`` collects counts and the
    first evaluation error; ``progress`` is called with the number of candidates read so far."""
    q = compile_query(query) if isinstance(query, str) else query
    now = store.now_ms() if now_ms is None else now_ms
    stats = stats if stats is not None else FindStats()
    found = 0
    given: set[str] = set()  # SCAN and ZSCAN may return a key twice (while Redis rehashes)
    for sids in _candidates(store, q, now, batch):
        rows = match(store, q, sids, now_ms=now, stats=stats)
        if progress is not None:
            progress(stats.candidates)
        for row in rows:
            if row["session_id"] in given:
                continue
            given.add(row["session_id"])
            yield row
            found += 1
            if limit is not None and found >= limit:
                return


def _read(sids: list[str], with_state: bool, only_state: bool = False) -> Op[list[Any]]:
    """The state hash's small fields (and/or the state JSON) of ``sids``, in one round trip."""
    cmds: Batch = []
    for sid in sids:
        key = K.state_key(sid)
        if not only_state:
            cmds.append(("HMGET", key, *_FIELDS))
        if with_state or only_state:
            cmds.append(("HGETALL", key))  # the state JSON sits in chunks (statefield.py)
    replies = yield cmds
    return [check(r, sid) for r, sid in zip(replies, (x for x in sids for _ in range(1 if only_state or not with_state else 2)), strict=True)]


def match(store: Any, query: Query | str, sids: list[str], *, now_ms: int, stats: FindStats | None = None) -> list[dict[str, Any]]:
    """The rows of those of ``sids`` that match ``query`` now (two round trips at most, through the
    store's driver: its packer is several times cheaper than a redis-py pipeline's)."""
    q = compile_query(query) if isinstance(query, str) else query
    stats = stats if stats is not None else FindStats()
    replies = store._run(_read(sids, q.needs_state))
    step = 2 if q.needs_state else 1
    matched: list[tuple[str, dict[str, Any]]] = []
    for i, sid in enumerate(sids):
        fields = replies[i * step]
        if fields is None or fields[2] is None:
            continue  # deleted since it was listed
        state = None
        if q.needs_state:
            state = _parse(replies[i * step + 1])
            if state is None:
                stats.unreadable.append(sid)
                continue
        env = _env(sid, fields, state, now_ms)
        stats.candidates += 1
        try:
            ok = bool(q.expr.evaluate(env))
        except ExpressionError as exc:
            stats.errors += 1
            stats.first_error = stats.first_error or f"{sid}: {str(exc).splitlines()[0]}"
            continue
        if ok:
            matched.append((sid, env))
    if matched and not q.needs_state:  # rows carry flow_version: one more round trip, for matches only
        texts = store._run(_read([sid for sid, _ in matched], False, only_state=True))
        for (_sid, env), text in zip(matched, texts, strict=True):
            state = _parse(text)
            env["flow_version"] = state.get("flow_version") if state else None
    stats.matched += len(matched)
    return [_row(sid, env) for sid, env in matched]


def _parse(reply: Any) -> dict[str, Any] | None:
    text = state_head(reply)[1] if reply else None
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


__all__ = ["FindStats", "LIVE_STATUSES", "NAMES", "Query", "compile_query", "find_sessions", "match"]
