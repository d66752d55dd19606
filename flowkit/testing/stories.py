"""Conversation stories: hand-written conversations run through the real runtime and store.

A story is what a product owner would write down: the user says X, the bot answers Y,
and at the end the session holds these slots and has this status::

    stories:
      - name: books a checkup
        turns:
          - {user: clinic, bot: "What is the visit for?"}
          - {user: checkup, bot: "Patient age?"}
        slots: {visit: checkup}
        status: waiting_input

Each turn does one thing: ``user: TEXT`` (a typed message; trigger words start flows as they
do for real users), ``tap: ID_OR_TITLE`` (a button or list row the bot offered in its last
messages), ``start: FLOW`` (the business starts a flow) or ``wait: DURATION`` (the user stays
silent: the virtual clock moves and due timeouts fire from the store's index). What the bot
sends in answer is checked with ``bot:`` (the message contains the text), ``bot_regex:``
(RE2, searched) or ``bot_exact:`` (the whole text, a button title or a row title); each may
be one string or a list, every entry matching one message. ``silent: true`` expects no
message. ``slots``, ``status`` and ``step`` may be checked after any turn and at the end of
the story; ``slots`` compares only the slots named (inside a sub-flow, as the flow reads them: its own, then its callers'). ``services`` stubs the ``call`` steps'
services (``name: VALUE`` returns VALUE, ``name: {raises: TEXT}`` fails with TEXT), at the
top of the file for every story or per story.

:func:`run_stories` runs them through :class:`flowkit.runtime.Runtime` on a
:class:`flowkit.store.Store`, checks every stored history with :func:`flowkit.check.check_session`,
and reports the flow edges no story took (reported, never a failure). ``flowkit test FLOWS
--stories FILE`` runs them from the shell; :mod:`flowkit.testing.pytest_plugin` collects
``*.stories.yaml`` files as pytest tests. The story values live in
:mod:`flowkit.testing.story_model`, the file reader in :mod:`flowkit.testing.story_reader`;
this module runs stories (every name stays importable from here).
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flowkit.engine import Reply, Start, UserMessage
from flowkit.errors import FlowkitError, StoryError
from flowkit.flow.model import TERMINAL_STATUSES, Flow
from flowkit.runtime.registry import FlowRegistry
from flowkit.testing.clock import TEST_EPOCH_MS, THINK_MS, VirtualClock
from flowkit.testing.edges import flow_edges, record_moves
from flowkit.testing.story_model import (
    Expect,
    Story,
    StoryReport,
    StoryResult,
    Turn,
    TurnResult,
    render,
    reply_strings,
)
from flowkit.testing.story_reader import MAX_STORIES_FILE, load_stories, parse_stories
from flowkit.testing.variants import story_session_id


def _services(stubs: Mapping[str, Any], base: Any) -> Any:
    from flowkit.retry import RetryPolicy
    from flowkit.runtime.services import ServiceRegistry

    if not stubs:
        return base
    reg = base.copy() if base is not None else ServiceRegistry()  # the project's services, stubs on top
    once = RetryPolicy(attempts=1)
    for name, value in stubs.items():
        if isinstance(value, dict) and set(value) == {"raises"}:
            reg.add(name, _raiser(str(value["raises"])), retry=once)
        else:
            reg.add(name, _returner(value), retry=once)
    return reg


def _returner(value: Any) -> Any:
    def stub(**_: Any) -> Any:
        return value
    return stub


def _raiser(text: str) -> Any:
    def stub(**_: Any) -> Any:
        raise RuntimeError(text)
    return stub


def _offered(sent: Sequence[Reply]) -> list[tuple[str, str, str]]:
    """(kind, id, title) of every button and row in the bot's last messages, newest first."""
    out: list[tuple[str, str, str]] = []
    for r in reversed(sent):
        out += [("button_reply", bid, title) for bid, title in r.buttons]
        out += [("list_reply", row[0], row[1]) for _, rows in r.sections for row in rows]
    return out


