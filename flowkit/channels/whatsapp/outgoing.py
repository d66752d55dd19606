"""The ``/messages`` request bodies the senders post, checked against WhatsApp's limits
first, so a flow that offers 4 buttons fails with a clear :class:`ChannelError` naming
the limit instead of a Graph error code 100 at runtime. The FakeGraphAPI enforces the
same limits from the other side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowkit.errors import ChannelError

# WhatsApp's own limits for interactive messages (Cloud API reference).
MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_LIST_ROWS = 10
MAX_LIST_SECTIONS = 10
MAX_ROW_TITLE = 24
MAX_ROW_ID = 200
MAX_ROW_DESCRIPTION = 72
MAX_SECTION_TITLE = 24
MAX_LIST_BUTTON = 20
MAX_HEADER = 60
MAX_FOOTER = 60
MAX_CTA_DISPLAY = 20
MAX_CAPTION = 1024
MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
# Kinds that carry a caption, and kinds an interactive message takes as its header.
CAPTIONED = frozenset({"image", "video", "document"})
HEADER_MEDIA = frozenset({"image", "video", "document"})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ChannelError(message)


def _check_text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ChannelError(f"{what} must be a non-empty string, got {value!r}")
    _check(len(value) <= limit, f"{what} is {len(value)} characters; WhatsApp allows at most {limit}")
    return value


def is_user_id(recipient: str) -> bool:
    """A business-scoped user id (``US.13491208655302741918``: country code, a period, letters and
    digits) rather than a phone number, which is digits only (an optional ``+``)."""
    head, dot, _ = recipient.partition(".")
    return bool(dot) and len(head) == 2 and head.isalpha()


def _base(to: str) -> dict[str, Any]:
    _check(isinstance(to, str) and to.strip() != "", f"recipient must be a phone number or WhatsApp id, got {to!r}")
    # The Cloud API addresses a user without a shared phone number (usernames) by their
    # business-scoped user id in `recipient`, in place of `to`.
    key = "recipient" if is_user_id(to) else "to"
    return {"messaging_product": "whatsapp", "recipient_type": "individual", key: to}


def text_message(to: str, text: str, *, preview_url: bool = False) -> dict[str, Any]:
    """The ``/messages`` body of a text message."""
    return _base(to) | {"type": "text",
                        "text": {"preview_url": preview_url, "body": _check_text(text, "text", MAX_TEXT)}}


def buttons_message(to: str, text: str, buttons: Sequence[tuple[str, str]], *, header: Header | None = None,
                    footer: str | None = None) -> dict[str, Any]:
    """The body of an interactive reply-buttons message: up to 3 ``(id, title)`` pairs.

    ``header`` is a text or ``(kind, link_or_id)`` for an image, video or document header."""
    body = _check_text(text, "button message text", MAX_INTERACTIVE_BODY)
    _check(1 <= len(buttons) <= MAX_BUTTONS,
           f"a button message takes 1 to {MAX_BUTTONS} buttons, got {len(buttons)}; use send_list for up to "
           f"{MAX_LIST_ROWS} choices")
    items: list[dict[str, Any]] = []
    for n, button in enumerate(buttons):
        # Checked at runtime: buttons often come from flow files, not from typed code.
        try:
            if isinstance(button, str | bytes):
                raise ValueError
            raw_id, raw_title = button
        except (TypeError, ValueError):
            raise ChannelError(f"button {n} must be an (id, title) pair, got {button!r}") from None
        bid = _check_text(raw_id, f"button {n} id", MAX_BUTTON_ID)
        title = _check_text(raw_title, f"button {n} title {raw_title!r}", MAX_BUTTON_TITLE)
        items.append({"type": "reply", "reply": {"id": bid, "title": title}})
    _unique([b["reply"]["id"] for b in items], "button ids")
    _unique([b["reply"]["title"] for b in items], "button titles")
    return _base(to) | {"type": "interactive", "interactive": _dressed(
        {"type": "button", "body": {"text": body}, "action": {"buttons": items}}, header, footer, media_header=True)}


def list_message(to: str, text: str, button: str, sections: Sequence[Mapping[str, Any]], *,
                 header: Header | None = None, footer: str | None = None) -> dict[str, Any]:
    """The body of an interactive list message (its header can only be text).

    ``sections`` is ``[{"title": ..., "rows": [{"id", "title", "description"?}, ...]}]`` (the
    Graph shape); a row may also be an ``(id, title)`` or ``(id, title, description)`` tuple.
    """
    body = _check_text(text, "list message text", MAX_INTERACTIVE_BODY)
    label = _check_text(button, "list button label", MAX_LIST_BUTTON)
    _check(1 <= len(sections) <= MAX_LIST_SECTIONS,
           f"a list message takes 1 to {MAX_LIST_SECTIONS} sections, got {len(sections)}")
    out_sections: list[dict[str, Any]] = []
    row_ids: list[str] = []
    row_titles: list[str] = []
    for s, section in enumerate(sections):
        _check(isinstance(section, Mapping), f"section {s} must be a mapping with 'rows', got {section!r}")
        out: dict[str, Any] = {}
        title = section.get("title")
        if title or len(sections) > 1:  # WhatsApp requires section titles once there are several
            out["title"] = _check_text(title, f"section {s} title", MAX_SECTION_TITLE)
        rows = section.get("rows")
        if isinstance(rows, str) or not isinstance(rows, Sequence) or not rows:
            raise ChannelError(f"section {s} needs a non-empty list of rows")
        out["rows"] = [_row(row, f"section {s} row {r}") for r, row in enumerate(rows)]
        row_ids += [row["id"] for row in out["rows"]]
        row_titles += [row["title"] for row in out["rows"]]
        out_sections.append(out)
    _check(len(row_ids) <= MAX_LIST_ROWS,
           f"a list message takes at most {MAX_LIST_ROWS} rows in all sections, got {len(row_ids)}")
    _unique(row_ids, "row ids")
    _unique(row_titles, "row titles")
    return _base(to) | {"type": "interactive", "interactive": _dressed(
        {"type": "list", "body": {"text": body}, "action": {"button": label, "sections": out_sections}},
        header, footer, media_header=False)}


Header = str | tuple[str, str]


def _media_ref(kind: str, ref: str, what: str) -> dict[str, str]:
    """``{"link": url}`` for an http(s) URL, else ``{"id": media_id}`` (an uploaded media id)."""
    _check_text(ref, f"{what} link or media id", 2048)
    return {"link": ref} if ref.startswith(("https://", "http://")) else {"id": ref}


def _dressed(interactive: dict[str, Any], header: Header | None, footer: str | None, *,
             media_header: bool) -> dict[str, Any]:
    """``interactive`` with its optional header and footer, checked."""
    if header is not None:
        if isinstance(header, str):
            interactive["header"] = {"type": "text", "text": _check_text(header, "header", MAX_HEADER)}
        else:
            kind, ref = header
            _check(media_header, f"a {interactive['type']} message takes only a text header, not {kind}")
            _check(kind in HEADER_MEDIA, f"an interactive header can be text, image, video or document, not {kind!r}")
            interactive["header"] = {"type": kind, kind: _media_ref(kind, ref, f"{kind} header")}
    if footer is not None:
        interactive["footer"] = {"text": _check_text(footer, "footer", MAX_FOOTER)}
    return interactive


def media_message(to: str, kind: str, ref: str, *, caption: str | None = None,
                  filename: str | None = None) -> dict[str, Any]:
    """The body of an image, audio, video, document or sticker message.

    ``ref`` is an https URL (sent as ``link``) or the id of uploaded media. Audio and
    stickers take no caption; ``filename`` is for documents."""
    _check(kind in MEDIA_KINDS, f"media kind must be one of {', '.join(MEDIA_KINDS)}, got {kind!r}")
    media = _media_ref(kind, ref, kind)
    if caption is not None:
        _check(kind in CAPTIONED, f"a {kind} message takes no caption; send the text as its own message")
        media["caption"] = _check_text(caption, f"{kind} caption", MAX_CAPTION)
    if filename is not None:
        _check(kind == "document", f"only documents take a filename, not {kind}")
        media["filename"] = _check_text(filename, "document filename", 240)
    return _base(to) | {"type": kind, kind: media}


def location_request_message(to: str, text: str) -> dict[str, Any]:
    """The body of an interactive location request: the user gets a "Send location" button."""
    body = _check_text(text, "location request text", MAX_INTERACTIVE_BODY)
    return _base(to) | {"type": "interactive", "interactive": {
        "type": "location_request_message", "body": {"text": body}, "action": {"name": "send_location"}}}


def cta_url_message(to: str, text: str, display_text: str, url: str, *, header: Header | None = None,
                    footer: str | None = None) -> dict[str, Any]:
    """The body of an interactive call-to-action URL button message (one button opening ``url``)."""
    body = _check_text(text, "call-to-action message text", MAX_INTERACTIVE_BODY)
    label = _check_text(display_text, "call-to-action button text", MAX_CTA_DISPLAY)
    link = _check_text(url, "call-to-action url", 2048)
    _check(link.startswith(("https://", "http://")), f"call-to-action url must start with https:// or http://, got {url!r}")
    return _base(to) | {"type": "interactive", "interactive": _dressed(
        {"type": "cta_url", "body": {"text": body},
         "action": {"name": "cta_url", "parameters": {"display_text": label, "url": link}}},
        header, footer, media_header=True)}


def _row(row: object, what: str) -> dict[str, Any]:
    if isinstance(row, Mapping):
        rid, title, description = row.get("id"), row.get("title"), row.get("description")
    elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) in (2, 3):
        rid, title, description = row[0], row[1], row[2] if len(row) == 3 else None
    else:
        raise ChannelError(f"{what} must be a mapping with id and title, or an (id, title[, description]) tuple")
    out = {"id": _check_text(rid, f"{what} id", MAX_ROW_ID), "title": _check_text(title, f"{what} title {title!r}", MAX_ROW_TITLE)}
    if description:
        out["description"] = _check_text(description, f"{what} description", MAX_ROW_DESCRIPTION)
    return out


def _unique(values: list[str], what: str) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1})
    _check(not dupes, f"{what} must be unique; repeated: {', '.join(map(repr, dupes))}")


def template_message(to: str, name: str, language: str = "en_US",
                     components: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The body of a template message (the only kind allowed outside the 24-hour window)."""
    template: dict[str, Any] = {"name": _check_text(name, "template name", 512),
                                "language": {"code": _check_text(language, "template language", 15)}}
    if components:
        template["components"] = [dict(c) for c in components]
    return _base(to) | {"type": "template", "template": template}


def read_receipt(message_id: str, *, typing: bool = False) -> dict[str, Any]:
    """The body that marks an inbound message as read (blue ticks); with ``typing`` the user
    also sees "typing…" until the next message or 25 seconds (the Cloud API sends both in one call)."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read",
                            "message_id": _check_text(message_id, "message_id", 512)}
    if typing:
        body["typing_indicator"] = {"type": "text"}
    return body
