"""Load flow files (YAML or JSON) into the model, reporting every problem with its location.

Parsing works on PyYAML's node tree rather than on plain Python values so that every
value keeps its line and column; JSON is read by the same parser (JSON is YAML), which
gives JSON files the same precise errors. Problems are collected, not raised one by one:
a user fixing a file sees all of them at once.

The parser is a chain, each layer in its own module and using only those below it:
:mod:`~flowkit.flow.parse_values` (shapes, scalars, names, expressions) →
:mod:`~flowkit.flow.parse_messages` (what the bot says) → :mod:`~flowkit.flow.parse_steps`
(steps, ``next``, inputs) → this module (the flow's own keys, files and folders).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from flowkit.errors import FlowError, Problem
from flowkit.flow.model import (
    COMMAND_NAMES,
    SLOT_TYPES,
    AskStep,
    CallStep,
    Commands,
    Flow,
    HandoffPolicy,
    Loc,
    SlotSpec,
)
from flowkit.flow.parse_steps import StepParser
from flowkit.flow.reader import MAX_FILE_BYTES
from flowkit.flow.reader import Node as _N
from flowkit.flow.reader import type_name as _type_name

FLOW_SUFFIXES = (".yaml", ".yml", ".json")


# ---------------------------------------------------------------- the parser

class _Parser(StepParser):
    """Turns one flow file's text into a :class:`Flow`, collecting problems."""

    # -- the flow

    def flow(self, root: _N) -> Flow | None:
        top = self.mapping(
            root,
            "the flow",
            ["flow", "version", "description", "start", "triggers", "timeout", "commands", "help", "slots", "steps",
             "on_undeliverable", "handoff"],
            required=["flow", "start", "steps"],
        )
        if top is None:
            return None
        name = self.name(top.get("flow"), "`flow`")
        version = self.text(top.get("version"), "`version`", allow_number=True)
        description = self.text(top.get("description"), "`description`")
        start_node = top.get("start")
        start = self.name(start_node, "`start`")
        triggers = self.string_list(top.get("triggers"), "`triggers`") or ()
        triggers = tuple(t.strip().lower() for t in triggers)
        timeout = self.duration(top.get("timeout"), "`timeout`")
        commands = self.commands(top.get("commands"))
        help_text = self.template(top.get("help"), "`help`")
        slots = self.slots(top.get("slots"))
        steps = self.steps(top.get("steps"))
        if name is None or start is None or steps is None:
            return None
        undeliverable = self.name(top.get("on_undeliverable"), "`on_undeliverable`")
        if undeliverable:  # the flow-wide default: every waiting step without its own
            steps = {n: (dataclasses.replace(s, on_undeliverable=undeliverable)
                         if isinstance(s, (AskStep, CallStep)) and not s.on_undeliverable else s)
                     for n, s in steps.items()}
        return Flow(
            name=name,
            start=start,
            steps=steps,
            slots=slots,
            version=version,
            description=description,
            triggers=triggers,
            timeout=timeout,
            commands=commands,
            help=help_text,
            source=self.file,
            loc=self.loc(start_node) if start_node else Loc(self.file, 1, 1),
            handoff=self.handoff(top.get("handoff")),
        )

    def handoff(self, n: _N | None) -> HandoffPolicy | None:
        if n is None:
            return None
        m = self.mapping(n, "`handoff`", ["timeout", "on_timeout"], required=["timeout", "on_timeout"])
        if m is None:
            return None
        timeout = self.duration(m.get("timeout"), "`handoff.timeout`")
        target = self.name(m.get("on_timeout"), "`handoff.on_timeout`")
        return HandoffPolicy(timeout, target) if timeout is not None and target is not None else None

    def commands(self, n: _N | None) -> Commands:
        if n is None:
            return Commands()
        m = self.mapping(n, "`commands`", COMMAND_NAMES)
        if m is None:
            return Commands()
        kwargs: dict[str, tuple[str, ...]] = {}
        for key, v in m.items():
            if v.value is False or v.value is None:
                kwargs[key] = ()
                continue
            words = self.string_list(v, f"`commands.{key}`")
            if words is not None:
                kwargs[key] = tuple(w.strip().lower() for w in words)
        return Commands(**kwargs)

    def slots(self, n: _N | None) -> dict[str, SlotSpec]:
        if n is None:
            return {}
        if not n.is_map:
            self.err(n, "wrong-type", f"`slots` must be a mapping of slot name to spec, got {_type_name(n.value)}")
            return {}
        out: dict[str, SlotSpec] = {}
        for key, (knode, vnode) in n.value.items():
            if self.name(knode, "slot name") is None:
                continue
            if isinstance(vnode.value, str):  # shorthand: `qty: int`
                vnode = _N({"type": (_N("type", vnode.line, vnode.column), vnode)}, vnode.line, vnode.column)
            m = self.mapping(
                vnode, f"slot {key!r}", ["type", "options", "min", "max", "min_length", "max_length", "pattern", "sensitive"]
            )
            if m is None:
                continue
            typ = self.choice(m.get("type"), f"the type of slot {key!r}", SLOT_TYPES) or "any"
            spec = SlotSpec(
                name=key,
                type=typ,
                options=self.string_list(m.get("options"), f"the options of slot {key!r}"),
                min=self.number(m.get("min"), f"`min` of slot {key!r}"),
                max=self.number(m.get("max"), f"`max` of slot {key!r}"),
                min_length=self.integer(m.get("min_length"), f"`min_length` of slot {key!r}", lo=0),
                max_length=self.integer(m.get("max_length"), f"`max_length` of slot {key!r}", lo=1),
                pattern=self.pattern(m.get("pattern"), f"`pattern` of slot {key!r}"),
                sensitive=bool(self.boolean(m.get("sensitive"), f"`sensitive` of slot {key!r}")),
                loc=self.loc(knode),
            )
            if typ == "choice" and not spec.options:
                self.err(vnode, "missing-key", f"slot {key!r} has type choice and needs `options`")
            self.check_range(vnode, f"slot {key!r}", spec.min, spec.max, spec.min_length, spec.max_length)
            out[key] = spec
        return out


