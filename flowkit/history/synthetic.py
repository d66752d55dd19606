"""Synthetic histories with injected anomalies and a known ground truth.

The clean part is realistic because it is not made up: seeded simulated users talk to
the real, pure engine (:func:`flowkit.engine.step`) on the example flows — valid and
invalid answers (``flowkit.sim.answers``), global commands, abandonment with the
timeouts the runtime would fire, failing and slow services, new starts in an ended
session, admin rollbacks and resets, and migrations from ``order_pizza`` version 3 to a
version 4 (:func:`pizza_v4`). Every record is exactly what the runtime would commit.

Then anomalies of every code are injected by editing rows — each in its own session,
each designed to cause exactly one finding — and :attr:`Synthetic.truth` lists the
``(code, session_id, version)`` that a correct analysis must report. Everything else must
report nothing: the clean sessions are checked to be clean by the tests.

For millions of rows, :meth:`Synthetic.tiles` repeats the sessions under new session ids
(anomalies and truth included), so benchmarks need not run the engine 10M times.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowkit.engine import Command, Message, ServiceResult, Start, State, Timeout, fail, step
from flowkit.engine.locate import locate
from flowkit.engine.state import Record
from flowkit.errors import EngineError, HistoryError
from flowkit.flow.loader import flow_from_dict
from flowkit.flow.model import HELD_STATUSES, AskStep, CallStep, Flow
from flowkit.history.anomalies import (
    CODES,
    DEFAULT_RETRY_THRESHOLD,
    DEFAULT_STUCK_AFTER,
    AnalysisReport,
    Anomaly,
)
from flowkit.history.columns import (
    HISTORY_COLUMNS,
    SESSION_COLUMNS,
    TERMINAL,
    Format,
    TableWriter,
    frame_to_table,
    iso,
    rows_to_table,
    table_to_frame,
    write_export,
    write_meta,
)
from flowkit.history.flowset import FlowSet
from flowkit.sim.answers import invalid_answer, service_value, valid_answer

EXAMPLE_FLOWS = Path(__file__).resolve().parents[2] / "examples" / "flows"
EPOCH_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z, as the simulator: reproducible dates


def pizza_v4(v3: Flow) -> Flow:
    """``order_pizza`` version 4, derived from version 3: the ``upsell`` step is gone (large
    pizzas go straight to the quantity), ``ask_address`` is renamed ``ask_delivery``, and a
    new ``ask_crust`` question follows the quantity. Material for migrations, what-if
    replay and change impact."""
    d = v3.to_dict()
    d["version"] = "4"
    steps = dict(d["steps"])
    steps.pop("upsell")
    steps["ask_size"] = {**steps["ask_size"], "next": "ask_qty"}
    steps["ask_qty"] = {**steps["ask_qty"], "next": "ask_crust"}
    steps["ask_crust"] = {"ask": "Thin or thick crust?", "input": {"type": "choice", "options": ["thin", "thick"]},
                          "save": "crust", "next": "ask_delivery"}
    steps["ask_delivery"] = steps.pop("ask_address")
    d["steps"] = {k: steps[k] for k in ("welcome", "ask_size", "ask_qty", "ask_crust", "ask_delivery",
                                        "expired_reminder", "place_order", "done", "sorry", "handoff")}
    d["slots"] = {**d["slots"], "crust": {"type": "choice", "options": ["thin", "thick"]}}
    d["slots"].pop("drink", None)
    d["steps"]["place_order"] = {**d["steps"]["place_order"],
                                 "args": {"size": "size", "qty": "qty", "crust": "crust", "address": "address"}}
    return flow_from_dict(d, "<order_pizza v4>")


# The step a v3 session moves to when migrated to v4 (what `flowkit migrate` would be given).
PIZZA_V3_TO_V4 = {"upsell": "ask_qty", "ask_address": "ask_delivery"}


def example_flows(with_v4: bool = True) -> FlowSet:
    """The example flows (and ``order_pizza`` version 4)."""
    fs = FlowSet.load(EXAMPLE_FLOWS)
    if with_v4:
        fs.add(pizza_v4(fs.get("order_pizza", "3")))
    return fs


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of :func:`generate`. Rates are per decision (per question, per service call)."""

    sessions: int = 400
    seed: int = 0
    start_ms: int = EPOCH_MS
    window_s: float = 6 * 3600.0  # sessions start spread over this many seconds
    think_s: float = 25.0  # mean seconds a user takes to answer
    invalid_rate: float = 0.15
    max_invalid_in_row: int = 3  # keep clean sessions below the RETRY_LOOP threshold
    abandon_rate: float = 0.04
    command_rate: float = 0.04  # back, help, cancel, restart (typed)
    busy_rate: float = 0.05  # a message while a service call is pending
    service_error_rate: float = 0.1
    service_timeout_rate: float = 0.03
    restart_rate: float = 0.15  # a new start after the session ended
    rollback_rate: float = 0.02  # admin rollbacks (per question)
    reset_rate: float = 0.01  # admin resets (per question)
    migrate_rate: float = 0.2  # order_pizza v3 sessions migrated to v4 (once, at a question)
    v4_share: float = 0.3  # order_pizza sessions started on v4
    inflight: float = 0.05  # share of sessions still running at export time
    per_code: int = 3  # injected anomalies per code
    retry_threshold: int = DEFAULT_RETRY_THRESHOLD
    stuck_after_s: float = DEFAULT_STUCK_AFTER


