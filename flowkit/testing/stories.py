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
``*.stories.yaml`` files as pytest tests.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from flowkit.engine import Message, Reply, Start
from flowkit.errors import FlowkitError, PatternError, Problem, StoryError
from flowkit.flow.model import STATUSES, TERMINAL_STATUSES, Flow, parse_duration
from flowkit.flow.patterns import compile_pattern
from flowkit.runtime.registry import FlowRegistry
from flowkit.testing.coverage import TEST_EPOCH_MS, THINK_MS, Edge, _Clock, flow_edges, record_moves
from flowkit.testing.variants import story_session_id

MAX_STORIES_FILE = 2 * 1024 * 1024  # a stories file is hand-written; anything larger is a mistake
_ACTIONS = ("user", "tap", "start", "wait")
_CHECKS = ("bot", "bot_regex", "bot_exact", "silent", "slots", "status", "step")
_STORY_KEYS = frozenset({"name", "turns", "slots", "status", "step", "services", "variants"})
_TOP_KEYS = frozenset({"stories", "flows", "services"})
_STATUSES = frozenset(STATUSES)


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Expect:
    """One message the bot must send: ``mode`` is ``contains``, ``regex`` or ``exact``."""

    mode: Literal["contains", "regex", "exact"]
    text: str

    def matches(self, reply: Reply) -> bool:
        if self.mode == "exact":
            return any(s == self.text for s in _strings(reply))
        if self.mode == "regex":
            return any(compile_pattern(self.text).search(s) is not None for s in _strings(reply))
        return any(self.text.casefold() in s.casefold() for s in _strings(reply))

    def describe(self) -> str:
        return {"contains": "a message containing", "regex": "a message matching /",
                "exact": "a message that is exactly"}[self.mode] + (f" {self.text!r}" if self.mode != "regex"
                                                                   else f"{self.text}/")


@dataclass(frozen=True)
class Turn:
    """One user action and what must follow it. ``line`` is its line in the stories file."""

    action: Literal["user", "tap", "start", "wait"]
    value: str
    line: int
    expect: tuple[Expect, ...] = ()
    silent: bool = False
    slots: Mapping[str, Any] | None = None
    status: str | None = None
    step: str | None = None
    wait_s: float = 0.0

    def describe(self) -> str:
        return f"{self.action}: {self.value!r}"


