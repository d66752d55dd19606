"""Reading the steps of a flow file: which kind each step is, its keys, its ``next``
branches, its input spec and the fields of each kind, into the step classes of the model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkit.flow.expr import Expr, parse_expr
from flowkit.flow.model import (
    END_KINDS,
    INPUT_TYPES,
    MEDIA_KINDS,
    AskStep,
    Branch,
    BranchStep,
    CallStep,
    EndStep,
    FlowStep,
    InputSpec,
    Loc,
    SayStep,
    SetStep,
    SplitStep,
    Step,
    Variant,
)
from flowkit.flow.parse_messages import MessageParser
from flowkit.flow.parse_values import SERVICE_NAME as _SERVICE
from flowkit.flow.reader import Node as _N
from flowkit.flow.reader import type_name as _type_name


class StepParser(MessageParser):
    """Reads steps; the flow parser (flowkit/flow/loader.py) builds on it."""

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
        kind = self.step_kind(set(n.value), knode, where)
        if kind is None:
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
            step = self.build_step(kind, m, where, common)
        except _Skip:
            return None
        if step is not None:
            self._broken_next.pop(name, None)
        return step

    def step_kind(self, keys: set[str], knode: _N, where: str) -> str | None:
        """The kind a step's keys say it is (``None``: none, reported)."""
        kinds = [k for k in self._KIND_KEYS if k in keys]
        if kinds == ["say", "end"] or kinds == ["end"]:
            return "end"
        if kinds:
            if len(kinds) > 1:
                extra = ", ".join(f"`{k}`" for k in kinds)
                self.err(knode, "conflicting-kinds", f"{where} has {extra}: a step does one thing (only `say` may go with `end`); split it into steps")
            return kinds[0]
        if "next" in keys:
            return "branch"
        self.err(knode, "dead-end", f"{where} does nothing: give it one of say, ask, set, call, flow, end, split, or a `next`")
        return None

    def build_step(self, kind: str, m: dict[str, _N], where: str, common: dict[str, Any]) -> Step | None:
        """The step of ``kind`` from its keys ``m``; raises :class:`_Skip` when it is too broken to build."""
        if kind == "say":
            msg = self.message(m["say"], f"`say` of {where}")
            return SayStep(say=msg, **common) if msg else None
        if kind == "ask":
            return self.ask_step(m, where, common)
        if kind == "set":
            return SetStep(assign=self.assignments(m["set"], f"`set` of {where}", common["locs"], "set"), **common)
        if kind == "call":
            return self.call_step(m, where, common)
        if kind == "flow":
            return self.flow_step(m, where, common)
        if kind == "split":
            return SplitStep(split=self.split_variants(m["split"], where, common["name"]), **common)
        if kind == "end":
            end = self.choice(m.get("end"), f"`end` of {where}", END_KINDS) or "completed"
            say = self.message(m["say"], f"`say` of {where}") if "say" in m else None
            return EndStep(end=end, say=say, **common)
        return BranchStep(**common)

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
        out = [b for i, item in enumerate(n.value) if (b := self.branch(item, i, where)) is not None]
        for i, b in enumerate(out):
            if b.when is None and i != len(out) - 1:
                self.err(b.loc, "unreachable-branch", f"in {where}, branch {i + 1} has no `if`, so the branches after it are never taken")
        if out and all(b.when is not None for b in out):
            self.err(n, "no-default-branch", f"`next` of {where} needs a last branch without `if` (e.g. `- goto: other_step`) so there is always a way on")
        return tuple(out)

    def branch(self, item: _N, i: int, where: str) -> Branch | None:
        """Item ``i`` of a ``next`` list: a bare step name (the default) or ``{if, goto}``."""
        if isinstance(item.value, str):  # a bare name in the list is the default branch
            goto = self.name(item, f"`next` of {where}")
            return Branch(goto=goto, loc=self.loc(item)) if goto else None
        m = self.mapping(item, f"branch {i + 1} of {where}", ["if", "goto"], required=["goto"])
        if m is None or "goto" not in m:
            return None
        goto = self.name(m["goto"], f"`goto` of {where}")
        cond = self.expr(m.get("if"), f"condition of branch {i + 1} of {where}") if "if" in m else None
        if "if" in m and cond is None:
            cond = _UNPARSED  # already reported; keep the branch conditional so no false follow-up errors
        if not goto:
            return None
        return Branch(goto=goto, when=cond, loc=self.loc(m["goto"]), when_loc=self.loc(m["if"]) if "if" in m else self.loc(m["goto"]))

    def input_spec(self, n: _N | None, where: str) -> InputSpec | None:
        what = f"`input` of {where}"
        if n is None:
            return None
        if isinstance(n.value, str):
            return self.input_shorthand(n, what)
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
        self.check_input_keys(n, m, what, spec)
        return spec

    def input_shorthand(self, n: _N, what: str) -> InputSpec | None:
        """``input: text``: a type alone (choice and regex need more, so a mapping)."""
        typ = self.choice(n, what, INPUT_TYPES)
        if typ in ("choice", "regex"):
            need = "options" if typ == "choice" else "pattern"
            self.err(n, "missing-key", f"{what} of type {typ} needs `{need}`: write it as a mapping")
        return InputSpec(type=typ, loc=self.loc(n)) if typ else None

    def check_input_keys(self, n: _N, m: dict[str, _N], what: str, spec: InputSpec) -> None:
        """The keys an input of ``spec.type`` needs, and those that do not apply to it."""
        typ = spec.type
        if typ == "choice" and not spec.options and "options" not in m:
            self.err(n, "missing-key", f"{what} has type choice and needs `options`")
        if typ == "regex" and not spec.pattern and "pattern" not in m:
            self.err(n, "missing-key", f"{what} has type regex and needs `pattern`")
        if spec.options is not None and typ != "choice":
            self.err(m["options"], "bad-value", f"`options` only applies to choice inputs, not {typ}")
        if (spec.min is not None or spec.max is not None) and typ not in ("int", "number", "date"):
            self.err(n, "bad-value", f"`min`/`max` only apply to int, number and date inputs, not {typ}")
        if spec.media is not None:
            if typ != "media":
                self.err(m["media"], "bad-value", f"`media` only applies to media inputs, not {typ}")
            for kind in spec.media:
                if kind not in MEDIA_KINDS:
                    self.err(m["media"], "bad-value", f"unknown media kind {kind!r} (allowed: {', '.join(MEDIA_KINDS)})")

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