@dataclass(frozen=True)
class Synthetic:
    """A generated export: history, sessions snapshot, export time, flows and ground truth."""

    history: pd.DataFrame
    sessions: pd.DataFrame
    exported_at: pd.Timestamp
    flows: FlowSet
    injected: tuple[Anomaly, ...]
    config: SyntheticConfig
    clean_sessions: frozenset[str] = field(default_factory=frozenset)
    # (record, state) pairs per session, as the engine produced them (generate(keep_states=True)).
    commits: Mapping[str, tuple[tuple[dict[str, Any], dict[str, Any]], ...]] | None = None

    @property
    def truth(self) -> frozenset[tuple[str, str, int | None]]:
        return frozenset((a.code, a.session_id, a.version) for a in self.injected)

    def write(self, out_dir: str | Path, fmt: Format = "parquet") -> Path:
        """Write as an export folder (``export.json`` included) that ``flowkit analyze`` reads."""
        return write_export(out_dir, self.history, self.sessions, fmt=fmt, exported_at=self.exported_at,
                            extra={"synthetic": {"seed": self.config.seed, "sessions": self.config.sessions}})

    def score(self, report: AnalysisReport | Sequence[Anomaly]) -> pd.DataFrame:
        """Precision and recall per code of ``report`` against the ground truth."""
        return score(self.truth, report)

    def tiles(self, copies: int) -> Iterator[pa.Table]:
        """The history repeated ``copies`` times under new session ids (``<id>~<k>``), one Arrow table per copy."""
        base = frame_to_table(self.history, "history")
        for k in range(copies):
            sid = pc.binary_join_element_wise(base.column("session_id"), pa.scalar(f"~{k}"), "")
            yield base.set_column(0, "session_id", sid)

    def tiled_sessions(self, copies: int) -> Iterator[pa.Table]:
        base = frame_to_table(self.sessions, "sessions")
        for k in range(copies):
            sid = pc.binary_join_element_wise(base.column("session_id"), pa.scalar(f"~{k}"), "")
            yield base.set_column(0, "session_id", sid)

    def tiled_truth(self, copies: int) -> frozenset[tuple[str, str, int | None]]:
        return frozenset((c, f"{s}~{k}", v) for c, s, v in self.truth for k in range(copies))

    def write_tiled(self, out_dir: str | Path, copies: int, fmt: Format = "parquet") -> dict[str, Any]:
        """Write ``copies`` tiles as one export with bounded memory (for the 10M-row benchmark)."""
        out = Path(out_dir)
        meta: dict[str, Any] = {"format": fmt, "exported_at": iso(int(self.exported_at.value // 1_000_000)),
                                "synthetic": {"seed": self.config.seed, "sessions": self.config.sessions, "copies": copies}}
        for kind, tables in (("history", self.tiles(copies)), ("sessions", self.tiled_sessions(copies))):
            w = TableWriter(out, kind, fmt)  # type: ignore[arg-type]
            for t in tables:
                w.write_table(t)
            meta[kind] = w.close()
        write_meta(out, meta)
        return meta


def score(truth: frozenset[tuple[str, str, int | None]] | set[tuple[str, str, int | None]],
          report: AnalysisReport | Sequence[Anomaly]) -> pd.DataFrame:
    """Precision and recall per code: found ``(code, session_id, version)`` against ``truth``."""
    anomalies = report.anomalies if isinstance(report, AnalysisReport) else report
    found = {(a.code, a.session_id, a.version) for a in anomalies}
    rows = []
    for code in CODES:
        t = {x for x in truth if x[0] == code}
        f = {x for x in found if x[0] == code}
        tp = len(t & f)
        rows.append({"code": code, "truth": len(t), "found": len(f), "true_positives": tp,
                     "precision": tp / len(f) if f else (1.0 if not t else 0.0),
                     "recall": tp / len(t) if t else 1.0})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the clean part


@dataclass
class _Session:
    sid: str
    records: list[dict[str, Any]] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    inflight: bool = False
    seq: int = 0

    @property
    def state(self) -> State | None:
        return self.states[-1] if self.states else None

    def mid(self) -> str:
        self.seq += 1
        return f"wamid.{self.sid}.{self.seq}"


class _Generator:
    def __init__(self, cfg: SyntheticConfig, flows: FlowSet) -> None:
        self.cfg = cfg
        self.flows = flows
        self.roots = [f for f in flows.latest().values() if f.triggers]
        self.roots.sort(key=lambda f: f.name)
        self.master = random.Random(cfg.seed)

    # -- one session

    def flow_of(self, state: State) -> Flow:
        return self.flows.get(state.flow, state.flow_version)

    def apply(self, s: _Session, flow: Flow, event: Any, now: int) -> bool:
        try:
            t = step(flow, s.state, event, now, flows=self.flows, session_id=s.sid)
        except EngineError as exc:
            # What the runtime does: fail the session visibly with the reason.
            if s.state is None or s.state.terminal:
                raise
            t = fail(flow, s.state, f"engine_error: {exc}", now)
        if t.record is None:
            return False
        state = t.state
        row = _row(s.sid, state, t.record)
        s.records.append(row)
        s.states.append(state)
        return True

    def expire(self, s: _Session, now: int, limit_ms: int | None) -> int:
        """The user left: fire the timeouts the runtime would, until the session ends."""
        for _ in range(10):
            st = s.state
            assert st is not None
            if st.terminal or (st.status in HELD_STATUSES and (st.pending or {}).get("deadline") is None):
                break  # held by people with no deadline: until the export
            due = _next_due(st, self.flow_of(st))
            if due is None:
                break
            now = max(now, due)
            if limit_ms is not None and now > limit_ms:
                break
            if not self.apply(s, self.flow_of(st), Timeout(), now):
                now += 1000
        return now

    def run(self, s: _Session, rng: random.Random, t0: int, limit_ms: int | None) -> None:
        cfg = self.cfg
        now = t0
        starts = 0
        invalid_in_row = 0
        migrated = False
        while True:
            st = s.state
            if st is not None and st.status in HELD_STATUSES:
                # No agent answers a synthetic user: the hand-off is held until its flow's
                # hand-off timeout gives it back to the bot (as the worker would), or the export.
                due = (st.pending or {}).get("deadline")
                if due is None or (limit_ms is not None and int(due) > limit_ms):
                    return
                now = max(now, int(due))
                if not self.apply(s, self.flow_of(st), Timeout(), now):
                    return
                continue
            if st is None or st.terminal:
                if st is not None and (starts >= 3 or rng.random() >= cfg.restart_rate):
                    return
                # A new start in an ended session keeps its flow (the engine would start another
                # one, but keeping it keeps the generated ground truth simple).
                root = self.roots[rng.randrange(len(self.roots))] if st is None else self.flows.get(st.flow)
                flow = self.flows.get(root.name)
                if root.name == "order_pizza" and self.flows.has("order_pizza", "3") and rng.random() >= cfg.v4_share:
                    flow = self.flows.get("order_pizza", "3")
                now += int(rng.expovariate(1 / 3600) * 1000) if st is not None else 0
                if limit_ms is not None and now > limit_ms:
                    return
                text = flow.triggers[0] if flow.triggers else flow.name
                self.apply(s, flow, Start(flow=flow.name, message_id=s.mid(), text=text,
                                          profile={"name": f"User {s.sid}"}), now)
                starts += 1
                invalid_in_row = 0
                continue
            flow = self.flow_of(st)
            pending = st.pending or {}
            if pending.get("wait") == "service":
                now = self.service(s, rng, now, limit_ms)
                if now < 0:
                    return
                continue
            # Waiting for the user at an ask step.
            think = int(rng.expovariate(1 / cfg.think_s) * 1000) + 500
            if limit_ms is not None and now + think > limit_ms:
                return
            if rng.random() < cfg.abandon_rate:
                now = self.expire(s, now, limit_ms)
                if not s.state or not s.state.terminal:
                    return
                continue
            now += think
            roll = rng.random()
            if roll < cfg.rollback_rate and len(s.states) >= 3:
                target = s.states[rng.randrange(max(0, len(s.states) - 4), len(s.states) - 1)]
                # Only to a state waiting for the user: a state waiting for a service would wait
                # for a result the store has already seen (and would refuse as a duplicate).
                if target.flow == st.flow and target.status == "waiting_input":
                    # Validated against the flow version the restored state is pinned to.
                    self.apply(s, self.flow_of(target), Command(name="rollback", args={"state": target.to_dict(),
                                                                       "to_version": target.version}, actor="admin"), now)
                    continue
            roll -= cfg.rollback_rate
            if roll < cfg.reset_rate:
                self.apply(s, flow, Command(name="reset", actor="admin"), now)
                invalid_in_row = 0
                continue
            roll -= cfg.reset_rate
            if (not migrated and st.flow == "order_pizza" and st.flow_version == "3" and not st.stack
                    and self.flows.has("order_pizza", "4") and roll < cfg.migrate_rate * 0.3):
                assert st.step is not None
                new = self.flows.get("order_pizza", "4")
                target = PIZZA_V3_TO_V4.get(st.step, st.step)
                self.apply(s, new, Command(name="migrate", args={"step": target, "flow_version": "4"}, actor="admin"), now)
                migrated = True
                continue
            if rng.random() < cfg.command_rate:
                word = rng.choice(["back", "help", "cancel", "restart", "back"])
                self.apply(s, flow, Message(text=word, message_id=s.mid()), now)
                invalid_in_row = 0
                continue
            assert st.step is not None
            owner, ask = locate(flow, st.step, self.flows, [f["flow_version"] for f in st.stack])
            if not isinstance(ask, AskStep):  # pragma: no cover - waiting for input means an ask step
                return
            if rng.random() < cfg.invalid_rate and invalid_in_row < cfg.max_invalid_in_row:
                msg = invalid_answer(ask, rng)
                invalid_in_row += 1
            else:
                slot = owner.slots.get(ask.save) if ask.save else None
                msg = valid_answer(ask, slot, rng, dt.datetime.fromtimestamp(now / 1000, dt.UTC).date())
                invalid_in_row = 0
            before = st.step
            self.apply(s, flow, Message(text=msg.text, type=msg.type, reply_id=msg.reply_id, location=msg.location,
                                        media=msg.media, message_id=s.mid()), now)
            if s.state is not None and s.state.step != before:
                invalid_in_row = 0

    def service(self, s: _Session, rng: random.Random, now: int, limit_ms: int | None) -> int:
        cfg = self.cfg
        st = s.state
        assert st is not None and st.pending is not None
        flow = self.flow_of(st)
        call_id = st.pending["call_id"]
        if rng.random() < cfg.busy_rate:
            at = now + int(rng.uniform(0.2, 1.0) * 1000)
            if limit_ms is None or at <= limit_ms:
                self.apply(s, flow, Message(text=rng.choice(["?", "hello?", "ok"]), message_id=s.mid()), at)
                now = at
        roll = rng.random()
        if roll < cfg.service_timeout_rate:
            deadline = int(st.pending["deadline"])
            if limit_ms is not None and deadline > limit_ms:
                return -1
            self.apply(s, flow, Timeout(), deadline)
            return deadline
        at = now + int(rng.uniform(0.2, 2.5) * 1000)
        if limit_ms is not None and at > limit_ms:
            return -1
        if rng.random() < cfg.service_error_rate:
            result = ServiceResult(call_id=call_id, ok=False, error="simulated_error")
        else:
            owner, call = locate(flow, st.step or "", self.flows, [f["flow_version"] for f in st.stack])
            slot = owner.slots.get(call.save) if isinstance(call, CallStep) and call.save else None
            if slot is not None and slot.type == "any":
                value: Any = {"amount": round(rng.uniform(5, 200), 2), "id": call_id[-6:]}
            else:
                value = service_value(slot, rng, call_id)
            result = ServiceResult(call_id=call_id, ok=True, value=value)
        self.apply(s, flow, result, at)
        return at

    def generate(self) -> tuple[dict[str, _Session], int]:
        cfg = self.cfg
        n_inflight = int(round(cfg.sessions * cfg.inflight))
        sessions: dict[str, _Session] = {}
        rngs: list[random.Random] = [random.Random(self.master.randrange(2**63)) for _ in range(cfg.sessions)]
        window = int(cfg.window_s * 1000)
        for i in range(cfg.sessions - n_inflight):
            s = _Session(f"syn{cfg.seed}-{i:06d}")
            self.run(s, rngs[i], cfg.start_ms + rngs[i].randrange(max(window, 1)), None)
            sessions[s.sid] = s
        last = max((r["ts"] for s in sessions.values() for r in s.records), default=cfg.start_ms)
        exported_at = last + 60_000
        # Sessions still running at export time started within the last 20 minutes, so
        # none of them is idle beyond the STUCK threshold.
        recent = int(min(20 * 60, cfg.stuck_after_s * 0.6) * 1000)
        for i in range(cfg.sessions - n_inflight, cfg.sessions):
            s = _Session(f"syn{cfg.seed}-{i:06d}", inflight=True)
            self.run(s, rngs[i], exported_at - rngs[i].randrange(60_000, max(recent, 60_001)), exported_at)
            if s.records:
                sessions[s.sid] = s
        return sessions, exported_at


def _next_due(state: State, flow: Flow) -> int | None:
    due = []
    if state.pending and state.pending.get("deadline") is not None:
        due.append(int(state.pending["deadline"]))
    if flow.timeout is not None and state.status not in HELD_STATUSES:  # people have their own clock
        due.append(state.updated_at + int(flow.timeout * 1000))
    return min(due) if due else None


def _row(sid: str, state: State, record: Record) -> dict[str, Any]:
    d = record.to_dict()
    d["session_id"] = sid
    d["flow"] = state.flow
    d["flow_version"] = state.flow_version
    return d


def _snapshot(s: _Session) -> dict[str, Any]:
    st = s.state
    assert st is not None
    return {"session_id": s.sid, "flow": st.flow, "flow_version": st.flow_version, "version": st.version,
            "step": st.step, "status": st.status, "started_at": st.started_at, "updated_at": st.updated_at}


# ---------------------------------------------------------------- injections


class _Injector:
    """Edits clean sessions so each shows exactly one anomaly; records the truth."""

    def __init__(self, cfg: SyntheticConfig, flows: FlowSet, hist: dict[str, list[dict[str, Any]]],
                 snap: dict[str, dict[str, Any]], exported_at: int, inflight: set[str], rng: random.Random) -> None:
        self.cfg = cfg
        self.flows = flows
        self.hist = hist
        self.snap = snap
        self.exported_at = exported_at
        self.rng = rng
        self.pool = [sid for sid in sorted(hist) if sid not in inflight]
        rng.shuffle(self.pool)
        self.used: set[str] = set()
        self.truth: list[Anomaly] = []
        self.n = cfg.retry_threshold

    def graph(self, rec: Mapping[str, Any]) -> Any:
        return self.flows.graph(rec["flow"], rec["flow_version"])

    def pick(self, predicate: Any) -> tuple[str, Any] | None:
        for sid in self.pool:
            if sid in self.used:
                continue
            found = predicate(sid, self.hist[sid])
            if found is not None and found is not False:
                self.used.add(sid)
                return sid, found
        return None

    def truth_add(self, code: str, sid: str, version: int | None, detail: str) -> None:
        self.truth.append(Anomaly(code, sid, version, detail))

    def mid(self, sid: str, tag: str) -> str:
        return f"wamid.{sid}.{tag}{self.rng.randrange(10**6)}"

    @staticmethod
    def is_retry(r: Mapping[str, Any]) -> bool:
        return r["event"] == "message" and list(r["path"]) == [r["from_step"]] and r["from_step"] is not None

    @staticmethod
    def quiet(r: Mapping[str, Any]) -> bool:
        """A plain answer: not a retry, not exempt, not terminal."""
        return (r["event"] == "message" and not _Injector.is_retry(r) and r["actor"] not in ("admin", "recovery")
                and r["status"] not in TERMINAL and len(r["path"]) > 0)

    # -- one method per code

    def version_gap(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> int | None:
            for k in range(1, len(recs) - 1):
                if (self.quiet(recs[k]) and recs[k - 1]["status"] not in TERMINAL
                        and not self.is_retry(recs[k - 1]) and not self.is_retry(recs[k + 1])):
                    return k
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, k = got
        v = self.hist[sid].pop(k)["version"]
        self.truth_add("VERSION_GAP", sid, v, "a middle record removed")
        return True

    def version_duplicate(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> int | None:
            for k in range(1, len(recs) - 1):
                if self.quiet(recs[k]):
                    return k
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, k = got
        recs = self.hist[sid]
        copy = dict(recs[k])
        copy["message_id"] = self.mid(sid, "lost")
        copy["ts"] = copy["ts"] + 5
        recs.insert(k + 1, copy)
        self.truth_add("VERSION_DUPLICATE", sid, copy["version"], "two commits of one version")
        return True

    def chain_break(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> tuple[int, str] | None:
            for k in range(1, len(recs)):
                r = recs[k]
                if not self.quiet(r) or not self.flows.has(r["flow"], r["flow_version"]):
                    continue
                g = self.graph(r)
                b = r["path"][0]
                preds = sorted(a for a, x in g.edges if x == b and a not in (r["from_step"], b))
                if preds:
                    return k, self.rng.choice(preds)
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, (k, other) = got
        self.hist[sid][k]["from_step"] = other
        self.truth_add("CHAIN_BREAK", sid, self.hist[sid][k]["version"], f"from_step set to {other}")
        return True

    def illegal_transition(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> int | None:
            for k, r in enumerate(recs):
                if (r["event"] in ("message", "start", "service_result", "timeout") and r["actor"] not in ("admin", "recovery")
                        and len(r["path"]) >= 2 and r["path"][-1] == r["to_step"]
                        and self.flows.has(r["flow"], r["flow_version"])):
                    g = self.graph(r)
                    a = r["from_step"] if r["from_step"] is not None else None
                    legal = (a, r["to_step"]) in g.edges if a is not None else r["to_step"] == g.start
                    if not legal and (a is None or a in g.nodes):
                        return k
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, k = got
        r = self.hist[sid][k]
        r["path"] = [r["to_step"]]
        self.truth_add("ILLEGAL_TRANSITION", sid, r["version"], "path shortened to a jump")
        return True

    def unknown_step(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> int | None:
            for k, r in enumerate(recs):
                if self.quiet(r) and r["path"][-1] == r["to_step"] and (k + 1 == len(recs) or recs[k + 1]["from_step"] == r["to_step"]):
                    return k
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, k = got
        recs = self.hist[sid]
        r = recs[k]
        ghost = f"ghost_{r['to_step'].replace('/', '_')}"
        r["to_step"] = ghost
        r["path"] = [*r["path"][:-1], ghost]
        # The chain must hold: the next records start at the ghost, and those that stay
        # put (help, busy, an expiry) stay at the ghost, up to the first that moves on.
        for later in recs[k + 1:]:
            later["from_step"] = ghost
            if later["path"]:
                break
            later["to_step"] = ghost
        else:
            self.snap[sid]["step"] = ghost
        self.truth_add("UNKNOWN_STEP", sid, r["version"], f"step renamed to {ghost}")
        return True

    def duplicate_message(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> tuple[int, int] | None:
            msgs = [k for k, r in enumerate(recs) if r["event"] == "message" and r["message_id"]]
            if len(msgs) >= 2:
                return msgs[0], msgs[-1]
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, (a, b) = got
        recs = self.hist[sid]
        recs[b]["message_id"] = recs[a]["message_id"]
        self.truth_add("DUPLICATE_MESSAGE", sid, recs[b]["version"], "a message applied twice")
        return True

    def state_mismatch(self, variant: int) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> bool:
            return bool(recs) and recs[-1]["status"] in TERMINAL
        got = self.pick(ok)
        if got is None:
            return False
        sid, _ = got
        recs = self.hist[sid]
        last = recs[-1]
        snap = self.snap[sid]
        kind = variant % 5
        if kind == 0:
            snap["version"] = last["version"] + 1
        elif kind == 1:
            snap["status"] = next(s for s in ("completed", "failed", "handoff") if s != last["status"])
        elif kind == 2:
            g = self.flows.graph(last["flow"], last["flow_version"])
            snap["step"] = next(s for s in sorted(g.nodes) if s != last["to_step"])
        elif kind == 3:
            del self.snap[sid]
        else:
            # The snapshot has a session the history lacks: its history is dropped.
            v = snap["version"]
            del self.hist[sid]
            self.truth_add("STATE_MISMATCH", sid, v, "history of the session removed")
            return True
        self.truth_add("STATE_MISMATCH", sid, last["version"], f"snapshot edited ({kind})")
        return True

    def retry_loop(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> int | None:
            for k in range(len(recs) - 1):
                r = recs[k]
                if (r["status"] == "waiting_input" and r["path"] and r["path"][-1] == r["to_step"]
                        and not self.is_retry(r) and recs[k + 1]["from_step"] == r["to_step"]
                        and recs[k + 1]["version"] == r["version"] + 1):
                    return k
            return None
        got = self.pick(ok)
        if got is None:
            return False
        sid, k = got
        recs = self.hist[sid]
        r = recs[k]
        count = self.n + 1
        t0, t1 = r["ts"], recs[k + 1]["ts"]
        extra = []
        for j in range(1, count + 1):
            extra.append({**r, "version": r["version"] + j, "ts": t0 + (t1 - t0) * j // (count + 1), "event": "message",
                          "from_step": r["to_step"], "to_step": r["to_step"], "path": [r["to_step"]],
                          "status": "waiting_input", "message_id": self.mid(sid, "loop"),
                          "input": '{"text":"???","type":"text"}', "error": "invalid_input:loop", "actor": "runtime"})
        for later in recs[k + 1:]:
            later["version"] += count
        self.snap[sid]["version"] += count
        recs[k + 1:k + 1] = extra
        self.truth_add("RETRY_LOOP", sid, r["version"] + self.n + 1, f"{count} re-entries inserted")
        return True

    def after_terminal(self) -> bool:
        def ok(sid: str, recs: list[dict[str, Any]]) -> bool:
            return bool(recs) and recs[-1]["status"] in TERMINAL and recs[-1]["ts"] + 30_000 < self.exported_at
        got = self.pick(ok)
        if got is None:
            return False
        sid, _ = got
        recs = self.hist[sid]
        last = recs[-1]
        new = {**last, "version": last["version"] + 1, "ts": last["ts"] + 30_000, "event": "message",
               "from_step": last["to_step"], "path": [], "message_id": self.mid(sid, "late"),
               "input": '{"text":"hello?","type":"text"}', "error": None, "actor": "runtime"}
        recs.append(new)
        self.snap[sid]["version"] = new["version"]
        self.snap[sid]["updated_at"] = new["ts"]
        self.truth_add("AFTER_TERMINAL", sid, new["version"], "a message applied after the end")
        return True

    def stuck(self) -> bool:
        limit = self.cfg.stuck_after_s * 1000 + 60_000

        def ok(sid: str, recs: list[dict[str, Any]]) -> bool:
            return (len(recs) >= 2 and recs[-1]["event"] == "expire" and recs[-2]["status"] not in TERMINAL
                    and self.exported_at - recs[-2]["ts"] > limit)
        got = self.pick(ok)
        if got is None:
            return False
        sid, _ = got
        recs = self.hist[sid]
        recs.pop()
        last = recs[-1]
        self.snap[sid].update(version=last["version"], step=last["to_step"], status=last["status"], updated_at=last["ts"],
                              flow_version=last["flow_version"])
        self.truth_add("STUCK", sid, last["version"], "the expiry never fired")
        return True

    def run(self) -> None:
        steps = {
            "VERSION_GAP": self.version_gap, "VERSION_DUPLICATE": self.version_duplicate, "CHAIN_BREAK": self.chain_break,
            "ILLEGAL_TRANSITION": self.illegal_transition, "UNKNOWN_STEP": self.unknown_step,
            "DUPLICATE_MESSAGE": self.duplicate_message, "RETRY_LOOP": self.retry_loop,
            "AFTER_TERMINAL": self.after_terminal, "STUCK": self.stuck,
        }
        for code in CODES:
            for i in range(self.cfg.per_code):
                done = self.state_mismatch(i) if code == "STATE_MISMATCH" else steps[code]()
                if not done:
                    raise HistoryError(f"synthetic: no session left to inject {code} into; generate more sessions")


def generate(config: SyntheticConfig | None = None, *, flows: FlowSet | None = None, keep_states: bool = False,
             **overrides: Any) -> Synthetic:
    """Generate a synthetic export (see the module docs). ``overrides`` set fields of the config.

    ``keep_states`` keeps every (record, state) pair the engine produced, so the clean
    histories can be committed to a real store (:func:`load_into_store`); it needs
    ``per_code=0`` (injected anomalies are edits no store would accept).
    """
    cfg = config or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**cfg.__dict__, **overrides})
    if keep_states and cfg.per_code:
        raise HistoryError("keep_states needs per_code=0: injected anomalies are not commits a store accepts")
    fs = flows or example_flows()
    sessions, exported_at = _Generator(cfg, fs).generate()
    commits = None
    if keep_states:
        commits = {sid: tuple((dict(r), st.to_dict()) for r, st in zip(s.records, s.states, strict=True))
                   for sid, s in sessions.items()}
    hist = {sid: [dict(r) for r in s.records] for sid, s in sessions.items()}
    snap = {sid: _snapshot(s) for sid, s in sessions.items()}
    inflight = {sid for sid, s in sessions.items() if s.inflight}
    inj = _Injector(cfg, fs, hist, snap, exported_at, inflight, random.Random(cfg.seed + 1))
    if cfg.per_code:
        inj.run()
    rows = [r for sid in sorted(hist) for r in hist[sid]]
    history = table_to_frame(rows_to_table(rows, "history"), "history")
    snapshot = table_to_frame(rows_to_table([snap[sid] for sid in sorted(snap)], "sessions"), "sessions")
    assert list(history.columns) == list(HISTORY_COLUMNS) and list(snapshot.columns) == list(SESSION_COLUMNS)
    clean = frozenset(hist) - inj.used
    return Synthetic(history=history, sessions=snapshot, exported_at=pd.Timestamp(exported_at, unit="ms", tz="UTC"),
                     flows=fs, injected=tuple(sorted(inj.truth, key=lambda a: (a.code, a.session_id))), config=cfg,
                     clean_sessions=clean, commits=commits)


def load_into_store(store: Any, syn: Synthetic, *, batch: int = 1000,
                    progress: Callable[[int], None] | None = None) -> int:
    """Commit the synthetic sessions to a real :class:`flowkit.store.Store`, as the runtime
    would (expected version, state, record, previous state, message id), returns the commits.

    Commits are pipelined: round ``k`` sends the ``k``-th commit of up to ``batch`` sessions
    in one round trip (one session's commits stay in order; different sessions are
    independent), which loads 100k sessions in seconds instead of minutes.
    """
    from flowkit.store import ops

    if syn.commits is None:
        raise HistoryError("generate(..., keep_states=True) first: the store needs the states, not only the records")
    sids = sorted(syn.commits)
    longest = max((len(c) for c in syn.commits.values()), default=0)
    done = 0
    for k in range(longest):
        live = [sid for sid in sids if len(syn.commits[sid]) > k]
        for start in range(0, len(live), batch):
            gens, firsts = [], []
            for sid in live[start:start + batch]:
                record, state = syn.commits[sid][k]
                previous = syn.commits[sid][k - 1][1] if k else None
                g = ops.commit(store.config, sid, k, dict(state), dict(record), previous=previous,
                               message_id=record["message_id"])
                gens.append(g)
                firsts.append(next(g))
            replies = store.driver.execute([cmd for b in firsts for cmd in b])
            at = 0
            for g, b in zip(gens, firsts, strict=True):
                mine, at = replies[at:at + len(b)], at + len(b)
                try:
                    more = g.send(mine)
                    while True:  # a second batch (counter fix-ups): rare, one session at a time
                        more = g.send(store.driver.execute(more))
                except StopIteration as stop:
                    result = stop.value
                if not result.ok:
                    raise HistoryError(f"synthetic session could not be committed: {result}")
                done += 1
            if progress is not None:
                progress(done)
    return done

