"""The history checker (Jepsen-style): prove from what was stored that nothing was lost,
doubled or made up.

Inputs: every session's history and state (from Redis, or from a history export), the
flows, and optionally the simulator's log of what it sent and how many replies each user
got (``flowkit simulate --log``). It checks, per session:

- ``LOST_MESSAGE``: an acknowledged message is not in the history;
- ``DOUBLE_APPLY``: one message id was applied more than once;
- ``VERSION_GAP`` / ``VERSION_DUPLICATE``: versions are not exactly 1..N (a lost or doubled update);
- ``STATE_MISMATCH``: the stored state is not what the last record says (version, step, status);
- ``REPLAY_MISMATCH``: replaying the recorded events through the engine gives another
  step, status, error or path than recorded (corruption, or a non-deterministic engine);
- ``ILLEGAL_STATE``: the stored state fails its checksum, breaks its flow's slot schema,
  names a step its flow does not have, or waits at a step that cannot wait for that;
- ``REPLY_MISMATCH``: the user got a different number of replies than the applied commits
  produced (checked for sessions whose every record replays: a redacted input's replies
  are unknown).

Every violation names the session and, where one is to blame, the version.

A message counts as acknowledged when a delivery of it was answered (``acked``) with an
outcome that promises it is stored: ``applied`` or ``duplicate``. An acknowledged message
that was *not routed* (no flow matched it, so no session changed) is not in any history by
design and is not required. Over HTTP the webhook only says how many messages of a
delivery it applied; a delivery answered with none applied (``not_applied``) could be a
duplicate or unrouted, so it is not required either.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkit.batching import batched
from flowkit.engine import Reply, State, check_slots
from flowkit.engine.locate import locate
from flowkit.engine.replay import replay
from flowkit.engine.state import Record, check_state_shape
from flowkit.errors import CheckError, EngineError, FlowkitError, StateValidationError, UnknownFlowError
from flowkit.findings import Finding
from flowkit.flow.model import STATUSES, TERMINAL_STATUSES, AskStep, CallStep
from flowkit.runtime.registry import FlowRegistry
from flowkit.version_rules import duplicate_text, version_gap

CODES = ("LOST_MESSAGE", "DOUBLE_APPLY", "VERSION_GAP", "VERSION_DUPLICATE", "STATE_MISMATCH",
         "REPLAY_MISMATCH", "ILLEGAL_STATE", "REPLY_MISMATCH")
STORED_OUTCOMES = frozenset({"applied", "duplicate"})  # a delivery answered so is in the history


Violation = Finding  # an invariant the stored history breaks (flowkit/findings.py)


@dataclass
class CheckReport:
    sessions: int = 0
    records: int = 0
    messages_checked: int = 0
    replies_checked: int = 0
    replayed: int = 0
    replay_stopped: int = 0  # sessions whose replay stopped early (an export cannot rebuild a redacted input)
    source: str = ""
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        return dict(Counter(v.code for v in self.violations))

    def by_code(self, code: str) -> list[Violation]:
        return [v for v in self.violations if v.code == code]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "sessions": self.sessions, "records": self.records,
                "messages_checked": self.messages_checked, "replies_checked": self.replies_checked,
                "replayed": self.replayed, "replay_stopped": self.replay_stopped, "counts": self.counts(),
                "violations": [asdict(v) for v in self.violations]}


# ---------------------------------------------------------------- the sent log


@dataclass
class SentLog:
    """What the sender saw: message ids it must find stored, and exact reply counts."""

    acked: dict[str, set[str]] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)  # only sessions whose count is exact

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> SentLog:
        """From :meth:`flowkit.sim.SimResult.log_records` (or lines of ``--log``); lines
        without ``kind`` are deliveries (the older log form)."""
        log = cls()
        unrouted: set[tuple[str, str]] = set()
        for r in records:
            kind = r.get("kind", "in")
            if kind == "replies":
                if r.get("exact", True):
                    log.replies[str(r["session_id"])] = int(r["count"])
            elif kind == "in" and r.get("acked") and r.get("outcome", "applied") in STORED_OUTCOMES:
                log.acked.setdefault(str(r["session_id"]), set()).add(str(r["message_id"]))
            elif kind == "in" and r.get("outcome") == "unrouted":
                unrouted.add((str(r["session_id"]), str(r["message_id"])))
        # A redelivery of an unrouted message is answered "duplicate" (the runtime remembers
        # the id, runtime/unrouted.py), yet no history holds it: not required either.
        for sid, mid in unrouted:
            log.acked.get(sid, set()).discard(mid)
        return log


def load_sent_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of a sent log (``flowkit simulate --log``)."""
    p = Path(path)
    out = []
    try:
        with p.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    raise CheckError(f"{p}:{n}: not a JSON line ({exc})") from None
                if not isinstance(rec, dict) or "session_id" not in rec:
                    raise CheckError(f"{p}:{n}: a sent-log line must be an object with a session_id")
                out.append(rec)
    except OSError as exc:
        raise CheckError(f"cannot read the sent log {p}: {exc}") from None
    return out


