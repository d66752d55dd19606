"""The clean part of a synthetic history: seeded simulated users talking to the real, pure
engine on the example flows, every record exactly what the runtime would commit (see
:mod:`flowkit.history.synthetic`)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowkit.engine import Command, ServiceResult, Start, State, Timeout, UserMessage, fail, step
from flowkit.engine.locate import locate
from flowkit.engine.state import Record
from flowkit.engine.transition import schedule
from flowkit.errors import EngineError
from flowkit.flow.model import HELD_STATUSES, AskStep, CallStep, Flow
from flowkit.history.flowset import FlowSet
from flowkit.sim.answers import invalid_answer, service_value, valid_answer

if TYPE_CHECKING:
    from flowkit.history.synthetic import SyntheticConfig

# The step a v3 session moves to when migrated to v4 (what `flowkit migrate` would be given).
PIZZA_V3_TO_V4 = {"upsell": "ask_qty", "ask_address": "ask_delivery"}


@dataclass
class SimSession:
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


class SessionGenerator:
    def __init__(self, cfg: SyntheticConfig, flows: FlowSet) -> None:
        self.cfg = cfg
        self.flows = flows
        self.roots = [f for f in flows.latest().values() if f.triggers]
        self.roots.sort(key=lambda f: f.name)
        self.master = random.Random(cfg.seed)

    # -- one session

    def flow_of(self, state: State) -> Flow:
        return self.flows.get(state.flow, state.flow_version)

    def apply(self, s: SimSession, flow: Flow, event: Any, now: int) -> bool:
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

    def expire(self, s: SimSession, now: int, limit_ms: int | None) -> int:
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

    def run(self, s: SimSession, rng: random.Random, t0: int, limit_ms: int | None) -> None:  # noqa: C901 -- one simulated user's loop: each branch draws from the seeded RNG in a fixed order, which the generated ground truth depends on
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
                v4 = self.flows.get("order_pizza", "4")
                to_step = PIZZA_V3_TO_V4.get(st.step, st.step)
                self.apply(s, v4, Command(name="migrate", args={"step": to_step, "flow_version": "4"}, actor="admin"), now)
                migrated = True
                continue
            if rng.random() < cfg.command_rate:
                word = rng.choice(["back", "help", "cancel", "restart", "back"])
                self.apply(s, flow, UserMessage(text=word, message_id=s.mid()), now)
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
            self.apply(s, flow, UserMessage(text=msg.text, type=msg.type, reply_id=msg.reply_id, location=msg.location,
                                        media=msg.media, message_id=s.mid()), now)
            if s.state is not None and s.state.step != before:
                invalid_in_row = 0

    def service(self, s: SimSession, rng: random.Random, now: int, limit_ms: int | None) -> int:
        cfg = self.cfg
        st = s.state
        assert st is not None and st.pending is not None
        flow = self.flow_of(st)
        call_id = st.pending["call_id"]
        if rng.random() < cfg.busy_rate:
            at = now + int(rng.uniform(0.2, 1.0) * 1000)
            if limit_ms is None or at <= limit_ms:
                self.apply(s, flow, UserMessage(text=rng.choice(["?", "hello?", "ok"]), message_id=s.mid()), at)
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

    def generate(self) -> tuple[dict[str, SimSession], int]:
        cfg = self.cfg
        n_inflight = int(round(cfg.sessions * cfg.inflight))
        sessions: dict[str, SimSession] = {}
        rngs: list[random.Random] = [random.Random(self.master.randrange(2**63)) for _ in range(cfg.sessions)]
        window = int(cfg.window_s * 1000)
        for i in range(cfg.sessions - n_inflight):
            s = SimSession(f"syn{cfg.seed}-{i:06d}")
            self.run(s, rngs[i], cfg.start_ms + rngs[i].randrange(max(window, 1)), None)
            sessions[s.sid] = s
        last = max((r["ts"] for s in sessions.values() for r in s.records), default=cfg.start_ms)
        exported_at = last + 60_000
        # Sessions still running at export time started within the last 20 minutes, so
        # none of them is idle beyond the STUCK threshold.
        recent = int(min(20 * 60, cfg.stuck_after_s * 0.6) * 1000)
        for i in range(cfg.sessions - n_inflight, cfg.sessions):
            s = SimSession(f"syn{cfg.seed}-{i:06d}", inflight=True)
            self.run(s, rngs[i], exported_at - rngs[i].randrange(60_000, max(recent, 60_001)), exported_at)
            if s.records:
                sessions[s.sid] = s
        return sessions, exported_at


def _next_due(state: State, flow: Flow) -> int | None:
    return schedule(state.pending, flow, state.updated_at).at or None  # (the engine's rule)


def _row(sid: str, state: State, record: Record) -> dict[str, Any]:
    d = record.to_dict()
    d["session_id"] = sid
    d["flow"] = state.flow
    d["flow_version"] = state.flow_version
    return d


def session_snapshot(s: SimSession) -> dict[str, Any]:
    st = s.state
    assert st is not None
    return {"session_id": s.sid, "flow": st.flow, "flow_version": st.flow_version, "version": st.version,
            "step": st.step, "status": st.status, "started_at": st.started_at, "updated_at": st.updated_at}
