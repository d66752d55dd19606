"""Anomalies injected into clean synthetic sessions: each edit designed to cause exactly one
finding of one code, with the ground truth it should produce (see
:mod:`flowkit.history.synthetic`)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowkit.errors import HistoryError
from flowkit.history.anomalies import (
    CODES,
    Anomaly,
)
from flowkit.history.columns import (
    TERMINAL,
)
from flowkit.history.flowset import FlowSet

if TYPE_CHECKING:
    from flowkit.history.synthetic import SyntheticConfig


class Injector:
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
        return (r["event"] == "message" and not Injector.is_retry(r) and r["actor"] not in ("admin", "recovery")
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
