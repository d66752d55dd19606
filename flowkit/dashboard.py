"""The operators' dashboard as data: what ``dashboards/app.py`` shows, as DataFrames and dicts.

Every function here reads only what is cheap at any number of sessions: the metric
counters (:mod:`flowkit.metrics`), the store's derived indexes (active sessions by last
activity, timeouts, outbox, per-flow counters) and, for one session, that session's own
keys. Nothing SCANs the sessions. The one read that grows with traffic is the split of
*live* sessions by step (:func:`live_by_step`): it reads every live session's step while
there are at most ``sample`` of them, and an evenly spread sample of the activity index
beyond that (the result says which).

    from flowkit.dashboard import open_source, refresh
    src = open_source()                      # $FLOWKIT_REDIS_URL, else the embedded server
    data = refresh(src)                      # everything one screen refresh needs
    data["headline"]["live"], data["steps"]["order_pizza"]

The app renders; these functions decide. They are unit-tested on a real Redis and timed
at 1M sessions in ``bench/dashboard.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowkit import alerts as al
from flowkit.errors import CorruptStateError, FlowError, FlowkitError
from flowkit.flow.graph import to_networkx
from flowkit.flow.model import Flow
from flowkit.metrics.frames import series_frame
from flowkit.metrics.redis import by_label, total, totals
from flowkit.store import keys as K
from flowkit.store import ops
from flowkit.store.codec import HELD_STATUSES, TERMINAL_STATUSES, s
from flowkit.store.store import Store

DEFAULT_STUCK_AFTER_MS = 30 * 60_000
DEFAULT_SAMPLE = 2_000
LIVE_STATUSES = ("active", "waiting_input", "waiting_service")
DROP_STATUSES = ("failed", "cancelled", "handoff", "expired")
RATE_METRICS = ["messages_in", "messages_out", "sessions_started", "sessions_ended", "validation_failures",
                "engine_errors", "conflicts", "duplicates"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- connecting


@dataclass
class Source:
    """Where the dashboard reads from: a Redis client, a Store on it, and the flows it can draw."""

    client: Any
    store: Store
    url: str  # redacted (no password): safe to show
    flows: dict[str, Flow] = field(default_factory=dict)
    flow_problems: list[str] = field(default_factory=list)
    registry: Any = None  # a FlowRegistry on ``client``, kept so each version is parsed once


def open_source(url: str | None = None, flow_paths: Iterable[str | Path] | None = None) -> Source:
    """Connect (``url``, else ``$FLOWKIT_REDIS_URL``, else the embedded server) without
    touching Redis yet; flows come from ``flow_paths`` (default ``$FLOWKIT_FLOWS``) and
    are topped up from the flows registered in Redis by :func:`load_flows` later."""
    from flowkit.store.connection import settings

    cfg = settings(url)
    client = cfg.client()
    src = Source(client, Store(client), cfg.redacted)
    paths = list(flow_paths) if flow_paths is not None else [
        p for p in os.environ.get("FLOWKIT_FLOWS", "").split(os.pathsep) if p]
    if paths:
        from flowkit.flow import load_flows as load_files

        try:
            src.flows.update(load_files([Path(p) for p in paths]))
        except FlowError as exc:
            src.flow_problems += [str(p) for p in exc.problems]
        except OSError as exc:
            src.flow_problems.append(f"cannot read flows: {exc}")
    return src


def probe(client: Any) -> str | None:
    """None if Redis answers, else a one-line reason (for the "Redis unreachable" state)."""
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, auth, DNS: all "unreachable"
        return f"{type(exc).__name__}: {exc}"
    return None


def load_flows(src: Source) -> dict[str, Flow]:
    """Flows to draw: the latest version of each flow registered in Redis (what the runtime
    uses), and the files the dashboard was started with for flows Redis does not know."""
    from flowkit.runtime.registry import FlowRegistry

    out = dict(src.flows)
    try:
        if src.registry is None:
            src.registry = FlowRegistry(client=src.client, refresh_every=float("inf"))
        else:
            src.registry.refresh()  # one HGET per flow; only a new version is parsed
        for name in src.registry.names():
            out[name] = src.registry.latest(name)
    except FlowkitError as exc:
        problem = f"flows in Redis: {exc}"
        if problem not in src.flow_problems:
            src.flow_problems.append(problem)
    return out


# ---------------------------------------------------------------- reads


def _counters(client: Any) -> dict[str, dict[str, Any]]:
    return Store(client).counters()


def headline(client: Any, now: int | None = None, *, stuck_after_ms: int = DEFAULT_STUCK_AFTER_MS,
             window_ms: int = 5 * 60_000, counts: Mapping[str, float] | None = None,
             per_flow: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The numbers at the top of the page (a few pipelined reads)."""
    now = now_ms() if now is None else now
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(K.IDX_ACTIVE)
        pipe.zcount(K.IDX_ACTIVE, "-inf", now - stuck_after_ms)
        pipe.zcount(K.IDX_TIMEOUTS, "-inf", now)
        pipe.zcount(K.IDX_OUTBOX, "-inf", now - 60_000)
        pipe.get(K.QUARANTINE_COUNT)
        pipe.hlen(al.ACTIVE_KEY)
        live, stuck, due, backlog, quarantined, alerts = pipe.execute()
    counts = totals(client) if counts is None else counts
    per_flow = _counters(client) if per_flow is None else per_flow
    status: Counter[str] = Counter()
    for c in per_flow.values():
        status.update(c.get("status", {}))
    sessions = sum(int(c.get("sessions", 0)) for c in per_flow.values())
    completed = status.get("completed", 0)
    dropped = sum(status.get(x, 0) for x in DROP_STATUSES)
    ended = completed + dropped
    recent = series_frame(client, now - window_ms, now, ["messages_in", "sessions_started"])
    minutes_ = max(1.0, window_ms / 60_000)
    applied = by_label(counts, "events").get(("applied",), 0)
    return {
        "sessions": sessions, "live": int(live), "stuck": int(stuck), "timeouts_due": int(due),
        "outbox_backlog": int(backlog), "quarantined": int(s(quarantined) or 0), "active_alerts": int(alerts),
        "completed": completed, "dropped": dropped,
        "completion_rate": completed / ended if ended else None,
        "messages_in": total(counts, "messages_in"), "messages_out": total(counts, "messages_out"),
        "sessions_started": total(counts, "sessions_started"),
        "messages_per_min": float(recent["messages_in"].sum()) / minutes_,
        "starts_per_min": float(recent["sessions_started"].sum()) / minutes_,
        "engine_errors": total(counts, "engine_errors"), "conflicts": total(counts, "conflicts"),
        "mean_latency_ms": total(counts, "latency_ms_sum") / applied if applied else None,
        "stuck_after_ms": stuck_after_ms,
        "has_data": bool(sessions or live or counts),
    }


