"""WhatsApp Cloud API limits on what each step can send, checked at load time.

The check does not restate the limits: it builds each step's reply with the engine's own
:func:`~flowkit.engine.transition.build_reply` and turns it into the ``/messages`` body with
the channel's own builders (:func:`~flowkit.runtime.channel.reply_payload`), which refuse
whatever Graph refuses. A flow that passes therefore never sends a body the builders (and the
Graph API imitation, which checks the same limits from the other side) refuse.

Templated texts are rendered twice. With every placeholder as one character, a refusal is
an error: no value can fix it. With every placeholder at its longest, a refusal is a
warning. A placeholder's longest rendering comes from the slot it reads (``max_length``,
the longest ``option``, the digits of ``min``/``max``, the fixed size of dates and booleans);
any other placeholder (``profile.name``, a computed expression, a text slot without
``max_length``) is *unbounded*, which is a warning too. At runtime the channel shortens an
overlong rendered text with "…" rather than letting Graph refuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flowkit.errors import ChannelError, Problem
from flowkit.flow.expr import Expr
from flowkit.flow.model import AskStep, BotMessage, EndStep, Flow, Loc, SayStep, SlotSpec, Step
from flowkit.flow.template import Template

# What a value of each fixed-size slot type reads as in a message (format_value).
_FIXED = {"bool": 3, "date": 10, "phone": 16, "email": 254}
_MAX_DIGITS = 30  # the engine reads at most 30 digits as a number
_FLOAT_REPR = 24  # the longest repr() of a float, e.g. -2.2250738585072014e-308

# The loader reports these itself, pointing at the offending item; not reported twice.
_LOADER_BUTTONS, _LOADER_TITLE, _LOADER_ROWS, _LOADER_ROW_TITLE = 3, 20, 10, 24


def slot_bound(slot: SlotSpec | None) -> int | None:
    """The most characters a value of ``slot`` can take in a message; None if unbounded."""
    if slot is None:
        return None
    if slot.max_length is not None:
        return slot.max_length
    if slot.type == "choice" and slot.options:
        return max(len(o) for o in slot.options)
    if slot.type in _FIXED:
        return _FIXED[slot.type]
    if slot.type == "int":
        if slot.min is not None and slot.max is not None:
            return max(len(str(int(slot.min))), len(str(int(slot.max))))
        return _MAX_DIGITS + 1
    if slot.type == "number":
        return _FLOAT_REPR
    return None


def _bound(expr: Expr, flow: Flow) -> int | None:
    name = expr.source.strip()
    return slot_bound(flow.slots.get(name)) if name.isascii() and name.isidentifier() else None


def _renderer(flow: Flow, longest: bool, unbounded: list[str]) -> Callable[[Template | None, str], str | None]:
    """``render`` for build_reply: each placeholder as 1 character, or at its longest."""

    def render(template: Template | None, where: str) -> str | None:
        if template is None:
            return None
        out: list[str] = []
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            bound = _bound(part, flow)
            if bound is None and longest:
                unbounded.append(part.source.strip())
            out.append("x" * (bound if longest and bound is not None else 1))
        return "".join(out)

    return render


def _messages(flow: Flow, step: Step) -> Iterator[tuple[BotMessage, str, AskStep | None]]:
    """Each message a step can send: (message, the key it was written under, the ask step)."""
    from flowkit.engine.inputs import DEFAULT_INVALID
    from flowkit.flow.model import BotMessage as Say

    if isinstance(step, (SayStep, EndStep)) and step.say is not None:
        yield step.say, "say", None
    if isinstance(step, AskStep):
        yield step.ask, "ask", step
        # the re-prompt after an invalid answer: its own text (or the longest default
        # apology before the question) with the question's buttons or list
        if step.invalid is not None:
            text = step.invalid
        else:
            prefix = max(DEFAULT_INVALID.values(), key=len) + " "
            parts = (prefix, *step.ask.text.parts) if step.ask.text is not None else (prefix,)
            text = Template(prefix + (step.ask.text.source if step.ask.text else ""), parts)
        yield Say(text=text, buttons=step.ask.buttons, menu=step.ask.menu), "invalid" if step.invalid else "ask", step


def _loader_reported(msg: BotMessage) -> bool:
    rows = [r for s in msg.menu.sections for r in s.rows] if msg.menu else []
    return (len(msg.buttons) > _LOADER_BUTTONS or any(len(b.title) > _LOADER_TITLE for b in msg.buttons)
            or len(rows) > _LOADER_ROWS or any(len(r.title) > _LOADER_ROW_TITLE for r in rows))


def check_limits(flow: Flow) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) about what the flow's steps would send to WhatsApp."""
    from flowkit.engine.transition import build_reply
    from flowkit.runtime.channel import reply_payload

    errors: list[Problem] = []
    warnings: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    failed: set[str] = set()
    items: list[tuple[str, Step | None, tuple[BotMessage, str, AskStep | None]]] = [
        (name, step, m) for name, step in flow.steps.items() for m in _messages(flow, step)]
    if flow.help is not None:  # the answer to the `help` command is a plain text reply
        items.insert(0, ("", None, (BotMessage(text=flow.help), "help", None)))
    for name, step, (msg, key, ask) in items:
        if _loader_reported(msg) or (key != "say" and name in failed):
            continue  # reported already (by the loader, or for the question the re-prompt repeats)
        loc: Loc = step.loc_of(key) if step is not None else flow.loc
        where = f"`{key}` of step {name!r}" if step is not None else f"`help` of flow {flow.name!r}"
        try:
            reply_payload("0", build_reply(msg, _renderer(flow, False, []), key, ask), fit=False)
        except ChannelError as exc:
            if name not in failed:
                failed.add(name)
                errors.append(Problem(loc.file, loc.line, loc.column, "whatsapp-limit",
                                      f"{where}: {exc}; WhatsApp would refuse this message"))
            continue
        unbounded: list[str] = []
        try:
            reply_payload("0", build_reply(msg, _renderer(flow, True, unbounded), key, ask), fit=False)
        except ChannelError as exc:
            warnings.append(Problem(loc.file, loc.line, loc.column, "may-exceed-limit",
                                    f"{where} at its longest (every slot at its max length): {exc}; "
                                    "it would be shortened with '…' when sent"))
            continue
        fresh = [e for e in dict.fromkeys(unbounded) if (name, e) not in seen]
        if fresh:
            seen.update((name, e) for e in fresh)
            shown = ", ".join(f"{{{{ {e} }}}}" for e in fresh)
            warnings.append(Problem(loc.file, loc.line, loc.column, "unbounded-text",
                                    f"{where} shows {shown}, with no maximum length; a value too long for "
                                    "WhatsApp is shortened with '…' (give the slot a `max_length` to be sure)"))
    return errors, warnings