# ---------------------------------------------------------------- public API


def parse_flow(text: str, file: str = "<string>", *, validate: bool = True) -> Flow:
    """Parse one flow from YAML or JSON text. Raises :class:`FlowError` with every problem found."""
    from flowkit.flow.validate import validate_flow

    too_big = _too_big(len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > MAX_FILE_BYTES else len(text), file)
    if too_big is not None:
        raise FlowError(too_big)
    parser = _Parser(text, file)
    root = parser.compose()
    flow = parser.flow(root) if root is not None else None
    problems = list(parser.problems)
    if flow is not None and validate:
        problems.extend(validate_flow(flow))
    if problems or flow is None:
        if not problems:  # pragma: no cover - the parser always says why it gave up
            problems.append(Problem(file, 1, 1, "invalid", "the flow could not be read"))
        raise FlowError(_sorted(problems))
    return flow


def load_flow(path: str | Path) -> Flow:
    """Load and validate one flow file (``.yaml``, ``.yml`` or ``.json``)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:  # never more than the bound, whatever the file claims to be
            data = fh.read(MAX_FILE_BYTES + 1)
        too_big = _too_big(len(data), str(p))
        if too_big is not None:
            raise FlowError(too_big)
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text's universal newlines
    except FileNotFoundError:
        raise FlowError(Problem(str(p), 0, 0, "not-found", "no such file")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(Problem(str(p), 0, 0, "unreadable", f"cannot read the file: {exc}")) from None
    return parse_flow(text, str(p))


def _too_big(size: int, file: str) -> Problem | None:
    if size <= MAX_FILE_BYTES:
        return None
    return Problem(file, 1, 1, "too-big", f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, the most a flow file "
                   "may be; split it into sub-flows (`flow:` steps)")


def flow_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the flow files they hold (sorted), keep files as given."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in FLOW_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


def load_flows(paths: Iterable[str | Path] | str | Path) -> dict[str, Flow]:
    """Load several flow files or folders, check them together (sub-flow references, names).

    Returns flows by name. Raises one :class:`FlowError` with the problems of every file.
    """
    from flowkit.flow.validate import validate_flow_set

    if isinstance(paths, (str, Path)):
        paths = [paths]
    flows: dict[str, Flow] = {}
    problems: list[Problem] = []
    for f in flow_files(paths):
        try:
            flow = load_flow(f)
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        if flow.name in flows:
            problems.append(
                Problem(str(f), flow.loc.line, 1, "duplicate-flow", f"flow {flow.name!r} is also defined in {flows[flow.name].source}")
            )
            continue
        flows[flow.name] = flow
    problems.extend(validate_flow_set(flows))
    if problems:
        raise FlowError(_sorted(problems))
    return flows


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))  # first of each, in order
    return sorted(unique, key=lambda p: (p.file, p.line, p.column))


def flow_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Flow:
    """Build a flow from plain data (as a YAML file would hold it), with the same checks.

    The data is written to YAML and parsed, so problems point at lines of that text
    (``Flow.to_yaml()`` of the result reproduces it).
    """
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)
    return parse_flow(text, source)