def delivery_summary(counts: Mapping[str, float]) -> dict[str, float | None]:
    """Deployment-wide delivery and read rates from WhatsApp's statuses (all time): of the
    replies WhatsApp reported ``sent``, the share delivered, read and failed. Per flow and
    step: :func:`delivery_by_step` (live) or ``flowkit analytics EXPORT -t delivery``."""
    got = {lab[0]: v for lab, v in by_label(counts, "delivery_status").items() if lab}
    sent = got.get("sent", 0.0)
    out: dict[str, float | None] = {"sent": sent}
    for name in ("delivered", "read", "failed"):
        n = got.get(name, 0.0) + (got.get("played", 0.0) if name == "read" else 0.0)
        out[name] = n
        out[f"{name}_rate"] = min(1.0, n / sent) if sent else None
    return out


DELIVERY_COLUMNS = ["flow", "step", "sent", "delivered", "read", "failed", "delivered_rate", "read_rate",
                    "failed_rate"]


def delivery_by_step(counts: Mapping[str, float]) -> pd.DataFrame:
    """Per flow and step, the statuses WhatsApp reported for the replies that step sent (all
    time, from the ``delivery_step`` counters: no SCAN) and the delivered, read and failed
    rates of the replies reported sent. Replies sent before flowkit recorded their step, or
    resent by another process after a crash, count in :func:`delivery_summary` only."""
    got: dict[tuple[str, str], dict[str, float]] = {}
    for labels, n in by_label(counts, "delivery_step").items():
        if len(labels) != 3:  # a name with the field separator in it: not ours to guess
            continue
        flow, step, status = labels
        counted = got.setdefault((flow, step), {})
        name = "read" if status == "played" else status  # a played voice note was heard: read
        counted[name] = counted.get(name, 0.0) + n
    rows = []
    for (flow, step), c in sorted(got.items()):
        sent = c.get("sent", 0.0)
        row: dict[str, Any] = {"flow": flow, "step": step, "sent": sent}
        for name in ("delivered", "read", "failed"):
            row[name] = c.get(name, 0.0)
            row[f"{name}_rate"] = min(1.0, row[name] / sent) if sent else None
        rows.append(row)
    return pd.DataFrame(rows, columns=DELIVERY_COLUMNS)


