"""Recorded transitions of the engine as it was before the one-path rewrite (issue #21).

Until then the engine had two routes for an answer (a fast path and a general interpreter)
and tests compared them. Now there is one route, so the comparison is with a recording: the
cases of the old comparison tests (every text and tap at every question of every example
flow, whole seeded sessions) plus commands, timeouts and other content at each question,
run through the engine of commit 40efd48 and stored as digests in
tests/data/engine_golden.json. The flows and messages themselves are stored with them, so a
later change to the example flows or to the simulator's answers cannot move the goalposts.

``python -m tests.engine.golden`` rewrites the file: only do that for an intended change of
behaviour, and say so in the commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from flowkit.engine import Command, Event, Start, State, Timeout, Transition, UserMessage, step
from flowkit.errors import EngineError, FlowkitError
from flowkit.flow import AskStep, Flow, parse_flow

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "engine_golden.json"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
T0 = 1_790_000_000_000

TEXTS = ["Ana", " Ana ", "ana", "A", "Ana Maria Lima Souza", "19", "35", "17", "61", "0", "120", "121", "-5", "+5", "05",
         "1,000", "٣", "²", "3.0", "12.5", "0.25", "1e3", "twenty", "yes", "no", "YES", "y", "ok", "👍", "nope", "red",
         "Red", "RED", " red ", "green", "blue", "blue ", "Blue ", "help", "Help", "back", "cancel", "stop", "restart",
         "2", "2)", "caf", "café", "cafe\u0301", "small", "large", "medium", "dental", "billing", "2026-12-01",
         "tomorrow", "31/02/2026", "ana@example.com", "+55 11 91234-5678", "12 Main Street", "", "   ", "x" * 300,
         "x" * 4096, "x" * 4097, "1" + " " * 4000 + "1", "$", "€ ", "nan", "-inf", "1e309", "\ud800", "1\udfff"]
REPLY_IDS = ["yes", "no", "green", "Red", "help", "large", "small", "dental", "billing", "09:00", "zzz", ""]
STICKER = {"id": "st1", "mime_type": "image/webp", "kind": "sticker"}


def digest(t: Transition | BaseException) -> str:
    """A short fingerprint of everything a transition says (or of the error it raised)."""
    if isinstance(t, BaseException):
        body: Any = [type(t).__name__, str(t)]
    else:
        body = [t.state.to_dict(), [e.to_dict() for e in t.effects], t.record.to_dict() if t.record else None]
    text = json.dumps(body, sort_keys=True, ensure_ascii=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(root: Flow, state: State | None, event: Event, now: int, flows: Mapping[str, Flow],
        session_id: str | None = None) -> Transition | FlowkitError:
    try:
        return step(root, state, event, now, flows=flows, session_id=session_id)
    except FlowkitError as exc:
        return exc


def event_to_json(e: Event) -> dict[str, Any]:
    d = {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}  # type: ignore[arg-type]
    if isinstance(d.get("text"), str) and len(d["text"]) > 64 and d["text"] in TEXTS:  # kept once, in TEXTS
        d["text"] = {"long": TEXTS.index(d["text"])}
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items()}


def event_from_json(d: Mapping[str, Any]) -> Event:
    kind, fields = d["kind"], {k: v for k, v in d.items() if k != "kind"}
    if isinstance(fields.get("text"), dict):
        fields["text"] = TEXTS[fields["text"]["long"]]
    cls = {"message": UserMessage, "command": Command, "timeout": Timeout}[kind]
    return cls(**fields)  # type: ignore[no-any-return]


def at(root: Flow, name: str, flows: Mapping[str, Flow], now: int = T0) -> State:
    """A validated session of ``root`` waiting at its ask step ``name``."""
    t = step(root, None, Start(flow=root.name, profile={"name": "Ana"}), now, flows=flows, session_id="f1")
    if t.state.step != name:
        t = step(root, t.state, Command(name="migrate", args={"step": name}), now + 1, flows=flows)
    assert t.state.step == name and t.state.status == "waiting_input"
    return t.state


def reachable_asks(root: Flow, flows: Mapping[str, Flow]) -> list[str]:
    out = []
    for n, s in sorted(root.steps.items()):
        if isinstance(s, AskStep):
            try:
                at(root, n, flows)
            except EngineError:
                continue
            out.append(n)
    return out


def question_events(root: Flow, ask: str, state: State) -> Iterator[tuple[Event, int]]:
    """What the old comparison tests sent to a question, and the other event kinds."""
    from flowkit.sim.answers import valid_answer

    st = root.steps[ask]
    assert isinstance(st, AskStep)
    texts = TEXTS + [valid_answer(st, root.slots.get(st.save or ""), random.Random(i), dt.date(2026, 9, 21)).text or ""
                     for i in range(20)]
    for i, text in enumerate(texts):
        yield UserMessage(text=text, message_id=f"w{i}", profile={"name": "Ana"} if i % 2 else None), T0 + 1000 + i
    for i, reply_id in enumerate(REPLY_IDS):
        yield (UserMessage(type="list_reply" if i % 3 else "button_reply", reply_id=reply_id,
                       text=None if i % 4 == 0 else reply_id.title(), message_id=f"r{i}"), T0 + 2000 + i)
    yield UserMessage(type="media", media=STICKER, message_id="st"), T0 + 3000
    yield UserMessage(type="location", location={"latitude": 1.5, "longitude": 2.5}, message_id="loc"), T0 + 3001
    for name in ("help", "back", "cancel", "restart", "reset", "fail"):
        yield Command(name=name, args={"reason": "x"} if name == "fail" else {}), T0 + 4000
    deadline = (state.pending or {}).get("deadline")
    yield Timeout(), (deadline if deadline is not None else T0) + 10
    yield Timeout(), T0 + 5
    yield Timeout(), T0 + 10 * 24 * 3600 * 1000  # past the flow's inactivity timeout


def session_events(root: Flow, flows: Mapping[str, Flow], seed: int) -> list[tuple[Event, int]]:
    """A seeded session of valid answers and some noise, as the old whole-session test drove it."""
    from flowkit.sim.answers import valid_answer

    rng = random.Random(seed)
    t = step(root, None, Start(flow=root.name), T0, flows=flows, session_id=f"s{seed}")
    now, out = T0, []
    for i in range(40):
        state = t.state
        if state.terminal or state.status != "waiting_input" or "/" in (state.step or ""):
            break
        cur = root.steps[state.step]  # type: ignore[index]
        assert isinstance(cur, AskStep)
        if rng.random() < 0.85:
            msg = valid_answer(cur, root.slots.get(cur.save or ""), rng, dt.date(2026, 9, 21))
            msg = UserMessage(text=msg.text, message_id=f"m{i}") if msg.type == "text" else msg
        else:
            msg = UserMessage(text=rng.choice(TEXTS), message_id=f"m{i}")
        now += rng.choice([1, 1000, 400_000])
        out.append((msg, now))
        t = step(root, state, msg, now, flows=flows)
    return out


def flow_texts() -> dict[str, str]:
    from tests.engine.test_one_path import MIXED_YAML

    texts = {p.stem: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.yaml"))}
    texts["mixed"] = MIXED_YAML
    return texts


def flows_from(texts: Mapping[str, str]) -> dict[str, Flow]:
    import textwrap

    flows = [parse_flow(textwrap.dedent(text), f"{name}.yaml") for name, text in texts.items()]
    return {f.name: f for f in flows}


def record() -> dict[str, Any]:
    texts = flow_texts()
    flows = flows_from(texts)
    groups: list[dict[str, Any]] = []
    for name in sorted(flows):
        root = flows[name]
        for ask in reachable_asks(root, flows):
            state = at(root, ask, flows)
            events = list(question_events(root, ask, state))
            groups.append({"flow": name, "ask": ask, "events": [[event_to_json(e), now] for e, now in events],
                           "digests": [digest(run(root, state, e, now, flows)) for e, now in events]})
        for seed in range(15):
            events = session_events(root, flows, seed)
            t = step(root, None, Start(flow=root.name), T0, flows=flows, session_id=f"s{seed}")
            digests = [digest(t)]
            for e, now in events:
                out = run(root, t.state, e, now, flows)
                digests.append(digest(out))
                assert isinstance(out, Transition)
                t = out
            groups.append({"flow": name, "session": seed, "events": [[event_to_json(e), now] for e, now in events],
                           "digests": digests})
    return {"recorded_at_commit": "40efd48", "flows": texts, "groups": groups}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(record(), ensure_ascii=True, separators=(",", ":")) + "\n", encoding="utf-8")
    print(GOLDEN, GOLDEN.stat().st_size, "bytes")
