"""Reading what the bot says in a flow file: texts, reply buttons, list menus, templates,
media and call-to-action buttons (with WhatsApp's limits on each), into :class:`~flowkit.flow.messages.BotMessage`."""

from __future__ import annotations

from flowkit.flow.model import (
    MEDIA_KINDS,
    BotMessage,
    Button,
    CtaButton,
    ListMenu,
    ListRow,
    ListSection,
    MediaRef,
    TemplateMessage,
)
from flowkit.flow.parse_values import ValueParser
from flowkit.flow.reader import Node as _N
from flowkit.flow.template import Template


class MessageParser(ValueParser):
    """Reads messages; the step parser (flowkit/flow/parse_steps.py) builds on it."""

    def message(self, n: _N, what: str) -> BotMessage | None:
        if isinstance(n.value, str) or (isinstance(n.value, (int, float)) and not isinstance(n.value, bool)):
            t = self.template(n, what)
            return BotMessage(text=t, loc=self.loc(n)) if t else None
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
        return BotMessage(text=text, buttons=buttons, menu=menu, template=template,
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