def rates(client: Any, now: int | None = None, *, window_ms: int = 60 * 60_000,
          metrics: list[str] | None = None) -> pd.DataFrame:
    """Per-minute counts over the last ``window_ms``: messages in/out, sessions started and
    ended, validation failures, errors (a UTC minute index; quiet minutes are 0)."""
    now = now_ms() if now is None else now
    return series_frame(client, now - window_ms, now, metrics or RATE_METRICS)


def flow_summary(per_flow: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per flow from the per-flow counters: sessions, live, each terminal status,
    completion and drop rates (of the sessions that ended)."""
    cols = ["flow", "sessions", "live", "completed", *DROP_STATUSES, "completion_rate", "drop_rate"]
    rows = []
    for name, c in sorted(per_flow.items()):
        st = c.get("status", {})
        live = sum(st.get(x, 0) for x in LIVE_STATUSES)
        completed = st.get("completed", 0)
        dropped = sum(st.get(x, 0) for x in DROP_STATUSES)
        ended = completed + dropped
        rows.append({"flow": name, "sessions": int(c.get("sessions", 0)), "live": live, "completed": completed,
                     **{x: st.get(x, 0) for x in DROP_STATUSES},
                     "completion_rate": completed / ended if ended else float("nan"),
                     "drop_rate": dropped / ended if ended else float("nan")})
    return pd.DataFrame(rows, columns=cols)


@dataclass
class LiveSteps:
    """Live sessions per (flow, step): exact, or scaled up from an even sample of the index."""

    counts: dict[tuple[str, str], float]
    live: int  # sessions in the activity index
    read: int  # how many of them were read
    exact: bool


def live_by_step(client: Any, *, sample: int = DEFAULT_SAMPLE, windows: int = 50) -> LiveSteps:
    """Where the live sessions are. Reads each live session's ``flow``/``step`` fields
    (one pipelined HMGET each) while there are at most ``sample``; beyond that reads
    ``windows`` evenly spaced slices of the activity index (by rank, so old and recent
    sessions are both seen) and scales the counts up."""
    n = int(client.zcard(K.IDX_ACTIVE))
    if n == 0:
        return LiveSteps({}, 0, 0, True)
    if n <= sample:
        members = client.zrange(K.IDX_ACTIVE, 0, -1)
    else:
        size = max(1, sample // windows)
        stride = n / windows
        with client.pipeline(transaction=False) as pipe:
            for i in range(windows):
                start = int(i * stride)
                pipe.zrange(K.IDX_ACTIVE, start, start + size - 1)
            members = [m for chunk in pipe.execute() for m in chunk]
    with client.pipeline(transaction=False) as pipe:
        for m in members:
            pipe.hmget(K.session_keys(s(m)).state, "flow", "step", "status")
        heads = pipe.execute()
    got: Counter[tuple[str, str]] = Counter()
    for flow, step, status in heads:
        st = s(status)
        if flow is None or st in TERMINAL_STATUSES:
            continue  # index drift (reconcile repairs it): not live
        got[(s(flow), s(step) or "")] += 1
    exact = len(members) >= n
    scale = 1.0 if exact else n / max(1, len(members))
    return LiveSteps({k: v * scale for k, v in got.items()}, n, len(members), exact)


def _step_order(flow: Flow | None, seen: Iterable[str]) -> list[str]:
    order: list[str] = []
    if flow is not None:
        g = to_networkx(flow)
        frontier = [flow.start]
        while frontier:  # breadth first from the start: the order a user meets the steps
            nxt = []
            for step in frontier:
                if step in order:
                    continue
                order.append(step)
                nxt += [b for b in g.successors(step) if b not in order]
            frontier = nxt
        order += [x for x in flow.steps if x not in order]
    return order + sorted(x for x in set(seen) if x not in order)


def step_table(flow_name: str, per_flow: Mapping[str, Mapping[str, Any]], live: LiveSteps,
               counts: Mapping[str, float], flow: Flow | None = None) -> pd.DataFrame:
    """Drop-off per step of one flow, for every session stored (not a time window).

    Columns (the names of :func:`flowkit.history.funnel`, for sessions with one journey):
    ``sessions_here`` sessions whose current or final step this is; ``active_here`` the
    live ones among them; ``completed_here`` those that ended here completed (a
    ``completed`` end step); ``dropped`` those that ended here otherwise (failed,
    cancelled, handoff, expired); ``drop_share`` dropped / all sessions of the flow;
    ``invalid_inputs`` validation failures at the step (all time); ``entered`` how many
    times sessions entered the step (the funnel, from the ``steps_entered`` counter;
    re-entries after ``back`` or a loop count again). With a sampled
    ``live`` (``live.exact`` False) active_here, completed_here and dropped are estimates.
    """
    c = per_flow.get(flow_name, {})
    here: Mapping[str, int] = c.get("step", {})
    sessions = int(c.get("sessions", 0))
    invalid = {lab[1]: v for lab, v in by_label(counts, "validation_failures").items() if lab[0] == flow_name}
    entered = {lab[1]: v for lab, v in by_label(counts, "steps_entered").items() if lab[0] == flow_name}
    live_here = {step: v for (f, step), v in live.counts.items() if f == flow_name}
    kinds: dict[str, tuple[str, str | None]] = {}
    if flow is not None:
        for name, data in to_networkx(flow).nodes(data=True):
            kinds[name] = (data["kind"], data["end"])
    rows = []
    for step in _step_order(flow, [*here, *live_here, *invalid, *entered]):
        n = int(here.get(step, 0))
        act = min(n, int(round(live_here.get(step, 0))))
        ended = n - act
        kind, end = kinds.get(step, (None, None))
        completed = ended if end == "completed" else 0
        rows.append({"step": step, "kind": kind, "end": end, "entered": int(entered.get(step, 0)),
                     "sessions_here": n, "active_here": act,
                     "completed_here": completed, "dropped": ended - completed,
                     "drop_share": (ended - completed) / sessions if sessions else 0.0,
                     "invalid_inputs": int(invalid.get(step, 0))})
    frame = pd.DataFrame(rows, columns=["step", "kind", "end", "entered", "sessions_here", "active_here", "completed_here",
                                        "dropped", "drop_share", "invalid_inputs"])
    frame.attrs.update(flow=flow_name, sessions=sessions, exact=live.exact)
    return frame


def flow_graph(flow: Flow, table: pd.DataFrame) -> Any:
    """The flow drawn with its traffic: live sessions and drop-offs on each step (red for
    the steps where most sessions are lost), invalid inputs on the re-prompt edges."""
    from flowkit.flow.render import render

    rows = {r.step: r for r in table.itertuples(index=False)}
    worst = max([int(r.dropped) for r in rows.values() if r.kind != "end"] + [1])
    labels, colours, edges = {}, {}, {}
    for step in flow.steps:
        r = rows.get(step)
        if r is None:
            continue
        if r.kind == "end":
            if r.sessions_here:
                labels[step] = f"ended here: {r.sessions_here:,}"
        elif r.active_here or r.dropped or r.entered:
            labels[step] = f"entered {r.entered:,} · live {r.active_here:,} · dropped {r.dropped:,}"
            if r.dropped:
                # white -> red by the share of the worst step's drop-offs
                k = int(r.dropped) / worst
                colours[step] = f"#ff{int(235 - 130 * k):02x}{int(235 - 130 * k):02x}"
        if r.invalid_inputs:
            edges[(step, step)] = f"{r.invalid_inputs:,} invalid"
    return render(flow, node_labels=labels, node_colours=colours, edge_labels=edges)


def stuck_sessions(client: Any, now: int | None = None, *, stuck_after_ms: int = DEFAULT_STUCK_AFTER_MS,
                   limit: int = 50) -> pd.DataFrame:
    """The live sessions idle longest (idle more than ``stuck_after_ms``), oldest first, from
    the activity index: one ZRANGEBYSCORE plus one HMGET per row, whatever the total."""
    now = now_ms() if now is None else now
    cols = ["session_id", "flow", "step", "status", "version", "last_activity", "idle_min"]
    found = client.zrangebyscore(K.IDX_ACTIVE, "-inf", now - stuck_after_ms, start=0, num=limit, withscores=True)
    if not found:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    with client.pipeline(transaction=False) as pipe:
        for sid, _ in found:
            pipe.hmget(K.session_keys(s(sid)).state, "flow", "step", "status", "version")
        heads = pipe.execute()
    rows = []
    for (sid, at), (flow, step, status, version) in zip(found, heads, strict=True):
        if s(status) in HELD_STATUSES:
            continue  # waiting for a person, not stuck: see waiting_for_person
        rows.append({"session_id": s(sid), "flow": s(flow), "step": s(step), "status": s(status),
                     "version": int(s(version)) if version is not None else None,
                     "last_activity": pd.Timestamp(int(at), unit="ms", tz="UTC"),
                     "idle_min": round((now - int(at)) / 60_000, 1)})
    return pd.DataFrame(rows, columns=cols)


def session_detail(store: Store, session_id: str, *, history_limit: int = 200) -> dict[str, Any] | None:
    """One session: its verified state (``problem`` says why not, with the raw JSON), its
    last ``history_limit`` history records as a DataFrame (with ``why``) and its
    ``transcript`` (messages both ways, with statuses). None if there is no session.
    Reading never repairs: a corrupt state is shown, not quarantined (``flowkit`` does that
    on the next message or ``load``)."""
    problem = None
    try:
        state = store.driver.run(ops.load(store.config, session_id, recover=False))
    except CorruptStateError as exc:
        state, problem = store.load_raw(session_id), str(exc)
    if state is None:
        if not store.history(session_id, limit=1):
            return None
        problem = problem or "the state key is missing (the history is still there)"
    version = int(state["version"]) if state and isinstance(state.get("version"), int) else 0
    first = max(1, version - history_limit + 1) if version else 1
    records = store.history(session_id, first)
    hist = pd.DataFrame(records, columns=["version", "ts", "event", "from_step", "to_step", "path", "status",
                                          "message_id", "input", "error", "actor", "why"])
    if not hist.empty:
        hist["ts"] = pd.to_datetime(hist["ts"], unit="ms", utc=True)
    return {"session_id": session_id, "state": state, "problem": problem, "version": version,
            "history": hist, "first_version": int(hist["version"].min()) if not hist.empty else None,
            # the chat both ways, as Redis keeps it (flowkit/store/transcript.py)
            "transcript": store.transcript(session_id)}


def session_diff(store: Store, session_id: str, a: int, b: int) -> dict[str, Any]:
    """What changed between two versions: ``changes`` (a DataFrame: path, op, from, to) and
    the ``events`` in between."""
    d = store.diff(session_id, a, b)
    changes = pd.DataFrame([{"path": ".".join(str(p) for p in c["path"]), "op": c["op"],
                             "from": _show(c.get("from")), "to": _show(c.get("to"))} for c in d["changes"]],
                           columns=["path", "op", "from", "to"])
    return {"from_version": a, "to_version": b, "changes": changes, "events": pd.DataFrame(d["events"])}


def _show(v: Any) -> str:
    return "" if v is None else json.dumps(v, ensure_ascii=False, default=str)


def rollback(store: Store, session_id: str, to_version: int) -> Any:
    """Make version ``to_version`` current again (a new version with a ``rollback`` record,
    actor ``admin``); returns the :class:`~flowkit.store.CommitResult`."""
    return store.rollback(session_id, int(to_version), actor="admin")


def service_health(client: Any, now: int | None = None, *, window_ms: int = 15 * 60_000,
                   counts: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per service: calls, errors, error rate and mean latency, all time and in the last
    ``window_ms`` (from the service_calls / service_errors / service_ms counters)."""
    now = now_ms() if now is None else now
    counts = totals(client) if counts is None else counts
    recent: Counter[str] = Counter()
    for minute in series_window(client, now - window_ms, now).values():
        recent.update(minute)
    cols = ["service", "calls", "errors", "error_rate", "mean_ms", "calls_recent", "errors_recent",
            "error_rate_recent", "mean_ms_recent"]
    rows = []
    names = {lab[0] for lab in by_label(counts, "service_calls")} | {lab[0] for lab in by_label(recent, "service_calls")}
    for svc in sorted(names):
        row: dict[str, Any] = {"service": svc}
        for suffix, src in (("", counts), ("_recent", recent)):
            calls = by_label(src, "service_calls").get((svc,), 0)
            errors = by_label(src, "service_errors").get((svc,), 0)
            ms = by_label(src, "service_ms").get((svc,), 0)
            row |= {f"calls{suffix}": int(calls), f"errors{suffix}": int(errors),
                    f"error_rate{suffix}": errors / calls if calls else float("nan"),
                    f"mean_ms{suffix}": ms / calls if calls else float("nan")}
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def series_window(client: Any, since_ms: int, until_ms: int) -> dict[int, dict[str, float]]:
    from flowkit.metrics.redis import minutes

    return minutes(client, since_ms, until_ms)


def alerts(client: Any, *, limit: int = 50) -> dict[str, pd.DataFrame]:
    """``active``: alerts firing now (most recent first); ``history``: the last fired and
    resolved events (as kept by :class:`flowkit.alerts.AlertManager`)."""
    act = pd.DataFrame([{"name": a.name, "severity": a.severity,
                         "labels": ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())),
                         "since": pd.Timestamp(a.since_ms, unit="ms", tz="UTC"), "value": a.value,
                         "message": a.message} for a in al.active(client)],
                       columns=["name", "severity", "labels", "since", "value", "message"])
    hist = pd.DataFrame([{"event": e.get("event"), "name": e.get("name"), "severity": e.get("severity"),
                          "at": pd.Timestamp(e.get("at_ms", 0), unit="ms", tz="UTC"), "message": e.get("message")}
                         for e in al.history(client, limit)], columns=["event", "name", "severity", "at", "message"])
    return {"active": act, "history": hist}