# ---------------------------------------------------------------- one session


def check_session(session_id: str, records: Sequence[Mapping[str, Any]], state: Mapping[str, Any] | None,
                  registry: FlowRegistry, *, acked: Iterable[str] = (), replies: int | None = None,
                  state_at: Callable[[int], Mapping[str, Any] | None] | None = None,
                  report: CheckReport | None = None, partial: bool = False,
                  integrity: str | None = None) -> list[Violation]:
    """Check one session.

    ``acked``: message ids the sender was told are stored; ``replies``: how many replies it
    got (None: unknown). ``state_at(version)`` gives stored states for records that cannot
    be replayed from the record alone (admin commands, redacted inputs); without it the
    replay stops there. ``partial``: the history may legitimately start after version 1
    (trimmed in Redis, or exported ``--since``). ``integrity``: why the stored state failed
    its checksum or schema, if it did (``state`` is then the raw, unverified state or None).
    """
    out: list[Violation] = []

    def v(code: str, version: int | None, detail: str) -> None:
        out.append(Violation(code, session_id, version, detail))

    ordered = sorted(records, key=lambda r: int(r["version"]))
    versions = [int(r["version"]) for r in ordered]
    _version_violations(versions, partial, v)
    _message_violations(ordered, acked, v)
    last = ordered[-1] if ordered else None
    if integrity is not None:
        v("ILLEGAL_STATE", int(state["version"]) if state and isinstance(state.get("version"), int) else None,
          f"the stored state fails its integrity check: {integrity}")
    if state is None and last is not None and integrity is None:
        v("STATE_MISMATCH", int(last["version"]), "history exists but the session has no state")
    if state is not None:
        _state_violations(state, last, v)
        if integrity is None:
            out.extend(_legal(session_id, state, registry))
    if ordered and not any(x.code in ("VERSION_DUPLICATE", "VERSION_GAP") for x in out) and (versions[0] == 1):
        _check_replay(session_id, ordered, registry, state_at, replies, report, v)
    return out


_Report = Callable[[str, int | None, str], None]  # (code, version, detail) of one violation


def _version_violations(versions: list[int], partial: bool, v: _Report) -> None:
    """VERSION_DUPLICATE and VERSION_GAP over the session's sorted versions."""
    counts = Counter(versions)
    for ver, n in sorted(counts.items()):
        if n > 1:
            v("VERSION_DUPLICATE", ver, duplicate_text(ver, n))
    prev: int | None = None
    for ver in sorted(counts):
        gap = version_gap(prev, ver, partial=partial)
        if gap is not None:
            v("VERSION_GAP", *gap)
        prev = ver


def _message_violations(ordered: list[Mapping[str, Any]], acked: Iterable[str], v: _Report) -> None:
    """DOUBLE_APPLY (a message id applied twice) and LOST_MESSAGE (acknowledged, never stored)."""
    first_seen: dict[str, int] = {}
    for r in ordered:
        mid = r.get("message_id")
        if not mid:
            continue
        if mid in first_seen:
            v("DOUBLE_APPLY", int(r["version"]), f"message {mid} was applied again (first at v{first_seen[mid]})")
        else:
            first_seen[mid] = int(r["version"])
    for mid in sorted(set(acked)):
        if mid not in first_seen:
            v("LOST_MESSAGE", None, f"message {mid} was acknowledged as stored but is not in the history")


def _state_violations(state: Mapping[str, Any], last: Mapping[str, Any] | None, v: _Report) -> None:
    """STATE_MISMATCH: the stored state against the last history record."""
    if last is None:
        v("STATE_MISMATCH", _int(state.get("version")), "state exists without any history")
        return
    for key, rkey in (("version", "version"), ("step", "to_step"), ("status", "status")):
        if state.get(key) != last.get(rkey):
            v("STATE_MISMATCH", int(last["version"]),
              f"state {key}={state.get(key)!r} but the last record has {rkey}={last.get(rkey)!r}")


