"""Checks on a parsed flow that need the whole model: targets, graph shape, slots, inputs.

Like python-statemachine's definition-time checks, a flow that could strand a user
(unreachable steps, dead ends, loops without exit) never loads.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

import networkx as nx

from flowkit.errors import Problem
from flowkit.flow import graph
from flowkit.flow.expr import Expr
from flowkit.flow.limits import check_limits
from flowkit.flow.model import (
    BUILTIN_NAMES,
    AskStep,
    CallStep,
    EndStep,
    Flow,
    FlowStep,
    InputSpec,
    Loc,
    SayStep,
    SetStep,
    SlotSpec,
    SplitStep,
    Step,
)
from flowkit.flow.template import Template

# Which slot types can hold what an input type produces.
_INPUT_FITS: Mapping[str, frozenset[str]] = {
    "text": frozenset({"text"}),
    "regex": frozenset({"text"}),
    "int": frozenset({"int", "number"}),
    "number": frozenset({"number"}),
    "choice": frozenset({"choice", "text"}),
    "yes_no": frozenset({"bool"}),
    "email": frozenset({"email", "text"}),
    "phone": frozenset({"phone", "text"}),
    "date": frozenset({"date", "text"}),
    "location": frozenset({"location"}),
    "media": frozenset({"media"}),
}


def _problem(loc: Loc, code: str, message: str) -> Problem:
    return Problem(loc.file, loc.line, loc.column, code, message)


def _hint(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def validate_flow(flow: Flow) -> list[Problem]:
    """Every problem of one flow (targets, reachability, dead ends, slots, inputs)."""
    problems = _targets(flow)
    problems += _shape(flow)
    problems += _slots(flow)
    problems += check_limits(flow)[0]
    return problems


def flow_warnings(flow: Flow) -> list[Problem]:
    """What lint warns about but still loads: texts that may be too long for WhatsApp once
    their placeholders are filled in (they are shortened with "…" when sent)."""
    return check_limits(flow)[1]


def _targets(flow: Flow) -> list[Problem]:
    out = []
    if flow.start not in flow.steps:
        out.append(_problem(flow.loc, "unknown-target", f"start step {flow.start!r} does not exist{_hint(flow.start, flow.steps)}"))
    for name, step in flow.steps.items():
        for b in step.next:
            if b.goto not in flow.steps:
                out.append(_problem(b.loc, "unknown-target", f"step {name!r} goes to {b.goto!r}, which does not exist{_hint(b.goto, flow.steps)}"))
        for v in step.split if isinstance(step, SplitStep) else ():
            if v.goto not in flow.steps:
                out.append(_problem(v.loc, "unknown-target", f"variant {v.name!r} of step {name!r} goes to {v.goto!r}, which does not exist{_hint(v.goto, flow.steps)}"))
        for attr in ("on_fail", "on_error", "on_timeout", "on_undeliverable"):
            target = getattr(step, attr, None)
            if target and target not in flow.steps:
                out.append(
                    _problem(step.loc_of(attr), "unknown-target", f"`{attr}` of step {name!r} goes to {target!r}, which does not exist{_hint(target, flow.steps)}")
                )
    if flow.handoff is not None and flow.handoff.on_timeout not in flow.steps:
        out.append(_problem(flow.loc, "unknown-target", f"`handoff.on_timeout` goes to {flow.handoff.on_timeout!r}, which "
                            f"does not exist{_hint(flow.handoff.on_timeout, flow.steps)}"))
    return out


def _shape(flow: Flow) -> list[Problem]:
    if flow.start not in flow.steps:
        return []
    out = []
    for name in graph.unreachable(flow):
        out.append(_problem(flow.steps[name].loc, "unreachable", f"step {name!r} can never be reached from the start step {flow.start!r}"))
    if not graph.end_steps(flow):
        out.append(_problem(flow.loc, "dead-end", f"flow {flow.name!r} has no end step (`end: completed`), so no session can ever finish"))
        return out
    # A step with a target that does not exist is already reported; it would lead somewhere
    # once fixed, so neither it nor the steps leading to it are called dead ends.
    g = graph.to_networkx(flow)
    unsure: set[str] = set()
    for name, step in flow.steps.items():
        if any(t not in flow.steps for _, t in step.targets()):
            unsure |= {name} | nx.ancestors(g, name)
    # Waiting steps without `next` are reported by the loader ("where does it go after...").
    no_next = {n for n, s in flow.steps.items() if isinstance(s, (AskStep, CallStep, FlowStep)) and not s.next}
    loops = [loop for loop in graph.loops_without_exit(flow) if not set(loop) & unsure]
    in_loop = {n for loop in loops for n in loop}
    for loop in loops:
        cycle = " -> ".join([*loop, loop[0]])
        first = flow.steps[loop[0]]
        out.append(_problem(first.loc, "no-exit-loop", f"steps {cycle} form a loop with no way to an end step; add an exit (e.g. `on_fail` or a branch to an end)"))
    for name in graph.dead_ends(flow):
        if name in in_loop or name in unsure or name in no_next:
            continue
        step = flow.steps[name]
        out.append(_problem(step.loc, "dead-end", f"step {name!r} has no path to an end step; the session would be stuck there"))
    return out


def _located(step: Step) -> list[tuple[Expr | Template, Loc, str]]:
    """Every expression and template of a step, with where it was written and what it is."""
    items: list[tuple[Expr | Template, Loc, str]] = []
    if isinstance(step, (SayStep, EndStep)) and step.say is not None:
        items += [(t, step.loc_of("say"), "`say`") for t in step.say.templates()]
    if isinstance(step, AskStep):
        items += [(t, step.loc_of("ask"), "`ask`") for t in step.ask.templates()]
        if step.invalid is not None:
            items.append((step.invalid, step.loc_of("invalid"), "`invalid`"))
    if isinstance(step, SetStep):
        items += [(e, step.loc_of(f"set.{k}.value"), f"`set.{k}`") for k, e in step.assign]
    if isinstance(step, (CallStep, FlowStep)):
        items += [(e, step.loc_of(f"args.{k}.value"), f"`args.{k}`") for k, e in step.args]
    items += [(b.when, b.when_loc, "condition") for b in step.next if b.when is not None]
    return items


def _unknown_names(item: Expr | Template, known: set[str]) -> list[tuple[str, int]]:
    """Names ``item`` reads that are not known, with their offset, in order of appearance."""
    return sorted(((n, pos) for n, pos in item.name_positions().items() if n not in known), key=lambda x: x[1])


def _at(item: Expr | Template, offset: int, fallback: Loc) -> Loc:
    """Where the character at ``offset`` of ``item`` was written (the fallback if unknown)."""
    if item.span is None:
        return fallback
    line, column = item.span.at(offset)
    return Loc(fallback.file, line, column)


def _slots(flow: Flow) -> list[Problem]:
    """Every slot a flow reads or saves into is declared, what an ask saves fits its slot, and
    no slot takes a built-in name (``profile`` is the user's WhatsApp profile, a mapping)."""
    known = set(flow.slots) | BUILTIN_NAMES
    out = [_problem(spec.loc, "reserved-slot", f"slot {name!r} has the name of a built-in "
                    f"({', '.join(sorted(BUILTIN_NAMES))}), which expressions and templates read; rename it")
           for name, spec in flow.slots.items() if name in BUILTIN_NAMES]
    if flow.help is not None:
        for n, pos in _unknown_names(flow.help, known):
            out.append(_problem(_at(flow.help, pos, flow.loc), "unknown-slot", f"`help` uses {n!r}, which is not a slot{_hint(n, known)}"))
    for name, step in flow.steps.items():
        out += _unknown_reads(name, step, known)
        out += _unknown_saves(flow, name, step)
        if isinstance(step, AskStep) and step.save is not None and step.save in flow.slots:
            out += _input_fits(step, step.input, flow.slots[step.save])
    return out


def _unknown_reads(name: str, step: Step, known: set[str]) -> list[Problem]:
    """Names a step's texts and expressions use that are neither slots nor built-ins."""
    return [
        _problem(_at(item, pos, loc), "unknown-slot", f"{what} of step {name!r} uses {n!r}, which is not a slot; declare it under `slots:`{_hint(n, known)}")
        for item, loc, what in _located(step) for n, pos in _unknown_names(item, known)
    ]


def _save_targets(step: Step) -> list[tuple[str, str]]:
    """(slot, the key that names it) for every slot ``step`` writes."""
    targets: list[tuple[str, str]] = []
    if isinstance(step, (AskStep, CallStep)) and step.save:
        targets.append((step.save, "save"))
    if isinstance(step, SetStep):
        targets += [(k, f"set.{k}") for k, _ in step.assign]
    if isinstance(step, FlowStep):
        targets += [(parent, f"save.{parent}") for parent, _ in step.save]
    return targets


def _unknown_saves(flow: Flow, name: str, step: Step) -> list[Problem]:
    return [
        _problem(step.loc_of(key), "unknown-slot", f"step {name!r} saves into {slot!r}, which is not a slot; declare it under `slots:`{_hint(slot, flow.slots)}")
        for slot, key in _save_targets(step) if slot not in flow.slots
    ]


def _input_fits(step: AskStep, spec: InputSpec, slot: SlotSpec) -> list[Problem]:
    loc = step.loc_of("input")
    where = f"step {step.name!r}"
    if slot.type == "any":
        return []
    if slot.type not in _INPUT_FITS[spec.type]:
        return [
            _problem(loc, "input-contradicts-slot", f"{where} reads a {spec.type} input but saves it into slot {slot.name!r} of type {slot.type}")
        ]
    out = []
    if spec.type == "choice" and slot.options is not None and spec.options is not None:
        extra = [o for o in spec.options if o not in slot.options]
        if extra:
            out.append(
                _problem(step.loc_of(f"input.options.{extra[0]}"), "input-contradicts-slot", f"{where} offers {', '.join(map(repr, extra))}, which slot {slot.name!r} does not allow (options: {', '.join(slot.options)})")
            )
    if spec.type in ("int", "number"):
        lo, hi = spec.min, spec.max
        if (lo is not None and slot.max is not None and float(lo) > slot.max) or (
            hi is not None and slot.min is not None and float(hi) < slot.min
        ):
            out.append(
                _problem(loc, "input-contradicts-slot", f"{where} accepts {lo}..{hi} but slot {slot.name!r} only allows {slot.min}..{slot.max}: no answer could be saved")
            )
    return out


def validate_flow_set(flows: Mapping[str, Flow]) -> list[Problem]:
    """Checks across flows loaded together: sub-flow references, recursion, shared triggers."""
    out = _shared_triggers(flows)
    for flow in flows.values():
        for name, step in flow.steps.items():
            if isinstance(step, FlowStep):
                out += _subflow_call(flows, name, step)
    return out + _recursion(flows)


def _shared_triggers(flows: Mapping[str, Flow]) -> list[Problem]:
    out = []
    by_trigger: dict[str, Flow] = {}
    for flow in flows.values():
        for t in flow.triggers:
            if t in by_trigger:
                out.append(_problem(flow.loc, "duplicate-trigger", f"trigger {t!r} of flow {flow.name!r} already starts flow {by_trigger[t].name!r}"))
            else:
                by_trigger[t] = flow
    return out


def _subflow_call(flows: Mapping[str, Flow], name: str, step: FlowStep) -> list[Problem]:
    """The sub-flow a step runs is loaded, and the slots it passes and reads back are the sub-flow's."""
    child = flows.get(step.flow)
    if child is None:
        return [_problem(step.loc_of("flow"), "unknown-flow", f"step {name!r} runs sub-flow {step.flow!r}, which is not loaded; pass its file too{_hint(step.flow, flows)}")]
    out = [_problem(step.loc_of(f"args.{k}"), "unknown-slot", f"step {name!r} passes {k!r}, which is not a slot of sub-flow {child.name!r}")
           for k, _ in step.args if k not in child.slots]
    out += [_problem(step.loc_of("save"), "unknown-slot", f"step {name!r} reads {c!r} back, which is not a slot of sub-flow {child.name!r}")
            for _, c in step.save if c not in child.slots]
    return out


def _recursion(flows: Mapping[str, Flow]) -> list[Problem]:
    """A flow that (transitively) runs itself would grow the stack without bound."""
    calls = {f.name: {s.flow for s in f.steps.values() if isinstance(s, FlowStep) and s.flow in flows} for f in flows.values()}
    out = []
    for name in calls:
        seen: set[str] = set()
        todo = list(calls[name])
        while todo:
            cur = todo.pop()
            if cur == name:
                out.append(_problem(flows[name].loc, "recursive-subflow", f"flow {name!r} runs itself through its sub-flows; break the cycle"))
                break
            if cur not in seen:
                seen.add(cur)
                todo.extend(calls.get(cur, ()))
    return out
