"""The history checker (Jepsen-style): prove from what was stored that nothing was lost,
doubled or made up.

Inputs: every session's history and state (from Redis, or from an export), the flows,
and optionally the simulator's log of what it sent and the replies the channel got.
It checks, per session:

- ``LOST_MESSAGE``: an acknowledged message is not in the history;
- ``DOUBLE_APPLY``: one message id was applied more than once;
- ``VERSION_GAP`` / ``VERSION_DUPLICATE``: versions are not exactly 1..N;
- ``STATE_MISMATCH``: the stored state is not what the last record says (version, step, status);
- ``REPLAY_MISMATCH``: replaying the recorded events through the engine gives another
  step, status or path than recorded (corruption, or a non-deterministic engine);
- ``ILLEGAL_STATE``: the stored state breaks its flow's slot schema or names an unknown step;
- ``REPLY_MISMATCH``: the user got a different number of replies than the applied commits produced.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkit.engine import Reply, State, check_slots
from flowkit.engine.locate import locate
from flowkit.engine.replay import replay
from flowkit.errors import EngineError, FlowkitError, StateValidationError
from flowkit.runtime.registry import FlowRegistry

CODES = ("LOST_MESSAGE", "DOUBLE_APPLY", "VERSION_GAP", "VERSION_DUPLICATE", "STATE_MISMATCH",
         "REPLAY_MISMATCH", "ILLEGAL_STATE", "REPLY_MISMATCH")


@dataclass(frozen=True)
class Violation:
    code: str
    session_id: str
    version: int | None
    detail: str

    def __str__(self) -> str:
        v = f" v{self.version}" if self.version is not None else ""
        return f"{self.code} {self.session_id}{v}: {self.detail}"


@dataclass
class CheckReport:
    sessions: int = 0
    records: int = 0
    messages_checked: int = 0
    replayed: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        return dict(Counter(v.code for v in self.violations))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "sessions": self.sessions, "records": self.records,
                "messages_checked": self.messages_checked, "replayed": self.replayed, "counts": self.counts(),
                "violations": [asdict(v) for v in self.violations]}


def load_sent_log(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_session(session_id: str, records: Sequence[Mapping[str, Any]], state: Mapping[str, Any] | None,
                  registry: FlowRegistry, *, acked: Iterable[str] = (), replies: int | None = None,
                  state_at: Callable[[int], Mapping[str, Any] | None] | None = None,
                  report: CheckReport | None = None) -> list[Violation]:
    """Check one session. ``acked``: message ids acknowledged to the sender; ``replies``: how many replies it got."""
    out: list[Violation] = []
    v = lambda code, version, detail: out.append(Violation(code, session_id, version, detail))  # noqa: E731
    versions = [int(r["version"]) for r in records]
    counts = Counter(versions)
    for ver, n in sorted(counts.items()):
        if n > 1:
            v("VERSION_DUPLICATE", ver, f"{n} records carry version {ver}")
    expected = 1
    for ver in sorted(counts):
        if ver != expected:
            v("VERSION_GAP", expected, f"versions jump from {expected - 1} to {ver}")
        expected = ver + 1
    applied = Counter(r["message_id"] for r in records if r.get("message_id"))
    for mid, n in applied.items():
        if n > 1:
            v("DOUBLE_APPLY", None, f"message {mid} was applied {n} times")
    for mid in set(acked):
        if mid not in applied:
            v("LOST_MESSAGE", None, f"message {mid} was acknowledged but is not in the history")
    last = max(records, key=lambda r: int(r["version"])) if records else None
    if state is None and last is not None:
        v("STATE_MISMATCH", int(last["version"]), "history exists but the session has no state")
    if state is not None:
        if last is None:
            v("STATE_MISMATCH", int(state["version"]), "state exists without any history")
        else:
            for key, rkey in (("version", "version"), ("step", "to_step"), ("status", "status")):
                if state.get(key) != last.get(rkey):
                    v("STATE_MISMATCH", int(last["version"]), f"state {key}={state.get(key)!r} but last record {rkey}={last.get(rkey)!r}")
        out.extend(_legal(session_id, state, registry))
    # Replay: the engine must reproduce every replayable record.
    produced = 0
    ordered = sorted(records, key=lambda r: int(r["version"]))
    if ordered and not any(x.code in ("VERSION_DUPLICATE", "VERSION_GAP") for x in out):
        for item in replay(ordered, registry.get, registry, session_id=session_id, state_at=state_at):
            rec = item.record
            if item.transition is None:
                continue
            if report is not None:
                report.replayed += 1
            t = item.transition
            got = t.record
            if got is None:
                v("REPLAY_MISMATCH", int(rec["version"]), "the engine would not change the session for this recorded event")
                continue
            produced += sum(1 for e in t.effects if isinstance(e, Reply))
            for key in ("to_step", "status", "error"):
                if getattr(got, key) != rec.get(key):
                    v("REPLAY_MISMATCH", int(rec["version"]), f"{key}: recorded {rec.get(key)!r}, replay gives {getattr(got, key)!r}")
            if list(got.path) != list(rec.get("path") or []):
                v("REPLAY_MISMATCH", int(rec["version"]), f"path: recorded {list(rec.get('path') or [])}, replay gives {list(got.path)}")
        if replies is not None and not any(r.get("event") in ("rollback", "recovery", "migrate") for r in ordered):
            if replies != produced:
                v("REPLY_MISMATCH", None, f"the user got {replies} replies, the applied commits produced {produced}")
    return out


def _legal(session_id: str, state: Mapping[str, Any], registry: FlowRegistry) -> list[Violation]:
    try:
        s = State.from_dict(state)
        flow = registry.get(s.flow, s.flow_version)
        if s.step is not None:
            owner, _ = locate(flow, s.step, registry, [f["flow_version"] for f in s.stack])
            check_slots(s.slots, owner.slots, where=f"step {s.step!r}")
    except (StateValidationError, EngineError, FlowkitError, KeyError, TypeError, ValueError) as exc:
        return [Violation("ILLEGAL_STATE", session_id, state.get("version"), str(exc))]
    return []


def check_store(store: Any, registry: FlowRegistry, *, sent: Iterable[Mapping[str, Any]] = (),
                replies: Mapping[str, int] | None = None, progress: Callable[[int], None] | None = None) -> CheckReport:
    """Check every session in ``store`` (a :class:`flowkit.store.Store`)."""
    acked: dict[str, set[str]] = {}
    for s in sent:
        if s.get("acked"):
            acked.setdefault(s["session_id"], set()).add(s["message_id"])
    report = CheckReport()
    seen: set[str] = set()
    for sid in store.iter_session_ids():
        seen.add(sid)
        records = store.history(sid)
        state = store.load_raw(sid)
        report.sessions += 1
        report.records += len(records)
        report.messages_checked += len(acked.get(sid, ()))
        report.violations += check_session(
            sid, records, state, registry, acked=acked.get(sid, ()),
            replies=(replies or {}).get(sid, 0) if replies is not None else None,
            state_at=lambda ver, _sid=sid: store.state_at(_sid, ver), report=report,
        )
        if progress:
            progress(report.sessions)
    for sid, mids in acked.items():
        if sid not in seen:
            report.violations += [Violation("LOST_MESSAGE", sid, None, f"message {m} was acknowledged but the session does not exist") for m in sorted(mids)]
    return report
