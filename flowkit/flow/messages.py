"""What the bot says (:class:`BotMessage`) and its parts: reply buttons, list menus, templates,
media and call-to-action buttons, with how each is written back to a flow file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowkit.flow.location import Loc, loc_field
from flowkit.flow.template import Template


@dataclass(frozen=True)
class Button:
    id: str
    title: str


@dataclass(frozen=True)
class ListRow:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True)
class ListSection:
    title: str
    rows: tuple[ListRow, ...]


@dataclass(frozen=True)
class ListMenu:
    button: str
    sections: tuple[ListSection, ...]


@dataclass(frozen=True)
class TemplateMessage:
    """A pre-approved WhatsApp template; ``params`` fill its body placeholders in order."""

    name: str
    language: str = "en_US"
    params: tuple[Template, ...] = ()


@dataclass(frozen=True)
class MediaRef:
    """An image, audio, video, document or sticker: ``ref`` is an https URL or an uploaded media id."""

    kind: str
    ref: str


@dataclass(frozen=True)
class CtaButton:
    """A call-to-action button that opens ``url``."""

    text: str
    url: Template


@dataclass(frozen=True, kw_only=True)
class BotMessage:
    """Something the bot says: text, optionally with reply buttons or a list menu, or a template;
    optionally with a header and footer, a media attachment or a call-to-action URL button."""

    text: Template | None = None
    buttons: tuple[Button, ...] = ()
    menu: ListMenu | None = None  # `list:` in a flow file; named so it does not shadow the builtin
    template: TemplateMessage | None = None
    header: Template | None = None
    footer: Template | None = None
    media: MediaRef | None = None
    cta: CtaButton | None = None
    loc: Loc = loc_field()

    def templates(self) -> list[Template]:
        out = [self.text] if self.text is not None else []
        if self.template is not None:
            out.extend(self.template.params)
        out += [t for t in (self.header, self.footer) if t is not None]
        if self.cta is not None:
            out.append(self.cta.url)
        return out

    @property
    def plain(self) -> bool:
        """Only text: written as a bare string in a flow file."""
        return (not self.buttons and self.menu is None and self.template is None and self.header is None
                and self.footer is None and self.media is None and self.cta is None)

    def to_data(self) -> Any:
        if self.text is not None and self.plain:
            return self.text.source
        d: dict[str, Any] = {}
        if self.text is not None:
            d["text"] = self.text.source
        if self.buttons:
            d["buttons"] = [{"id": b.id, "title": b.title} for b in self.buttons]
        if self.menu is not None:
            d["list"] = _list_data(self.menu)
        if self.template is not None:
            d["template"] = {
                "name": self.template.name,
                "language": self.template.language,
                **({"params": [p.source for p in self.template.params]} if self.template.params else {}),
            }
        if self.header is not None:
            d["header"] = self.header.source
        if self.footer is not None:
            d["footer"] = self.footer.source
        if self.media is not None:
            key = "url" if self.media.ref.startswith(("https://", "http://")) else "id"
            d["media"] = {"type": self.media.kind, key: self.media.ref}
        if self.cta is not None:
            d["cta"] = {"text": self.cta.text, "url": self.cta.url.source}
        return d


def _list_data(menu: ListMenu) -> dict[str, Any]:
    """A list menu as a flow file writes it (one untitled section: the ``rows:`` shorthand)."""
    def rows(section: ListSection) -> list[dict[str, str]]:
        return [{"id": r.id, "title": r.title, **({"description": r.description} if r.description else {})}
                for r in section.rows]

    secs = menu.sections
    if len(secs) == 1 and not secs[0].title:  # the `rows:` shorthand
        return {"button": menu.button, "rows": rows(secs[0])}
    return {"button": menu.button,
            "sections": [{**({"title": s.title} if s.title else {}), "rows": rows(s)} for s in secs]}


def __getattr__(name: str) -> Any:
    # `Message` named both what the user sent and what the bot says; kept for users' code.
    if name == "Message":
        from flowkit._lazy import renamed

        renamed(__name__, "Message", "BotMessage")
        return BotMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
