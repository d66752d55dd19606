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

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowkit.errors import HistoryError
from flowkit.flow.loader import flow_from_dict
from flowkit.flow.model import Flow
from flowkit.history.anomalies import (
    CODES,
    DEFAULT_RETRY_THRESHOLD,
    DEFAULT_STUCK_AFTER,
    AnalysisReport,
    Anomaly,
)
from flowkit.history.anomaly_injection import Injector
from flowkit.history.columns import (
    HISTORY_COLUMNS,
    SESSION_COLUMNS,
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
from flowkit.history.synthetic_sessions import PIZZA_V3_TO_V4, SessionGenerator, session_snapshot

# The repository's examples/flows, shipped inside the package (a symlink in the source tree,
# copied into the wheel) so that generate() works from an installed flowkit too.
EXAMPLE_FLOWS = Path(__file__).resolve().parent / "example_flows"
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
            w = TableWriter(out, kind, fmt)  # type: ignore[arg-type]  # (fmt was checked against FORMATS)
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
    sessions, exported_at = SessionGenerator(cfg, fs).generate()
    commits = None
    if keep_states:
        commits = {sid: tuple((dict(r), st.to_dict()) for r, st in zip(s.records, s.states, strict=True))
                   for sid, s in sessions.items()}
    hist = {sid: [dict(r) for r in s.records] for sid, s in sessions.items()}
    snap = {sid: session_snapshot(s) for sid, s in sessions.items()}
    inflight = {sid for sid, s in sessions.items() if s.inflight}
    inj = Injector(cfg, fs, hist, snap, exported_at, inflight, random.Random(cfg.seed + 1))
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


__all__ = ["EPOCH_MS", "EXAMPLE_FLOWS", "PIZZA_V3_TO_V4", "Synthetic", "SyntheticConfig", "example_flows", "generate",
           "load_into_store", "pizza_v4", "score"]
