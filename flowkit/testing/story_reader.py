"""Reading stories files: YAML to :class:`~flowkit.testing.story_model.Story` values, with
every problem located (file, line, column) and reported at once as a :class:`StoryError`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flowkit.errors import PatternError, Problem, StoryError
from flowkit.flow.model import STATUSES, parse_duration
from flowkit.flow.patterns import compile_pattern
from flowkit.testing.story_model import Expect, Story, Turn

MAX_STORIES_FILE = 2 * 1024 * 1024  # a stories file is hand-written; anything larger is a mistake
_ACTIONS = ("user", "tap", "start", "wait")
_CHECKS = ("bot", "bot_regex", "bot_exact", "silent", "slots", "status", "step")
_STORY_KEYS = frozenset({"name", "turns", "slots", "status", "step", "services", "variants"})
_TOP_KEYS = frozenset({"stories", "flows", "services"})
_STATUSES = frozenset(STATUSES)


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
        expect = self.expects(m)
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


    def expects(self, m: Mapping[str, tuple[yaml.Node, yaml.Node]]) -> list[Expect]:
        """The bot messages a turn expects (``bot``, ``bot_regex``, ``bot_exact``: text or a list)."""
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
                    self.pattern(m[key][1], key, x)
                expect.append(Expect(mode, x))  # type: ignore[arg-type]  # (mode is one of the checked keys)
        return expect

    def pattern(self, node: yaml.Node, key: str, text: str) -> None:
        try:
            compile_pattern(text)
        except PatternError as exc:
            self.bad(node, "bad-pattern", f"{key}: {exc}")


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()