def _check_replay(session_id: str, ordered: list[Mapping[str, Any]], registry: FlowRegistry,
                  state_at: Callable[[int], Mapping[str, Any] | None] | None, replies: int | None,
                  report: CheckReport | None, v: Callable[[str, int | None, str], None]) -> None:
    """The engine must reproduce every replayable record, and the replies it produces must
    be the replies the user got."""
    produced = 0
    complete = True
    for item in replay(ordered, registry.get, registry, session_id=session_id, state_at=state_at):
        rec = item.record
        ver = int(rec["version"])
        if item.transition is None:
            if item.error == "not replayable":
                complete = False  # its replies are unknown (a redacted input, an admin state)
                if state_at is None:  # nothing to continue from: stop rather than guess
                    if report is not None:
                        report.replay_stopped += 1
                    break
                continue
            if not str(rec.get("error") or "").startswith("engine_error"):
                # The runtime records an engine error as a failed session; any other refusal
                # means the record cannot have come from this flow.
                v("REPLAY_MISMATCH", ver, f"the engine refuses the recorded {rec.get('event')} event: {item.error}")
            complete = False
            break
        if report is not None:
            report.replayed += 1
        t = item.transition
        got = t.record
        if got is None:
            v("REPLAY_MISMATCH", ver, f"the engine would not change the session for the recorded {rec.get('event')} event")
            continue
        produced += sum(1 for e in t.effects if isinstance(e, Reply))
        _compare_replayed(rec, got, ver, v)
    if replies is not None and complete:
        _check_replies(replies, produced, report, v)


def _compare_replayed(rec: Mapping[str, Any], got: Record, ver: int, v: _Report) -> None:
    """REPLAY_MISMATCH for each field where the replayed record differs from the recorded one."""
    for key in ("to_step", "status", "error"):
        if getattr(got, key) != rec.get(key):
            v("REPLAY_MISMATCH", ver, f"{key}: recorded {rec.get(key)!r}, replay gives {getattr(got, key)!r}")
    if list(got.path) != list(rec.get("path") or []):
        v("REPLAY_MISMATCH", ver, f"path: recorded {list(rec.get('path') or [])}, replay gives {list(got.path)}")


def _check_replies(replies: int, produced: int, report: CheckReport | None, v: _Report) -> None:
    """REPLY_MISMATCH: the replies the user got against those the replayed commits produce."""
    if report is not None:
        report.replies_checked += 1
    if replies != produced:
        v("REPLY_MISMATCH", None, f"the user got {replies} replies, the applied commits produced {produced}")


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, int) else None


def _legal(session_id: str, state: Mapping[str, Any], registry: FlowRegistry) -> list[Violation]:
    """Is the stored state one the flow allows? A snapshot row (an export's sessions table:
    no slots) gets the step and status checks only."""
    version = _int(state.get("version"))

    def bad(detail: str) -> list[Violation]:
        return [Violation("ILLEGAL_STATE", session_id, version, detail)]

    status = state.get("status")
    if status not in STATUSES:
        return bad(f"unknown status {status!r}")
    full = "slots" in state
    try:
        s = State.from_dict(state) if full else None
        if s is not None:
            check_state_shape(s)
        flow = registry.get(str(state.get("flow")), state.get("flow_version"))
        step = state.get("step")
        if step is None:
            return [] if status in TERMINAL_STATUSES else bad(f"a {status} session has no step")
        stack = list(s.stack) if s is not None else []
        owner, st = locate(flow, str(step), registry, [f["flow_version"] for f in stack] if stack else None)
        if status == "waiting_input" and not isinstance(st, AskStep):
            return bad(f"waits for input at {step!r}, a {st.kind} step")
        if status == "waiting_service" and not isinstance(st, CallStep):
            return bad(f"waits for a service at {step!r}, a {st.kind} step")
        if s is None:
            return []
        # Inside a sub-flow the slots are the sub-flow's; a session that ended inside one
        # is back on the root flow's slots with an empty stack (the engine's `finish`).
        check_slots(s.slots, owner.slots if stack else flow.slots, where=f"step {step!r}")
        for i, frame in enumerate(stack):
            frame_owner = flow if i == 0 else registry.get(stack[i - 1]["flow"], stack[i - 1]["flow_version"])
            check_slots(frame["slots"], frame_owner.slots, where=f"caller frame {frame.get('at')!r}")
    except (StateValidationError, EngineError, UnknownFlowError, KeyError, TypeError, ValueError) as exc:
        return bad(str(exc))
    return []


# ---------------------------------------------------------------- whole stores and exports


def _sent(sent: Iterable[Mapping[str, Any]] | SentLog, replies: Mapping[str, int] | None) -> SentLog:
    log = sent if isinstance(sent, SentLog) else SentLog.of(sent)
    if replies is not None:
        log = SentLog(log.acked, {**log.replies, **replies})
    return log


