"""What the Graph API imitation refuses in a ``/messages`` body, as Graph does: code 100
with a message naming the field, for every message kind flowkit sends and WhatsApp's
limits (docs/whatsapp-limits.md). :func:`validate` raises :class:`InvalidRequest`, which
:mod:`flowkit.testing.fake_graph` turns into Graph's error body; it never leaves the fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowkit.channels.whatsapp.outgoing import (
    CAPTIONED,
    HEADER_MEDIA,
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_BUTTONS,
    MAX_CAPTION,
    MAX_CTA_DISPLAY,
    MAX_FOOTER,
    MAX_HEADER,
    MAX_INTERACTIVE_BODY,
    MAX_LIST_BUTTON,
    MAX_LIST_ROWS,
    MAX_LIST_SECTIONS,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_SECTION_TITLE,
    MAX_TEXT,
)

MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")


class InvalidRequest(Exception):
    """A request that Graph would refuse with code 100 (internal to the fake: answered as a 400)."""


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidRequest(message)


def _list(v: object, low: int, high: int, message: str) -> list[Any]:
    if not isinstance(v, list) or not low <= len(v) <= high:
        raise InvalidRequest(message)
    return v


def _str(obj: object, key: str, where: str, limit: int | None = None) -> str:
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, str) or not v:
        raise InvalidRequest(f"The parameter {where}['{key}'] is required.")
    if limit is not None:
        _need(len(v) <= limit, f"Param {where}['{key}'] must be at most {limit} characters long.")
    return v


def validate(p: object) -> tuple[str, str]:
    """(type, recipient) of a valid /messages body, ("read", "") for a read receipt; else InvalidRequest."""
    if not isinstance(p, dict):
        raise InvalidRequest("The request body must be a JSON object")
    _need(p.get("messaging_product") == "whatsapp",
          "The parameter messaging_product is required." if "messaging_product" not in p
          else "Param messaging_product must be 'whatsapp'.")
    if p.get("status") is not None:
        _read_receipt(p)
        return "read", ""
    to = p.get("to") if "to" in p else p.get("recipient")  # `recipient`: a business-scoped user id
    if not isinstance(to, str) or not to.strip():
        raise InvalidRequest("The parameter to is required.")
    kind = p.get("type", "text")
    check = _MESSAGE_KINDS.get(kind) if isinstance(kind, str) else None
    if isinstance(kind, str) and kind in MEDIA_KINDS:
        _media_message(p, kind)
    elif check is not None:
        check(p)
    else:
        raise InvalidRequest(f"Param type must be one of {{text, interactive, template, location, reaction, contacts, "
                             f"{', '.join(MEDIA_KINDS)}}} - got \"{kind}\".")
    return str(kind), to


def _read_receipt(p: dict[str, Any]) -> None:
    _need(p.get("status") == "read", "Param status must be 'read'.")
    _need(isinstance(p.get("message_id"), str) and p["message_id"] != "", "The parameter message_id is required.")
    typing = p.get("typing_indicator")
    _need(typing is None or (isinstance(typing, dict) and typing.get("type") == "text"),
          "Param typing_indicator['type'] must be 'text'.")


def _media_message(p: dict[str, Any], kind: str) -> None:
    media = p.get(kind)
    _media_object(media, kind, kind)
    assert isinstance(media, dict)
    if "caption" in media:
        _need(kind in CAPTIONED, f"Param {kind}['caption'] is not supported for {kind} messages.")
        _str(media, "caption", kind, MAX_CAPTION)


def _template(p: dict[str, Any]) -> None:
    t = p.get("template")
    _str(t, "name", "template")
    _str(t.get("language") if isinstance(t, dict) else None, "code", "template['language']")


def _location(p: dict[str, Any]) -> None:
    loc = p.get("location")
    for key in ("latitude", "longitude"):
        v = loc.get(key) if isinstance(loc, dict) else None
        _need(isinstance(v, int | float | str) and not isinstance(v, bool), f"The parameter location['{key}'] is required.")


def _contacts(p: dict[str, Any]) -> None:
    _list(p.get("contacts"), 1, 10**6, "The parameter contacts is required.")


def _text(p: dict[str, Any]) -> None:
    _str(p.get("text"), "body", "text", MAX_TEXT)


def _reaction(p: dict[str, Any]) -> None:
    _str(p.get("reaction"), "message_id", "reaction")


def _interactive_message(p: dict[str, Any]) -> None:
    _interactive(p.get("interactive"))


# the non-media message types and what each body must hold
_MESSAGE_KINDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "text": _text, "interactive": _interactive_message, "template": _template, "location": _location,
    "reaction": _reaction, "contacts": _contacts}


def _media_object(media: object, kind: str, where: str) -> None:
    _need(isinstance(media, dict) and (bool(media.get("id")) or bool(media.get("link"))),
          f"The parameter {where}['id'] or {where}['link'] is required.")
    assert isinstance(media, dict)
    _need(not (media.get("id") and media.get("link")), f"Param {where} must have either 'id' or 'link', not both.")
    link = media.get("link")
    _need(link is None or (isinstance(link, str) and link.startswith(("https://", "http://"))),
          f"Param {where}['link'] must be a valid URL.")


_INTERACTIVE_TYPES = "{button, list, cta_url, location_request_message, flow, product, product_list}"


def _interactive(i: object) -> None:
    if not isinstance(i, dict):
        raise InvalidRequest("The parameter interactive is required.")
    kind = i.get("type")
    _str(i.get("body"), "text", "interactive['body']", MAX_INTERACTIVE_BODY)
    _dressing(i, kind)
    action = i.get("action")
    if not isinstance(action, dict):
        raise InvalidRequest("The parameter interactive['action'] is required.")
    check = _INTERACTIVE_KINDS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise InvalidRequest(f"Param interactive['type'] must be one of {_INTERACTIVE_TYPES}.")
    check(action)


def _buttons(action: dict[str, Any]) -> None:
    buttons = _list(action.get("buttons"), 1, MAX_BUTTONS,
                    f"Param interactive['action']['buttons'] must contain 1 to {MAX_BUTTONS} elements.")
    ids: list[str] = []
    titles: list[str] = []
    for n, b in enumerate(buttons):
        where = f"interactive['action']['buttons'][{n}]['reply']"
        reply = b.get("reply") if isinstance(b, dict) else None
        ids.append(_str(reply, "id", where, MAX_BUTTON_ID))
        titles.append(_str(reply, "title", where, MAX_BUTTON_TITLE))
    _need(len(set(ids)) == len(ids), "Button IDs must be unique.")
    _need(len(set(titles)) == len(titles), "Button titles must be unique.")


def _list_menu(action: dict[str, Any]) -> None:
    _str(action, "button", "interactive['action']", MAX_LIST_BUTTON)
    sections = _list(action.get("sections"), 1, MAX_LIST_SECTIONS,
                     f"Param interactive['action']['sections'] must contain 1 to {MAX_LIST_SECTIONS} elements.")
    row_ids: list[str] = []
    row_titles: list[str] = []
    for s, section in enumerate(sections):
        where = f"interactive['action']['sections'][{s}]"
        if len(sections) > 1 or (isinstance(section, dict) and section.get("title") is not None):
            _str(section, "title", where, MAX_SECTION_TITLE)
        rows = _list(section.get("rows") if isinstance(section, dict) else None, 1, 10**6,
                     f"The parameter {where}['rows'] is required.")
        for r, row in enumerate(rows):
            row_ids.append(_str(row, "id", f"{where}['rows'][{r}]", MAX_ROW_ID))
            row_titles.append(_str(row, "title", f"{where}['rows'][{r}]", MAX_ROW_TITLE))
            if isinstance(row, dict) and row.get("description") is not None:
                _str(row, "description", f"{where}['rows'][{r}]", MAX_ROW_DESCRIPTION)
    _need(len(row_ids) <= MAX_LIST_ROWS, f"Total row count exceed max allowed count: {MAX_LIST_ROWS}")
    _need(len(set(row_ids)) == len(row_ids), "Row IDs must be unique.")
    _need(len(set(row_titles)) == len(row_titles), "Row titles must be unique.")


def _cta_url(action: dict[str, Any]) -> None:
    _need(action.get("name") == "cta_url", "Param interactive['action']['name'] must be 'cta_url'.")
    params = action.get("parameters")
    _str(params, "display_text", "interactive['action']['parameters']", MAX_CTA_DISPLAY)
    url = _str(params, "url", "interactive['action']['parameters']", 2048)
    _need(url.startswith(("https://", "http://")), "Param interactive['action']['parameters']['url'] must be a valid URL.")


def _location_request(action: dict[str, Any]) -> None:
    _need(action.get("name") == "send_location", "Param interactive['action']['name'] must be 'send_location'.")


_INTERACTIVE_KINDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "button": _buttons, "list": _list_menu, "cta_url": _cta_url, "location_request_message": _location_request}


def _dressing(i: dict[str, Any], kind: object) -> None:
    """An interactive message's optional header (text, or media on buttons and cta_url) and footer."""
    header = i.get("header")
    if header is not None:
        htype = header.get("type") if isinstance(header, dict) else None
        _need(kind != "location_request_message", "Param interactive['header'] is not supported for location_request_message.")
        if htype == "text":
            _str(header, "text", "interactive['header']", MAX_HEADER)
        elif htype in HEADER_MEDIA and kind in ("button", "cta_url"):
            assert isinstance(header, dict)
            _media_object(header.get(htype), str(htype), f"interactive['header']['{htype}']")
        else:
            allowed = "{text}" if kind == "list" else "{text, image, video, document}"
            raise InvalidRequest(f"Param interactive['header']['type'] must be one of {allowed}.")
    footer = i.get("footer")
    if footer is not None:
        _need(kind != "location_request_message", "Param interactive['footer'] is not supported for location_request_message.")
        _str(footer, "text", "interactive['footer']", MAX_FOOTER)