def _closest(expect: Expect, sent: Sequence[Reply]) -> str:
    """A line diff between what was expected and the nearest thing the bot said."""
    candidates = [s for r in sent for s in reply_strings(r)]
    if not candidates:
        return f"expected {expect.describe()}; the bot said nothing"
    best = max(candidates, key=lambda s: difflib.SequenceMatcher(None, expect.text, s).ratio())
    diff = difflib.ndiff([expect.text], [best])
    return f"expected {expect.describe()}; nearest:\n" + "\n".join("  " + d.rstrip() for d in diff)


def _check_state(state: Mapping[str, Any] | None, slots: Mapping[str, Any] | None, status: str | None,
                 step: str | None) -> list[str]:
    problems = []
    if state is None:
        if slots or status or step:
            return ["there is no session (no flow started)"]
        return []
    # Inside a sub-flow a name is looked up as the flow reads it: the sub-flow's own slots
    # first, then each caller's from the innermost out, so a story can check the root
    # flow's answers at any turn.
    scopes = [state.get("slots") or {}] + [f.get("slots") or {} for f in reversed(state.get("stack") or [])]
    for k, want in (slots or {}).items():
        have = next((scope for scope in scopes if k in scope), None)
        if have is None:
            problems.append(f"slot {k!r} is unset; expected {want!r}")
        elif have[k] != want or type(have[k]) is bool and type(want) is not bool:
            problems.append(f"slot {k!r} is {have[k]!r}; expected {want!r}")
    if status is not None and state.get("status") != status:
        problems.append(f"status is {state.get('status')!r}; expected {status!r}")
    if step is not None and state.get("step") != step:
        problems.append(f"step is {state.get('step')!r}; expected {step!r}")
    return problems




def _wait(runtime: Any, session_id: str, clock: VirtualClock, ms: int) -> None:
    """The user stays silent for ``ms``: every wake-up of this session due in that time fires
    at its own moment (a reminder, then the expiry after it). Only this session's: a story
    must not fire other sessions' timeouts on a shared Redis with its virtual clock."""
    from flowkit.engine import Timeout
    from flowkit.engine.transition import schedule

    target = clock.now + ms
    for _ in range(1_000):  # each firing moves the session on; a flow cannot wake it forever
        state = runtime.store.load(session_id)
        if state is None or state.get("status") in TERMINAL_STATUSES:
            break
        wake = schedule(state.get("pending"), runtime.registry.get(state["flow"], state.get("flow_version")),
                        int(state["updated_at"]))
        if wake.reason == "none" or wake.at > target:
            break
        clock.now = max(clock.now, wake.at)
        if runtime.handle(session_id, Timeout()).status != "applied":
            break
    clock.now = target


def run_story(story: Story, runtime: Any, session_id: str, clock: VirtualClock) -> StoryResult:
    """Play ``story`` through ``runtime`` (a :class:`flowkit.runtime.Runtime` on a real store whose
    clock is ``clock`` and whose channel is a :class:`~flowkit.runtime.RecordingChannel`) as
    ``session_id``; every turn runs even after one fails, so the report shows the whole story."""
    res = StoryResult(story, session_id)
    channel = runtime.channel
    said: list[Reply] = []
    for i, turn in enumerate(story.turns, 1):
        tr = TurnResult(turn)
        res.turns.append(tr)
        mark = len(channel.sent)
        try:
            problem = _act(turn, f"wamid.story.{session_id}.{i}", runtime, session_id, clock, said)
        except FlowkitError as exc:
            problem = f"the runtime raised {type(exc).__name__}: {exc}"
        if problem is not None:
            tr.problems.append(problem)
            continue
        tr.sent = [s.reply for s in channel.sent[mark:] if s.to == session_id]
        if tr.sent:
            said = tr.sent
        tr.problems += _check_turn(turn, tr.sent, runtime, session_id)
    _check_end(story, runtime, session_id, res)
    return res