def check_store(store: Any, registry: FlowRegistry, *, sent: Iterable[Mapping[str, Any]] | SentLog = (),
                replies: Mapping[str, int] | None = None, progress: Callable[[int], None] | None = None,
                batch: int = 200) -> CheckReport:
    """Check every session in ``store`` (a :class:`flowkit.store.Store`).

    Each session's state and history are read together, atomically (one commit is either
    wholly seen or not at all, so a live store gives no false alarms), ``batch`` sessions
    per round trip. ``sent``: the sent log (records or a :class:`SentLog`); ``replies``:
    reply counts per session, on top of the log's.
    """
    from flowkit.store.atomic_read import read_sessions_atomic

    log = _sent(sent, replies)
    partial = getattr(getattr(store, "config", None), "history_max_len", None) is not None
    report = CheckReport(source="redis")
    seen: set[str] = set()
    for sids in batched(store.iter_session_ids(), batch):
        for sid, state, why, records in read_sessions_atomic(store, sids):
            if sid in seen or (state is None and why is None and not records):
                continue  # listed twice by SCAN, or deleted since
            seen.add(sid)
            if why is not None:
                try:
                    state = store.load_raw(sid)
                except FlowkitError:
                    state = None
            _check_one(report, log, registry, sid, records, state, partial=partial, integrity=why,
                       state_at=functools.partial(store.state_at, sid))
            if progress:
                progress(report.sessions)
    _missing_sessions(report, log, seen)
    return report


def check_export(path: str | Path, registry: FlowRegistry, *, sent: Iterable[Mapping[str, Any]] | SentLog = (),
                 replies: Mapping[str, int] | None = None,
                 progress: Callable[[int], None] | None = None) -> CheckReport:
    """Check a history export folder (or a single history file) written by ``flowkit export``.

    An export holds no full states, so ``ILLEGAL_STATE`` checks the snapshot's step and
    status only (and names the sessions the export found corrupt), and a replay stops at
    the first record it cannot rebuild (a redacted input).
    """
    from flowkit.history import read_export

    try:
        ex = read_export(path)
    except (FlowkitError, OSError) as exc:
        raise CheckError(f"cannot read the export {path}: {exc}") from None
    log = _sent(sent, replies)
    meta = ex.meta or {}
    partial = bool(meta.get("since") or meta.get("history_trimmed"))
    corrupt = set(meta.get("corrupt_sessions") or ())
    states: dict[str, dict[str, Any]] = {}
    if ex.sessions is not None:
        for row in _rows(ex.sessions):
            states[str(row["session_id"])] = row
    report = CheckReport(source=str(path))
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(ex.history):
        grouped.setdefault(str(row["session_id"]), []).append(row)
    for sid in sorted(set(grouped) | set(states)):
        _check_one(report, log, registry, sid, grouped.get(sid, []), states.get(sid), partial=partial,
                   integrity="left out of the export's snapshot as corrupt" if sid in corrupt else None,
                   state_at=None)
        if progress:
            progress(report.sessions)
    _missing_sessions(report, log, set(grouped) | set(states))
    return report


def _check_one(report: CheckReport, log: SentLog, registry: FlowRegistry, sid: str, records: list[dict[str, Any]],
               state: Mapping[str, Any] | None, *, partial: bool, integrity: str | None,
               state_at: Callable[[int], Mapping[str, Any] | None] | None) -> None:
    acked = log.acked.get(sid, set())
    report.sessions += 1
    report.records += len(records)
    report.messages_checked += len(acked)
    report.violations += check_session(sid, records, state, registry, acked=acked, replies=log.replies.get(sid),
                                       state_at=state_at, report=report, partial=partial, integrity=integrity)


def _missing_sessions(report: CheckReport, log: SentLog, seen: set[str]) -> None:
    for sid in sorted(set(log.acked) - seen):
        mids = log.acked[sid]
        report.messages_checked += len(mids)
        report.violations += [Violation("LOST_MESSAGE", sid, None, f"message {m} was acknowledged as stored but the "
                                        "session does not exist") for m in sorted(mids)]


def _rows(df: Any) -> Iterator[dict[str, Any]]:
    """DataFrame rows as store-like records: times in epoch ms, paths as lists, no NaN."""
    cols = list(df.columns)
    for values in df.itertuples(index=False, name=None):
        row = {}
        for c, x in zip(cols, values, strict=True):
            if c in ("ts", "started_at", "updated_at"):
                x = None if x is None or x != x else int(x.value // 1_000_000)  # pandas Timestamp -> ms
            elif c == "path":
                x = [] if x is None or (isinstance(x, float) and math.isnan(x)) else [str(p) for p in x]
            elif c == "version":
                x = int(x)
            elif isinstance(x, float) and math.isnan(x):
                x = None
            row[c] = x
        yield row


def check(source: Any, registry: FlowRegistry, **kwargs: Any) -> CheckReport:
    """:func:`check_store` for a store, :func:`check_export` for a path."""
    if isinstance(source, (str, Path)):
        return check_export(source, registry, **kwargs)
    return check_store(source, registry, **kwargs)


__all__ = ["CODES", "CheckError", "CheckReport", "SentLog", "Violation", "check", "check_export", "check_session",
           "check_store", "load_sent_log"]
