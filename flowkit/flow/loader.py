"""Load flow files (YAML or JSON) into the model, reporting every problem with its location.

Parsing works on PyYAML's node tree rather than on plain Python values so that every
value keeps its line and column; JSON is read by the same parser (JSON is YAML), which
gives JSON files the same precise errors. Problems are collected, not raised one by one:
a user fixing a file sees all of them at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from flowkit.errors import ExpressionError, FlowError, PatternError, Problem
from flowkit.flow.expr import Expr, parse_expr
from flowkit.flow.model import (
    COMMAND_NAMES,
    END_KINDS,
    INPUT_TYPES,
    MEDIA_KINDS,
    SLOT_TYPES,
    AskStep,
    Branch,
    BranchStep,
    Button,
    CallStep,
    Commands,
    CtaButton,
    EndStep,
    Flow,
    FlowStep,
    HandoffPolicy,
    InputSpec,
    ListMenu,
    ListRow,
    ListSection,
    Loc,
    MediaRef,
    Message,
    SayStep,
    SetStep,
    SlotSpec,
    SplitStep,
    Step,
    TemplateMessage,
    Variant,
    parse_duration,
)
from flowkit.flow.patterns import compile_pattern
from flowkit.flow.reader import MAX_FILE_BYTES, Reader
from flowkit.flow.reader import Node as _N
from flowkit.flow.reader import type_name as _type_name
from flowkit.flow.template import Template, parse_template

FLOW_SUFFIXES = (".yaml", ".yml", ".json")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVICE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# ---------------------------------------------------------------- the parser

class _Parser:
    """Turns one flow file's text into a :class:`Flow`, collecting problems."""

    def __init__(self, text: str, file: str) -> None:
        self.source_text = text
        self.file = file
        self.problems: list[Problem] = []
        self._broken_next: dict[str, tuple[Branch, ...]] = {}

    # -- problems

    def loc(self, n: _N, offset: int = 0) -> Loc:
        """Where ``n`` was written; ``offset`` points inside a text value (exact where the
        file's layout allows, see :class:`~flowkit.flow.expr.Span`)."""
        if n.span is not None:
            line, column = n.span.at(offset)
            return Loc(self.file, line, column)
        return Loc(self.file, n.line, n.column + (1 if n.quoted else 0) + offset)

    def err(self, n: _N | Loc, code: str, message: str) -> None:
        loc = n if isinstance(n, Loc) else self.loc(n)
        self.problems.append(Problem(loc.file, loc.line, loc.column, code, message))

    # -- YAML to located nodes

    def compose(self) -> _N | None:
        reader = Reader(self.source_text, self.file)
        root = reader.read()
        self.problems.extend(reader.problems)
        return root

    # -- shape helpers

    def mapping(self, n: _N, what: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, _N] | None:
        if not n.is_map:
            self.err(n, "wrong-type", f"{what} must be a mapping, got {_type_name(n.value)}")
            return None
        allowed = list(allowed)
        out: dict[str, _N] = {}
        for key, (knode, vnode) in n.value.items():
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                extra = f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(allowed)})"
                self.err(knode, "unknown-key", f"unknown key {key!r} in {what}{extra}")
                continue
            out[key] = vnode
        for key in required:
            if key not in n.value:
                self.err(n, "missing-key", f"{what} needs `{key}`")
        return out

    def text(self, n: _N | None, what: str, allow_number: bool = False) -> str | None:
        if n is None:
            return None
        if isinstance(n.value, str) and n.value.strip():
            return n.value
        if allow_number and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return str(n.value)
        self.err(n, "wrong-type", f"{what} must be non-empty text, got {_type_name(n.value)}")
        return None

    def name(self, n: _N | None, what: str) -> str | None:
        value = self.text(n, what)
        if value is not None and n is not None and not _NAME.match(value):
            self.err(n, "bad-name", f"{what} {value!r} must be letters, digits and _ (starting with a letter)")
            return None
        return value

    def integer(self, n: _N | None, what: str, lo: int | None = None, hi: int | None = None) -> int | None:
        if n is None:
            return None
        v = n.value
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(n, "wrong-type", f"{what} must be a whole number, got {_type_name(v)}")
            return None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.err(n, "bad-value", f"{what} must be {rng}, got {v}")
            return None
        return v

    def number(self, n: _N | None, what: str) -> float | None:
        if n is None:
            return None
        v = n.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.err(n, "wrong-type", f"{what} must be a number, got {_type_name(v)}")
            return None
        return float(v)

    def boolean(self, n: _N | None, what: str) -> bool | None:
        if n is None:
            return None
        if not isinstance(n.value, bool):
            self.err(n, "wrong-type", f"{what} must be true or false, got {_type_name(n.value)}")
            return None
        return n.value

    def duration(self, n: _N | None, what: str) -> float | None:
        if n is None:
            return None
        try:
            return parse_duration(n.value)
        except ValueError as exc:
            self.err(n, "bad-duration", f"{what}: {exc}")
            return None

    def string_list(self, n: _N | None, what: str) -> tuple[str, ...] | None:
        if n is None:
            return None
        if isinstance(n.value, str):
            return (n.value,)
        if not n.is_list:
            self.err(n, "wrong-type", f"{what} must be a list of text, got {_type_name(n.value)}")
            return None
        out: list[str] = []
        for item in n.value:
            s = self.text(item, f"each item of {what}", allow_number=True)
            if s is not None:
                if s in out:
                    self.err(item, "duplicate-value", f"{s!r} appears twice in {what}")
                out.append(s)
        return tuple(out)

    def expr(self, n: _N | None, what: str) -> Expr | None:
        if n is None:
            return None
        source = n.value
        if isinstance(source, bool):
            source = "true" if source else "false"
        elif isinstance(source, (int, float)):
            source = str(source)
        if not isinstance(source, str):
            self.err(n, "wrong-type", f"{what} must be an expression (text), got {_type_name(n.value)}")
            return None
        try:
            return dataclasses.replace(parse_expr(source), span=n.span)
        except ExpressionError as exc:
            self.err(self.loc(n, exc.position), "bad-expression", f"{what}: {exc.reason} in {source!r}")
            return None

    def template(self, n: _N | None, what: str) -> Template | None:
        if n is None:
            return None
        source = n.value
        if isinstance(source, (int, float)) and not isinstance(source, bool):
            source = str(source)
        if not isinstance(source, str):
            self.err(n, "wrong-type", f"{what} must be text, got {_type_name(n.value)}")
            return None
        try:
            return dataclasses.replace(parse_template(source), span=n.span)
        except ExpressionError as exc:
            self.err(self.loc(n, exc.position), "bad-expression", f"{what}: {exc.reason} in {source!r}")
            return Template(source, (source,), span=n.span)  # reported; keep the step so nothing else fails for it

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

    def choice(self, n: _N | None, what: str, allowed: Iterable[str]) -> str | None:
        value = self.text(n, what)
        allowed = list(allowed)
        if value is None or n is None:
            return None
        if value not in allowed:
            hint = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            self.err(n, "bad-value", f"{what} must be one of {', '.join(allowed)}; got {value!r}{extra}")
            return None
        return value

    def pattern(self, n: _N | None, what: str) -> str | None:
        value = self.text(n, what)
        if value is None or n is None:
            return None
        try:
            compile_pattern(value)
        except PatternError as exc:
            self.err(n, "bad-pattern", f"{what} is not a valid regular expression: {exc}")
            return None
        return value

    def check_range(self, n: _N, what: str, lo: Any, hi: Any, min_len: int | None, max_len: int | None) -> None:
        if lo is not None and hi is not None and lo > hi:
            self.err(n, "bad-range", f"{what}: min ({lo}) is greater than max ({hi})")
        if min_len is not None and max_len is not None and min_len > max_len:
            self.err(n, "bad-range", f"{what}: min_length ({min_len}) is greater than max_length ({max_len})")

    # -- steps

    _KIND_KEYS = ("ask", "call", "flow", "set", "say", "end", "split")
    _STEP_KEYS: Mapping[str, tuple[str, ...]] = {
        "say": ("say", "next"),
        "ask": ("ask", "input", "save", "retries", "invalid", "on_fail", "timeout", "on_timeout", "next",
                "on_undeliverable"),
        "set": ("set", "next"),
        "call": ("call", "args", "save", "timeout", "on_error", "on_timeout", "next", "on_undeliverable"),
        "flow": ("flow", "args", "save", "on_fail", "next"),
        "end": ("end", "say", "next"),  # `next` is accepted here only to report it precisely
        "branch": ("next",),
        "split": ("split",),  # each variant says where it goes, so no `next`
    }

    def steps(self, n: _N | None) -> dict[str, Step] | None:
        if n is None:
            return None
        if not n.is_map:
            self.err(n, "wrong-type", f"`steps` must be a mapping of step name to step, got {_type_name(n.value)}")
            return None
        if not n.value:
            self.err(n, "missing-key", "`steps` is empty; a flow needs at least one step")
            return None
        out: dict[str, Step] = {}
        for key, (knode, vnode) in n.value.items():
            if self.name(knode, "step name") is None:
                continue
            step = self.step(key, knode, vnode)
            if step is None:
                # Too broken to build (already reported). A stand-in keeps the name known and
                # its `next` edges, so the rest of the flow gets no follow-up errors about it.
                step = EndStep(name=key, end="failed", next=self._broken_next.pop(key, ()), loc=self.loc(knode))
            out[key] = step
        return out

    def step(self, name: str, knode: _N, n: _N) -> Step | None:
        where = f"step {name!r}"
        if not n.is_map:
            self.err(n, "wrong-type", f"{where} must be a mapping, got {_type_name(n.value)}")
            return None
        keys = set(n.value)
        kinds = [k for k in self._KIND_KEYS if k in keys]
        if kinds == ["say", "end"] or kinds == ["end"]:
            kind = "end"
        elif kinds:
            kind = kinds[0]
            if len(kinds) > 1:
                extra = ", ".join(f"`{k}`" for k in kinds)
                self.err(knode, "conflicting-kinds", f"{where} has {extra}: a step does one thing (only `say` may go with `end`); split it into steps")
        elif "next" in keys:
            kind = "branch"
        else:
            self.err(knode, "dead-end", f"{where} does nothing: give it one of say, ask, set, call, flow, end, split, or a `next`")
            return None
        m = self.mapping(n, where, self._STEP_KEYS[kind])
        if m is None:
            return None
        locs: dict[str, Loc] = {k: self.loc(v) for k, v in m.items()}
        common: dict[str, Any] = {"name": name, "loc": self.loc(knode), "locs": locs, "next": self.next(m.get("next"), where)}
        self._broken_next[name] = common["next"]
        if kind == "end" and "next" in m:
            self.err(n.value["next"][0], "end-with-next", f"{where} ends the session, so `next` would never be followed; remove it")
            common["next"] = ()
        try:
            if kind == "say":
                msg = self.message(m["say"], f"`say` of {where}")
                step: Step | None = SayStep(say=msg, **common) if msg else None
            elif kind == "ask":
                step = self.ask_step(m, where, common)
            elif kind == "set":
                assign = self.assignments(m["set"], f"`set` of {where}", locs, "set")
                step = SetStep(assign=assign, **common)
            elif kind == "call":
                step = self.call_step(m, where, common)
            elif kind == "flow":
                step = self.flow_step(m, where, common)
            elif kind == "split":
                step = SplitStep(split=self.split_variants(m["split"], where, name), **common)
            elif kind == "end":
                end = self.choice(m.get("end"), f"`end` of {where}", END_KINDS) or "completed"
                say = self.message(m["say"], f"`say` of {where}") if "say" in m else None
                step = EndStep(end=end, say=say, **common)
            else:
                step = BranchStep(**common)
        except _Skip:
            return None
        if step is not None:
            self._broken_next.pop(name, None)
        return step

    def split_variants(self, n: _N, where: str, step: str) -> tuple[Variant, ...]:
        """``split: [{variant: short, weight: 50, goto: ask_a}, ...]``: at least two variants,
        unique names, positive whole weights (relative: 1 and 3 give 25% and 75%)."""
        if not n.is_list or len(n.value) < 2:
            got = f"{len(n.value)} variant(s)" if n.is_list else _type_name(n.value)
            self.err(n, "bad-split", f"`split` of {where} must list at least two variants "
                     f"(e.g. `- {{variant: a, weight: 50, goto: step_a}}`), got {got}")
            raise _Skip
        out: list[Variant] = []
        gotos: list[Branch] = []  # kept if the split is too broken to build: no follow-up "unreachable"
        for i, item in enumerate(n.value):
            m = self.mapping(item, f"variant {i + 1} of {where}", ["variant", "weight", "goto"],
                             required=["variant", "weight", "goto"])
            if m is None:
                continue
            goto = self.name(m.get("goto"), f"`goto` of variant {i + 1} of {where}")
            if goto is not None:
                gotos.append(Branch(goto=goto, loc=self.loc(m["goto"])))
            name = self.name(m.get("variant"), f"the name of variant {i + 1} of {where}")
            weight = self.integer(m.get("weight"), f"the weight of variant {i + 1} of {where}", lo=1, hi=1_000_000)
            if name is not None and any(v.name == name for v in out):
                self.err(m["variant"], "duplicate-variant", f"variant {name!r} appears twice in {where}; give each variant its own name")
                continue
            if name is not None and weight is not None and goto is not None:
                out.append(Variant(name=name, weight=weight, goto=goto, loc=self.loc(m["goto"])))
        if len(out) != len(n.value):
            self._broken_next[step] = tuple(gotos)
            raise _Skip  # each bad variant is reported above
        return tuple(out)

    def next(self, n: _N | None, where: str) -> tuple[Branch, ...]:
        if n is None:
            return ()
        if isinstance(n.value, str):
            goto = self.name(n, f"`next` of {where}")
            return (Branch(goto=goto, loc=self.loc(n)),) if goto else ()
        if not n.is_list or not n.value:
            self.err(n, "wrong-type", f"`next` of {where} must be a step name or a list of {{if, goto}}")
            return ()
        out: list[Branch] = []
        for i, item in enumerate(n.value):
            if isinstance(item.value, str):  # a bare name in the list is the default branch
                goto = self.name(item, f"`next` of {where}")
                if goto:
                    out.append(Branch(goto=goto, loc=self.loc(item)))
                continue
            m = self.mapping(item, f"branch {i + 1} of {where}", ["if", "goto"], required=["goto"])
            if m is None or "goto" not in m:
                continue
            goto = self.name(m["goto"], f"`goto` of {where}")
            cond = self.expr(m.get("if"), f"condition of branch {i + 1} of {where}") if "if" in m else None
            if "if" in m and cond is None:
                cond = _UNPARSED  # already reported; keep the branch conditional so no false follow-up errors
            if goto:
                out.append(
                    Branch(goto=goto, when=cond, loc=self.loc(m["goto"]), when_loc=self.loc(m["if"]) if "if" in m else self.loc(m["goto"]))
                )
        for i, b in enumerate(out):
            if b.when is None and i != len(out) - 1:
                self.err(b.loc, "unreachable-branch", f"in {where}, branch {i + 1} has no `if`, so the branches after it are never taken")
        if out and all(b.when is not None for b in out):
            self.err(n, "no-default-branch", f"`next` of {where} needs a last branch without `if` (e.g. `- goto: other_step`) so there is always a way on")
        return tuple(out)

    def message(self, n: _N, what: str) -> Message | None:
        if isinstance(n.value, str) or (isinstance(n.value, (int, float)) and not isinstance(n.value, bool)):
            t = self.template(n, what)
            return Message(text=t, loc=self.loc(n)) if t else None
        m = self.mapping(n, what, ["text", "buttons", "list", "template", "header", "footer", "media", "cta"])
        if m is None:
            return None
        text = self.template(m.get("text"), f"`text` of {what}")
        buttons = self.buttons(m.get("buttons"), what)
        menu = self.list_menu(m.get("list"), what)
        template = self.template_message(m.get("template"), what)
        media = self.media_ref(m.get("media"), what)
        cta = self.cta_button(m.get("cta"), what)
        if text is None and template is None and media is None and "text" not in m:
            self.err(n, "missing-key", f"{what} needs `text` (or `template` or `media`)")
            return None
        if buttons and menu:
            self.err(n, "bad-value", f"{what} has both `buttons` and `list`; WhatsApp shows one or the other")
        if cta is not None and (buttons or menu):
            self.err(m["cta"], "bad-value", f"{what} has `cta` and `{'buttons' if buttons else 'list'}`; WhatsApp shows one kind of button per message")
        if cta is not None and text is None:
            self.err(m["cta"], "missing-key", f"{what} has `cta` and needs `text` to show above the button")
        return Message(text=text, buttons=buttons, list=menu, template=template,
                       header=self.template(m.get("header"), f"`header` of {what}"),
                       footer=self.template(m.get("footer"), f"`footer` of {what}"),
                       media=media, cta=cta, loc=self.loc(n))

    def media_ref(self, n: _N | None, what: str) -> MediaRef | None:
        if n is None:
            return None
        m = self.mapping(n, f"`media` of {what}", ["type", "url", "id"], required=["type"])
        if m is None or "type" not in m:
            return None
        kind = self.choice(m["type"], f"the media type of {what}", MEDIA_KINDS)
        if ("url" in m) == ("id" in m):
            self.err(n, "missing-key", f"`media` of {what} needs exactly one of `url` (https) or `id` (an uploaded media id)")
            return None
        ref = self.text(m.get("url") or m.get("id"), "media `url`/`id`", allow_number=True)
        if "url" in m and ref is not None and not ref.startswith(("https://", "http://")):
            self.err(m["url"], "bad-value", f"media `url` of {what} must start with https://, got {ref!r}")
            return None
        return MediaRef(kind=kind, ref=ref) if kind and ref else None

    def cta_button(self, n: _N | None, what: str) -> CtaButton | None:
        if n is None:
            return None
        m = self.mapping(n, f"`cta` of {what}", ["text", "url"], required=["text", "url"])
        if m is None or "text" not in m or "url" not in m:
            return None
        label = self.text(m["text"], "`cta` button `text`")
        url = self.template(m["url"], f"`cta` url of {what}")
        if url is not None and not url.source.startswith(("https://", "http://")):
            self.err(m["url"], "bad-value", f"`cta` url of {what} must start with https://, got {url.source!r}")
            return None
        return CtaButton(text=label, url=url) if label and url else None

    def buttons(self, n: _N | None, what: str) -> tuple[Button, ...]:
        if n is None:
            return ()
        if not n.is_list:
            self.err(n, "wrong-type", f"`buttons` of {what} must be a list")
            return ()
        if len(n.value) > 3:
            self.err(n, "too-many", f"`buttons` of {what} has {len(n.value)} buttons; WhatsApp allows at most 3 (use `list` for up to 10)")
        out: list[Button] = []
        for item in n.value:
            if item.is_map:
                m = self.mapping(item, f"a button of {what}", ["id", "title"], required=["title"]) or {}
                title = self.text(m.get("title"), "button `title`", allow_number=True)
                bid = self.text(m.get("id"), "button `id`", allow_number=True) or title
            else:
                title = bid = self.text(item, f"a button of {what}", allow_number=True)
            if title and bid:
                if len(title) > 20:
                    self.err(item, "too-long", f"button title {title!r} is {len(title)} characters; WhatsApp allows 20")
                out.append(Button(id=bid, title=title))
        return tuple(out)

    def list_menu(self, n: _N | None, what: str) -> ListMenu | None:
        if n is None:
            return None
        m = self.mapping(n, f"`list` of {what}", ["button", "sections", "rows"], required=["button"])
        if m is None:
            return None
        button = self.text(m.get("button"), "list `button`") or "Choose"
        sections: list[ListSection] = []
        if "rows" in m:
            sections.append(ListSection(title="", rows=self.rows(m["rows"], what)))
        for s in (m["sections"].value if "sections" in m and m["sections"].is_list else []):
            sm = self.mapping(s, f"a list section of {what}", ["title", "rows"], required=["rows"]) or {}
            if "rows" in sm:
                sections.append(ListSection(title=self.text(sm.get("title"), "section `title`") or "", rows=self.rows(sm["rows"], what)))
        total = sum(len(s.rows) for s in sections)
        if total == 0:
            self.err(n, "missing-key", f"`list` of {what} needs `rows` or `sections` with rows")
        elif total > 10:
            self.err(n, "too-many", f"`list` of {what} has {total} rows; WhatsApp allows at most 10")
        return ListMenu(button=button, sections=tuple(sections))

    def rows(self, n: _N, what: str) -> tuple[ListRow, ...]:
        if not n.is_list:
            self.err(n, "wrong-type", f"list rows of {what} must be a list")
            return ()
        out = []
        for item in n.value:
            if item.is_map:
                m = self.mapping(item, f"a list row of {what}", ["id", "title", "description"], required=["title"]) or {}
                title = self.text(m.get("title"), "row `title`", allow_number=True)
                rid = self.text(m.get("id"), "row `id`", allow_number=True) or title
                desc = self.text(m.get("description"), "row `description`")
            else:
                title = rid = self.text(item, f"a list row of {what}", allow_number=True)
                desc = None
            if title and rid:
                if len(title) > 24:
                    self.err(item, "too-long", f"list row title {title!r} is {len(title)} characters; WhatsApp allows 24")
                out.append(ListRow(id=rid, title=title, description=desc))
        return tuple(out)

    def template_message(self, n: _N | None, what: str) -> TemplateMessage | None:
        if n is None:
            return None
        m = self.mapping(n, f"`template` of {what}", ["name", "language", "params"], required=["name"])
        if m is None or "name" not in m:
            return None
        params: list[Template] = []
        if "params" in m:
            if not m["params"].is_list:
                self.err(m["params"], "wrong-type", "template `params` must be a list of texts")
            else:
                params = [t for p in m["params"].value if (t := self.template(p, "a template parameter")) is not None]
        return TemplateMessage(
            name=self.text(m["name"], "template `name`") or "",
            language=self.text(m.get("language"), "template `language`") or "en_US",
            params=tuple(params),
        )

    def input_spec(self, n: _N | None, where: str) -> InputSpec | None:
        what = f"`input` of {where}"
        if n is None:
            return None
        if isinstance(n.value, str):
            typ = self.choice(n, what, INPUT_TYPES)
            if typ in ("choice", "regex"):
                need = "options" if typ == "choice" else "pattern"
                self.err(n, "missing-key", f"{what} of type {typ} needs `{need}`: write it as a mapping")
            return InputSpec(type=typ, loc=self.loc(n)) if typ else None
        m = self.mapping(n, what, ["type", "options", "min", "max", "min_length", "max_length", "pattern", "media"], required=["type"])
        if m is None or "type" not in m:
            return None
        typ = self.choice(m["type"], f"the type of {what}", INPUT_TYPES)
        if typ is None:
            return None
        lo: float | str | None
        hi: float | str | None
        if typ == "date":
            lo = self.iso_date(m.get("min"), f"`min` of {what}")
            hi = self.iso_date(m.get("max"), f"`max` of {what}")
        else:
            lo = self.number(m.get("min"), f"`min` of {what}")
            hi = self.number(m.get("max"), f"`max` of {what}")
        spec = InputSpec(
            type=typ,
            options=self.string_list(m.get("options"), f"`options` of {what}"),
            min=lo,
            max=hi,
            min_length=self.integer(m.get("min_length"), f"`min_length` of {what}", lo=0),
            max_length=self.integer(m.get("max_length"), f"`max_length` of {what}", lo=1),
            pattern=self.pattern(m.get("pattern"), f"`pattern` of {what}"),
            media=self.string_list(m.get("media"), f"`media` of {what}"),
            loc=self.loc(n),
        )
        self.check_range(n, what, spec.min, spec.max, spec.min_length, spec.max_length)
        if typ == "choice" and not spec.options and "options" not in m:
            self.err(n, "missing-key", f"{what} has type choice and needs `options`")
        if typ == "regex" and not spec.pattern and "pattern" not in m:
            self.err(n, "missing-key", f"{what} has type regex and needs `pattern`")
        if spec.options is not None and typ != "choice":
            self.err(m["options"], "bad-value", f"`options` only applies to choice inputs, not {typ}")
        if (lo is not None or hi is not None) and typ not in ("int", "number", "date"):
            self.err(n, "bad-value", f"`min`/`max` only apply to int, number and date inputs, not {typ}")
        if spec.media is not None:
            if typ != "media":
                self.err(m["media"], "bad-value", f"`media` only applies to media inputs, not {typ}")
            for kind in spec.media:
                if kind not in MEDIA_KINDS:
                    self.err(m["media"], "bad-value", f"unknown media kind {kind!r} (allowed: {', '.join(MEDIA_KINDS)})")
        return spec

    def iso_date(self, n: _N | None, what: str) -> str | None:
        if n is None:
            return None
        if isinstance(n.value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", n.value):
            return n.value
        self.err(n, "wrong-type", f"{what} must be a date written YYYY-MM-DD")
        return None

    def ask_step(self, m: dict[str, _N], where: str, common: dict[str, Any]) -> AskStep:
        msg = self.message(m["ask"], f"`ask` of {where}")
        if "input" not in m:
            self.err(common["loc"], "missing-key", f"{where} asks a question and needs `input` (e.g. `input: {{type: text}}`)")
            raise _Skip
        spec = self.input_spec(m["input"], where)
        if msg is None or spec is None:
            raise _Skip
        node = m["input"]
        options = node.value.get("options") if node.is_map else None
        if options is not None and options[1].is_list:
            for opt in options[1].value:  # so a problem with one option points at it
                common["locs"].setdefault(f"input.options.{opt.value}", self.loc(opt))
        if not common["next"]:
            self.err(common["loc"], "dead-end", f"{where} has no `next`: where does the conversation go after a valid answer?")
        retries = self.integer(m.get("retries"), f"`retries` of {where}", lo=0, hi=100) if "retries" in m else 2
        return AskStep(
            ask=msg,
            input=spec,
            save=self.name(m.get("save"), f"`save` of {where}"),
            retries=2 if retries is None else retries,  # (None: an error was recorded; the flow will not load)
            invalid=self.template(m.get("invalid"), f"`invalid` of {where}"),
            on_fail=self.name(m.get("on_fail"), f"`on_fail` of {where}"),
            timeout=self.duration(m.get("timeout"), f"`timeout` of {where}"),
            on_timeout=self.name(m.get("on_timeout"), f"`on_timeout` of {where}"),
            on_undeliverable=self.name(m.get("on_undeliverable"), f"`on_undeliverable` of {where}"),
            **common,
        )

    def call_step(self, m: dict[str, _N], where: str, common: dict[str, Any]) -> CallStep:
        service = self.text(m["call"], f"`call` of {where}")
        if service is not None and not _SERVICE.match(service):
            self.err(m["call"], "bad-name", f"`call` of {where}: {service!r} is not a service name like `orders.create`")
            service = None
        if not common["next"]:
            self.err(common["loc"], "dead-end", f"{where} has no `next`: where does the conversation go after the call succeeds?")
        timeout = self.duration(m.get("timeout"), f"`timeout` of {where}")
        if service is None:
            raise _Skip
        return CallStep(
            call=service,
            args=self.assignments(m["args"], f"`args` of {where}", common["locs"], "args", names_are_slots=False) if "args" in m else (),
            save=self.name(m.get("save"), f"`save` of {where}"),
            timeout=timeout if timeout is not None else 10.0,
            on_error=self.name(m.get("on_error"), f"`on_error` of {where}"),
            on_timeout=self.name(m.get("on_timeout"), f"`on_timeout` of {where}"),
            on_undeliverable=self.name(m.get("on_undeliverable"), f"`on_undeliverable` of {where}"),
            **common,
        )

    def flow_step(self, m: dict[str, _N], where: str, common: dict[str, Any]) -> FlowStep:
        sub = self.name(m["flow"], f"`flow` of {where}")
        if not common["next"]:
            self.err(common["loc"], "dead-end", f"{where} has no `next`: where does the conversation go when the sub-flow returns?")
        save: list[tuple[str, str]] = []
        if "save" in m:
            s = m["save"]
            if isinstance(s.value, str):
                save = [(s.value, s.value)]
            elif s.is_list:
                save = [(v, v) for v in (self.text(x, f"`save` of {where}") for x in s.value) if v]
            elif s.is_map:
                for key, (knode, vnode) in s.value.items():
                    child = self.name(vnode, f"`save.{key}` of {where}")
                    common["locs"][f"save.{key}"] = self.loc(knode)
                    if child:
                        save.append((key, child))
            else:
                self.err(s, "wrong-type", f"`save` of {where} must map this flow's slots to the sub-flow's slots")
        if sub is None:
            raise _Skip
        return FlowStep(
            flow=sub,
            args=self.assignments(m["args"], f"`args` of {where}", common["locs"], "args", names_are_slots=False) if "args" in m else (),
            save=tuple(save),
            on_fail=self.name(m.get("on_fail"), f"`on_fail` of {where}"),
            **common,
        )

    def assignments(
        self, n: _N, what: str, locs: dict[str, Loc], prefix: str, names_are_slots: bool = True
    ) -> tuple[tuple[str, Expr], ...]:
        if not n.is_map or not n.value:
            self.err(n, "wrong-type", f"{what} must be a mapping of name to expression")
            return ()
        out = []
        for key, (knode, vnode) in n.value.items():
            if self.name(knode, f"a name in {what}") is None:
                continue
            locs[f"{prefix}.{key}"] = self.loc(knode)
            locs[f"{prefix}.{key}.value"] = self.loc(vnode)
            e = self.expr(vnode, f"`{key}` in {what}")
            if e is not None:
                out.append((key, e))
        return tuple(out)


_UNPARSED = parse_expr("false")


class _Skip(Exception):
    """A step too broken to build; its problems are already recorded."""


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