# ---------------------------------------------------------------- one refresh


def waiting_for_person(store: Store, now: int | None = None, *, limit: int = 200) -> pd.DataFrame:
    """The "Waiting for a person" queue: sessions in hand-off, longest wait first, with how
    long each has waited and the user's last message (runtime/handoff.py; one read per row)."""
    from flowkit.runtime.handoff import waiting_sync

    now = now_ms() if now is None else now
    cols = ["session_id", "flow", "step", "since", "waiting_min", "reason", "last_message"]
    rows = [{"session_id": w.session_id, "flow": w.flow, "step": w.step,
             "since": pd.Timestamp(w.since_ms, unit="ms", tz="UTC"),
             "waiting_min": round(max(0, now - w.since_ms) / 60_000, 1), "reason": w.reason,
             "last_message": w.last_message} for w in waiting_sync(store, limit)]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


def refresh(src: Source, now: int | None = None, *, stuck_after_ms: int = DEFAULT_STUCK_AFTER_MS,
            window_ms: int = 60 * 60_000, sample: int = DEFAULT_SAMPLE, stuck_limit: int = 50,
            flows: Mapping[str, Flow] | None = None) -> dict[str, Any]:
    """Everything one screen refresh shows, read once and shared: ``headline``, ``rates``,
    ``flows`` (summary), ``steps`` {flow: step_table}, ``live`` (LiveSteps), ``stuck``,
    ``services``, ``alerts``."""
    now = now_ms() if now is None else now
    client = src.client
    counts = totals(client)
    per_flow = _counters(client)
    live = live_by_step(client, sample=sample)
    drawn = flows if flows is not None else src.flows
    return {
        "now": now,
        "headline": headline(client, now, stuck_after_ms=stuck_after_ms, counts=counts, per_flow=per_flow),
        "rates": rates(client, now, window_ms=window_ms),
        "flows": flow_summary(per_flow),
        "delivery": delivery_by_step(counts),
        "live": live,
        "steps": {name: step_table(name, per_flow, live, counts, drawn.get(name))
                  for name in sorted(set(per_flow) | set(drawn))},
        "stuck": stuck_sessions(client, now, stuck_after_ms=stuck_after_ms, limit=stuck_limit),
        "waiting": waiting_for_person(src.store, now),
        "services": service_health(client, now, counts=counts),
        "alerts": alerts(client),
    }


__all__ = [
    "DEFAULT_STUCK_AFTER_MS", "LiveSteps", "Source", "alerts", "delivery_by_step", "flow_graph", "flow_summary", "headline",
    "live_by_step", "load_flows", "open_source", "probe", "rates", "refresh", "rollback", "service_health",
    "session_detail", "session_diff", "step_table", "stuck_sessions", "waiting_for_person",
]
