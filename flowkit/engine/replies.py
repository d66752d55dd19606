"""What the bot says: the Reply effect of a flow message (:func:`build_reply`), the menu a
choice question's options become, and the engine's own fixed texts (cancelled, expired,
busy, no way back, help)."""

from __future__ import annotations

from collections.abc import Callable

from flowkit.engine.events import Reply
from flowkit.flow.model import AskStep, Flow
from flowkit.flow.model import BotMessage as Say
from flowkit.flow.template import Template

CANCELLED_TEXT = "OK, I've cancelled this. Send a message any time to start again."
EXPIRED_TEXT = "This conversation has ended after a period of inactivity. Send a message to start again."
NO_BACK_TEXT = "There's no earlier question to go back to."
BUSY_TEXT = "One moment please, I'm still working on your request."


def build_reply(msg: Say, render: Callable[[Template | None, str], str | None], where: str,
                extra: AskStep | None = None) -> Reply:
    """The Reply effect for ``msg``; ``extra`` (an ask step) adds buttons or a list for its options."""
    text = render(msg.text, where)
    template = None
    if msg.template is not None:
        params = tuple(render(p, f"{where} template") or "" for p in msg.template.params)
        template = (msg.template.name, msg.template.language, params)
    buttons = tuple((b.id, b.title) for b in msg.buttons)
    list_button = msg.menu.button if msg.menu else None
    sections = tuple(
        (s.title, tuple((r.id, r.title, r.description) for r in s.rows)) for s in msg.menu.sections
    ) if msg.menu else ()
    location_request = False
    if extra is not None and not buttons and not sections and template is None and msg.cta is None:
        spec = extra.input
        if spec.type == "yes_no":
            buttons = (("yes", "Yes"), ("no", "No"))
        elif spec.type == "choice" and spec.options:
            text, buttons, list_button, sections = option_menu(text, spec.options)
        elif spec.type == "location" and msg.media is None:
            location_request = True
    cta = (msg.cta.text, render(msg.cta.url, f"{where} cta") or "") if msg.cta is not None else None
    return Reply(text=text, buttons=buttons, list_button=list_button, sections=sections, template=template,
                 header=render(msg.header, f"{where} header"), footer=render(msg.footer, f"{where} footer"),
                 media=(msg.media.kind, msg.media.ref) if msg.media is not None else None, cta=cta,
                 location_request=location_request)


# WhatsApp's limits on what options become (the channel's builders enforce them again).
_BUTTON_TITLE, _BUTTON_ID, _ROW_TITLE, _ROW_ID = 20, 256, 24, 200


def option_menu(text: str | None, options: tuple[str, ...]) -> tuple[
        str | None, tuple[tuple[str, str], ...], str | None, tuple[tuple[str, tuple[tuple[str, str, None], ...]], ...]]:
    """(text, buttons, list button, sections) offering ``options``: buttons when at most 3 fit
    whole, a list when at most 10 fit whole, else numbered lines under the text. Labels are
    never cut: two options cut to the same title could not be told apart."""
    if len(options) <= 3 and all(len(o) <= _BUTTON_TITLE and len(o) <= _BUTTON_ID for o in options):
        return text, tuple((o, o) for o in options), None, ()
    if len(options) <= 10 and all(len(o) <= _ROW_TITLE and len(o) <= _ROW_ID for o in options):
        return text, (), "Choose", (("", tuple((o, o, None) for o in options)),)
    lines = "\n".join(f"{i}) {o}" for i, o in enumerate(options, 1))
    return ((text + "\n" + lines) if text else lines), (), None, ()


def static_text(template: Template | None, where: str) -> str | None:
    """``render`` for messages whose templates are all static."""
    return None if template is None else template.source


def default_help(flow: Flow) -> str:
    """The reply to ``help`` when the flow says nothing of its own."""
    words = [f"'{getattr(flow.commands, n)[0]}'" for n in ("back", "restart", "cancel") if getattr(flow.commands, n)]
    return "Please answer the question above." + (f" You can also say {', '.join(words)}." if words else "")