@dataclass(frozen=True)
class Story:
    name: str
    file: str
    line: int
    turns: tuple[Turn, ...]
    slots: Mapping[str, Any] | None = None
    status: str | None = None
    step: str | None = None
    services: Mapping[str, Any] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)  # split step -> variant the story's user gets

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class TurnResult:
    turn: Turn
    sent: list[Reply] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class StoryResult:
    story: Story
    session_id: str
    turns: list[TurnResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # end-of-story checks and the history checker
    covered: set[Edge] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return not self.problems and all(t.passed for t in self.turns)

    def text(self) -> str:
        """The story turn by turn, with what was expected and what the bot said where it differs."""
        head = f"story {self.story.name!r} ({self.story.where}) " + ("passed" if self.passed else "FAILED")
        lines = [head]
        for i, t in enumerate(self.turns, 1):
            lines.append(f"  turn {i} (line {t.turn.line}) {t.turn.describe()}" + ("" if t.passed else "  <-- FAILED"))
            for r in t.sent:
                lines.append(f"      bot: {render(r)}")
            if not t.sent:
                lines.append("      bot: (nothing)")
            for p in t.problems:
                lines.extend("    " + ln for ln in p.splitlines())
        for p in self.problems:
            lines.append(f"  at the end: {p}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.story.name, "where": self.story.where, "session_id": self.session_id,
                "passed": self.passed, "problems": list(self.problems),
                "turns": [{"line": t.turn.line, "action": t.turn.action, "value": t.turn.value,
                           "bot": [render(r) for r in t.sent], "problems": list(t.problems)} for t in self.turns]}


@dataclass
class StoryReport:
    results: list[StoryResult] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    covered: set[Edge] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[StoryResult]:
        return [r for r in self.results if not r.passed]

    @property
    def uncovered(self) -> list[Edge]:
        return [e for e in self.edges if e not in self.covered]

    def text(self) -> str:
        out = [r.text() for r in self.failed]
        passed = len(self.results) - len(self.failed)
        out.append(f"{passed}/{len(self.results)} stories passed; {len(self.covered & set(self.edges))}/"
                   f"{len(self.edges)} flow edges taken")
        entered = {e.flow for e in self.covered}
        untouched = sorted({e.flow for e in self.edges} - entered)
        out.extend(f"  not taken by any story: {e}" for e in self.uncovered if e.flow in entered)
        if untouched:
            out.append(f"  flows no story enters: {', '.join(untouched)}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": len(self.results) - len(self.failed), "total": len(self.results),
                "stories": [r.to_dict() for r in self.results],
                "edges": len(self.edges), "covered": len(self.covered & set(self.edges)),
                "uncovered": [e.to_dict() for e in self.uncovered]}


def render(reply: Reply) -> str:
    """A bot message on one line, as a person reads it: text, then [buttons] or [list rows]."""
    if reply.template is not None:
        name, lang, params = reply.template
        return f"template {name} ({lang}) {list(params)}"
    parts = [repr(reply.text or "")]
    if reply.buttons:
        parts.append("[" + " | ".join(title for _, title in reply.buttons) + "]")
    if reply.sections:
        parts.append("[" + " | ".join(r[1] for _, rows in reply.sections for r in rows) + "]")
    return " ".join(parts)


def _strings(reply: Reply) -> list[str]:
    out = [reply.text] if reply.text else []
    out += [title for _, title in reply.buttons]
    out += [r[1] for _, rows in reply.sections for r in rows]
    if reply.template is not None:
        out.append(reply.template[0])
    return out


# ---------------------------------------------------------------- parsing


def load_stories(path: str | Path) -> tuple[list[Story], dict[str, Any]]:
    """Stories from a YAML file, and the file's top-level settings (``flows``, ``services``).

    Raises :class:`StoryError` with every located problem."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_STORIES_FILE:
            raise StoryError(Problem(str(p), 1, 1, "too-big", f"stories file is {size} bytes; the limit is "
                                     f"{MAX_STORIES_FILE}: split it into several files"))
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoryError(Problem(str(p), 1, 1, "unreadable", f"cannot read the stories file: {exc}")) from None
    except UnicodeDecodeError as exc:
        raise StoryError(Problem(str(p), 1, 1, "encoding", f"the stories file is not UTF-8: {exc}")) from None
    return parse_stories(text, str(p))


def parse_stories(text: str, file: str = "<stories>") -> tuple[list[Story], dict[str, Any]]:
    """:func:`load_stories` for text in memory.

    >>> stories, _ = parse_stories('''
    ... stories:
    ...   - name: orders a pizza
    ...     turns:
    ...       - {user: pizza, bot: "What size?"}
    ...       - {tap: Large, bot_regex: "drink"}
    ...     status: waiting_input
    ... ''')
    >>> [(t.action, t.value, [e.mode for e in t.expect]) for t in stories[0].turns]
    [('user', 'pizza', ['contains']), ('tap', 'Large', ['regex'])]
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise StoryError(Problem(file, line, col, "yaml", f"not valid YAML: {getattr(exc, 'problem', exc)}")) from None
    reader = _Reader(file)
    stories, settings = reader.document(root)
    if reader.problems:
        raise StoryError(reader.problems)
    return stories, settings


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def bad(self, node: yaml.Node | None, code: str, message: str) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)
        self.problems.append(Problem(self.file, line, col, code, message))

    def mapping(self, node: yaml.Node | None, what: str, allowed: frozenset[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.bad(node, "type", f"{what} must be a mapping")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is None or key not in allowed:
                near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(sorted(allowed))})"
                self.bad(k, "unknown-key", f"unknown key {key!r} in {what}{hint}")
                continue
            if key in out:
                self.bad(k, "duplicate-key", f"{key!r} appears twice in {what}")
            out[key] = (k, v)
        return out

    def document(self, root: yaml.Node | None) -> tuple[list[Story], dict[str, Any]]:
        top = self.mapping(root, "a stories file", _TOP_KEYS)
        if root is None:
            self.problems.clear()
            self.bad(root, "empty", "the stories file is empty: write `stories:` with a list of stories")
        settings: dict[str, Any] = {}
        if "flows" in top:
            flows = _construct(top["flows"][1])
            flows = [flows] if isinstance(flows, str) else flows
            if not isinstance(flows, list) or not all(isinstance(f, str) for f in flows):
                self.bad(top["flows"][1], "type", "flows must be a path or a list of paths (relative to this file)")
            else:
                settings["flows"] = flows
        defaults = self.services(top["services"][1]) if "services" in top else {}
        settings["services"] = defaults
        if "stories" not in top:
            if top:
                self.bad(root, "missing", "the file has no `stories:` list")
            return [], settings
        node = top["stories"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.bad(node, "type", "stories must be a non-empty list")
            return [], settings
        stories = [s for s in (self.story(n, defaults) for n in node.value) if s is not None]
        names = [s.name for s in stories]
        for s in stories:
            if names.count(s.name) > 1:
                self.problems.append(Problem(self.file, s.line, 1, "duplicate-name",
                                             f"two stories are named {s.name!r}: give each its own name"))
                names = [n for n in names if n != s.name]
        return stories, settings

    def services(self, node: yaml.Node) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            self.bad(node, "type", "services must map service names to a value or {raises: TEXT}")
            return {}
        out: dict[str, Any] = {}
        for k, v in node.value:
            value = _construct(v)
            if isinstance(value, dict) and "raises" in value and (len(value) != 1 or not isinstance(value["raises"], str)):
                self.bad(v, "type", f"service {k.value!r}: write {{raises: TEXT}} alone to make it fail")
                continue
            out[str(k.value)] = value
        return out

    def story(self, node: yaml.Node, defaults: Mapping[str, Any]) -> Story | None:
        before = len(self.problems)
        m = self.mapping(node, "a story", _STORY_KEYS)
        name = _construct(m["name"][1]) if "name" in m else None
        if not isinstance(name, str) or not name.strip():
            self.bad(m["name"][1] if "name" in m else node, "missing", "every story needs a `name:` (text)")
            name = "?"
        turns_node = m["turns"][1] if "turns" in m else None
        if not isinstance(turns_node, yaml.SequenceNode) or not turns_node.value:
            self.bad(turns_node or node, "missing", f"story {name!r} needs `turns:`, a non-empty list")
            turns: list[Turn] = []
        else:
            turns = [t for t in (self.turn(n, name) for n in turns_node.value) if t is not None]
        slots, status, step = self.checks(m, f"story {name!r}")
        services = dict(defaults)
        if "services" in m:
            services.update(self.services(m["services"][1]))
        variants = _construct(m["variants"][1]) if "variants" in m else {}
        if not isinstance(variants, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in variants.items()):
            self.bad(m["variants"][1], "type", f"`variants` of story {name!r} maps split steps to variant names "
                     "(e.g. `variants: {wording: long}`)")
        if len(self.problems) > before:
            return None
        return Story(name=name, file=self.file, line=node.start_mark.line + 1, turns=tuple(turns), slots=slots,
                     status=status, step=step, services=services, variants=variants)

    def checks(self, m: Mapping[str, tuple[yaml.Node, yaml.Node]], what: str) -> tuple[Any, str | None, str | None]:
        slots = _construct(m["slots"][1]) if "slots" in m else None
        if slots is not None and not isinstance(slots, dict):
            self.bad(m["slots"][1], "type", f"{what}: slots must map slot names to values")
            slots = None
        status = _construct(m["status"][1]) if "status" in m else None
        if status is not None and status not in _STATUSES:
            self.bad(m["status"][1], "value", f"{what}: status {status!r} is not one of {', '.join(sorted(_STATUSES))}")
        step = _construct(m["step"][1]) if "step" in m else None
        if step is not None and not isinstance(step, str):
            self.bad(m["step"][1], "type", f"{what}: step must be a step name")
        return slots, status, step

    def turn(self, node: yaml.Node, story: str) -> Turn | None:
        before = len(self.problems)
        line = node.start_mark.line + 1
        m = self.mapping(node, f"a turn of story {story!r}", frozenset(_ACTIONS + _CHECKS))
        actions = [a for a in _ACTIONS if a in m]
        if len(actions) != 1:
            self.bad(node, "action", f"a turn of story {story!r} does exactly one of "
                     f"{', '.join(_ACTIONS)}; this one has {', '.join(actions) or 'none'}")
            return None
        action = actions[0]
        raw = _construct(m[action][1])
        wait_s = 0.0
        if action == "wait":
            try:
                wait_s = parse_duration(raw)
            except ValueError as exc:
                self.bad(m[action][1], "duration", f"wait: {exc}")
        elif not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            self.bad(m[action][1], "type", f"{action}: must be text")
        expect: list[Expect] = []
        for key, mode in (("bot", "contains"), ("bot_regex", "regex"), ("bot_exact", "exact")):
            if key not in m:
                continue
            v = _construct(m[key][1])
            items = v if isinstance(v, list) else [v]
            if not items or not all(isinstance(x, str) and x for x in items):
                self.bad(m[key][1], "type", f"{key}: must be text or a list of texts")
                continue
            for x in items:
                if mode == "regex":
                    try:
                        compile_pattern(x)
                    except PatternError as exc:
                        self.bad(m[key][1], "bad-pattern", f"{key}: {exc}")
                expect.append(Expect(mode, x))  # type: ignore[arg-type]  # (mode is one of the checked keys)
        silent = _construct(m["silent"][1]) if "silent" in m else False
        if not isinstance(silent, bool):
            self.bad(m["silent"][1], "type", "silent: must be true or false")
        elif silent and expect:
            self.bad(m["silent"][1], "contradiction", "a turn cannot expect silence and a bot message")
        slots, status, step = self.checks(m, f"turn at line {line}")
        if len(self.problems) > before:
            return None
        return Turn(action=action, value=str(raw), line=line, expect=tuple(expect), silent=bool(silent),  # type: ignore[arg-type]  # (action is one of the checked keys)
                    slots=slots, status=status, step=step, wait_s=wait_s)


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


# ---------------------------------------------------------------- running


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
    candidates = [s for r in sent for s in _strings(r)]
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




def _wait(runtime: Any, session_id: str, clock: _Clock, ms: int) -> None:
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


def run_story(story: Story, runtime: Any, session_id: str, clock: _Clock) -> StoryResult:
    """Play ``story`` through ``runtime`` (a :class:`flowkit.runtime.Runtime` on a real store whose
    clock is ``clock`` and whose channel is a :class:`~flowkit.runtime.RecordingChannel`) as
    ``session_id``; every turn runs even after one fails, so the report shows the whole story."""
    from flowkit.check import check_session

    res = StoryResult(story, session_id)
    channel = runtime.channel
    said: list[Reply] = []
    for i, turn in enumerate(story.turns, 1):
        tr = TurnResult(turn)
        res.turns.append(tr)
        mark = len(channel.sent)
        try:
            if turn.action == "wait":
                _wait(runtime, session_id, clock, int(turn.wait_s * 1000))
            else:
                clock.now += THINK_MS
                mid = f"wamid.story.{session_id}.{i}"
                if turn.action == "start":
                    runtime.handle(session_id, Start(flow=turn.value, message_id=mid))
                elif turn.action == "user":
                    runtime.handle(session_id, Message(text=turn.value, message_id=mid))
                else:
                    want = turn.value.casefold()
                    options = _offered(said)
                    hit = next((o for o in options if o[1] == turn.value), None) or next(
                        (o for o in options if o[2].casefold() == want), None)
                    if hit is None:
                        titles = ", ".join(repr(o[2]) for o in options) or "nothing"
                        tr.problems.append(f"the bot's last messages offer no button or row {turn.value!r} "
                                           f"(they offer {titles})")
                        continue
                    runtime.handle(session_id, Message(text=hit[2], type=hit[0], reply_id=hit[1],  # type: ignore[arg-type]  # (hit[0] is a Message type by construction)
                                                       message_id=mid))
        except FlowkitError as exc:
            tr.problems.append(f"the runtime raised {type(exc).__name__}: {exc}")
            continue
        tr.sent = [s.reply for s in channel.sent[mark:] if s.to == session_id]
        if tr.sent:
            said = tr.sent
        for e in turn.expect:
            if not any(e.matches(r) for r in tr.sent):
                tr.problems.append(_closest(e, tr.sent))
        if turn.silent and tr.sent:
            tr.problems.append(f"expected no message; the bot sent {len(tr.sent)}")
        if turn.slots is not None or turn.status is not None or turn.step is not None:
            tr.problems += _check_state(runtime.store.load(session_id), turn.slots, turn.status, turn.step)
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
    return res


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
            clock = _Clock(TEST_EPOCH_MS)
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


__all__ = ["Expect", "Story", "StoryError", "StoryReport", "StoryResult", "Turn", "TurnResult", "load_stories",
           "parse_stories", "render", "run_stories", "run_story"]