def _act(turn: Turn, mid: str, runtime: Any, session_id: str, clock: VirtualClock,
         said: Sequence[Reply]) -> str | None:
    """Do what the turn says (as message ``mid``); a problem when a tap names nothing the bot offered."""
    if turn.action == "wait":
        _wait(runtime, session_id, clock, int(turn.wait_s * 1000))
        return None
    clock.now += THINK_MS
    if turn.action == "start":
        runtime.handle(session_id, Start(flow=turn.value, message_id=mid))
        return None
    if turn.action == "user":
        runtime.handle(session_id, UserMessage(text=turn.value, message_id=mid))
        return None
    want = turn.value.casefold()
    options = _offered(said)
    hit = next((o for o in options if o[1] == turn.value), None) or next(
        (o for o in options if o[2].casefold() == want), None)
    if hit is None:
        titles = ", ".join(repr(o[2]) for o in options) or "nothing"
        return f"the bot's last messages offer no button or row {turn.value!r} (they offer {titles})"
    runtime.handle(session_id, UserMessage(text=hit[2], type=hit[0], reply_id=hit[1],  # type: ignore[arg-type]  # (hit[0] is a UserMessage type by construction)
                                       message_id=mid))
    return None


def _check_turn(turn: Turn, sent: Sequence[Reply], runtime: Any, session_id: str) -> list[str]:
    """What the turn expected of the bot's messages and of the session after it."""
    problems = [_closest(e, sent) for e in turn.expect if not any(e.matches(r) for r in sent)]
    if turn.silent and sent:
        problems.append(f"expected no message; the bot sent {len(sent)}")
    if turn.slots is not None or turn.status is not None or turn.step is not None:
        problems += _check_state(runtime.store.load(session_id), turn.slots, turn.status, turn.step)
    return problems


def _check_end(story: Story, runtime: Any, session_id: str, res: StoryResult) -> None:
    """The story's end checks, the edges its stored history took, and the history checker."""
    from flowkit.check import check_session

    state = runtime.store.load(session_id)
    res.problems += _check_state(state, story.slots, story.status, story.step)
    records = runtime.store.history(session_id)
    registry: FlowRegistry = runtime.registry
    if state is not None:
        for r in records:
            root = registry.latest(r.get("flow") or state["flow"])
            edges, _ = record_moves(root, r, registry)
            res.covered.update(edges)
    res.problems += [f"history check: {v}" for v in check_session(session_id, records, state, registry)]


def run_stories(flows: FlowRegistry | Mapping[str, Flow] | Iterable[Flow], store: Any, stories: Sequence[Story], *,
                services: Any = None, keep: bool = False, prefix: str | None = None) -> StoryReport:
    """Run ``stories`` through a real :class:`flowkit.runtime.Runtime` on ``store``, each as its
    own session (``<prefix><n>``, deleted afterwards unless ``keep``), with ``services`` (a
    :class:`flowkit.runtime.ServiceRegistry`) under each story's stubs. The report says which
    stories failed, turn by turn, and which flow edges no story took."""
    from flowkit.runtime import RecordingChannel, Runtime

    registry = flows if isinstance(flows, FlowRegistry) else FlowRegistry(flows.values() if isinstance(flows, Mapping) else flows)
    prefix = prefix if prefix is not None else f"fkstory.{uuid.uuid4().hex[:8]}."
    report = StoryReport(edges=[e for f in registry.flows() for e in flow_edges(f)])
    sids = []
    try:
        for n, story in enumerate(stories, 1):
            clock = VirtualClock(TEST_EPOCH_MS)
            rt = Runtime(store, registry, channel=RecordingChannel(), clock=clock,
                         services=_services(story.services, services))
            sids.append(story_session_id(f"{prefix}{n}", story, registry))
            result = run_story(story, rt, sids[-1], clock)
            report.results.append(result)
            report.covered |= result.covered
            rt.drain()
    finally:
        if not keep:
            for sid in sids:
                store.delete_session(sid)
    return report


__all__ = ["MAX_STORIES_FILE", "Expect", "Story", "StoryError", "StoryReport", "StoryResult", "Turn", "TurnResult",
           "load_stories", "parse_stories", "render", "run_stories", "run_story"]
