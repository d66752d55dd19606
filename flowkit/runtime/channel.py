"""Where replies go. The runtime only needs ``send(to, reply)``; WhatsApp is one channel,
an in-memory recorder (tests, the simulator) is another."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowkit.channels.whatsapp import outgoing
from flowkit.channels.whatsapp.numbers import Numbers
from flowkit.channels.whatsapp.outgoing import (
    HEADER_MEDIA,
    MAX_CAPTION,
    MAX_FOOTER,
    MAX_HEADER,
    MAX_INTERACTIVE_BODY,
    MAX_TEXT,
)
from flowkit.engine.events import Reply
from flowkit.envflag import env_flag
from flowkit.errors import ChannelError
from flowkit.log import get_logger
from flowkit.types import AsyncChannel, Channel

if TYPE_CHECKING:
    from flowkit.channels.whatsapp.sender import AsyncWhatsAppSender, WhatsAppSender

__all__ = ["AsyncChannel", "AsyncRecordingChannel", "AsyncWhatsAppChannel", "Channel", "HeldChannel",
           "RecordingChannel", "Sent", "WhatsAppChannel", "reply_call"]  # the Protocols live in flowkit/types.py

log = get_logger("flowkit.channels")


@dataclass(frozen=True)
class Sent:
    to: str
    reply: Reply
    id: str


class RecordingChannel:
    """Keeps every reply in memory (thread-safe). ``fail_next(n)`` makes the next n sends fail."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._fail = 0

    def fail_next(self, n: int = 1) -> None:
        with self._lock:
            self._fail += n

    def send(self, to: str, reply: Reply) -> str:
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                raise ChannelError("simulated send failure")
            sid = f"out.{len(self.sent) + 1}"
            self.sent.append(Sent(to, reply, sid))
            return sid

    def to(self, who: str) -> list[Reply]:
        with self._lock:
            return [s.reply for s in self.sent if s.to == who]

    def texts(self, who: str) -> list[str | None]:
        return [r.text for r in self.to(who)]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()


class HeldChannel:
    """Sends nothing: every reply stays in the outbox for a process that sends
    (``flowkit worker --no-send``)."""

    def send(self, to: str, reply: Reply) -> str:
        raise ChannelError("sending is off in this process (--no-send); the reply stays in the outbox "
                           "for `flowkit worker` with WhatsApp credentials")


class AsyncRecordingChannel(RecordingChannel):
    async def send(self, to: str, reply: Reply) -> str:  # type: ignore[override]  # (the async twin of RecordingChannel.send)
        return RecordingChannel.send(self, to, reply)


def reply_call(reply: Reply, *, fit: bool = True) -> tuple[str, dict[str, Any]]:  # noqa: C901 -- the dispatch from a reply's shape to the one Graph message that carries it
    """Which WhatsApp sender method sends ``reply``, and its keyword arguments.

    A reply is always one Graph message; combinations that cannot be one (a header on plain
    text, a caption on a sticker, media on a list) raise :class:`ChannelError`, and
    ``flowkit lint`` reports them before a flow loads. Rendered texts longer than WhatsApp
    allows (a long slot value in a template) are shortened with "…" and logged rather than
    refused by Graph after the session moved on; ``fit=False`` (lint) leaves them for the
    builders to refuse.
    """
    if reply.template is not None:
        name, language, params = reply.template
        components: Sequence[dict[str, Any]] | None = (
            [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}] if params else None
        )
        return "send_template", {"name": name, "language": language, "components": components}
    text = reply.text or ""
    interactive = bool(reply.buttons or reply.sections or reply.cta or reply.location_request)
    if reply.media is not None:
        _check_media(reply, interactive)
        if not interactive:
            caption = _fit(text, MAX_CAPTION, "caption", fit) if text else None
            return "send_media", {"kind": reply.media[0], "ref": reply.media[1], "caption": caption}
    dress = _dress(reply, fit)
    if interactive:
        return _interactive_call(reply, _fit(text, MAX_INTERACTIVE_BODY, "body", fit), dress)
    if dress:
        raise ChannelError(_DRESS_ALONE)
    return "send_text", {"text": _fit(text, MAX_TEXT, "text", fit)}


_DRESS_ALONE = "a header or footer needs buttons, a list or a cta button; plain text messages have neither"


def _fit(text: str, limit: int, what: str, fit: bool) -> str:
    return _shorten(text, limit, what) if fit else text


def _check_media(reply: Reply, interactive: bool) -> None:
    """Refuse media that cannot be one Graph message with what else the reply has."""
    assert reply.media is not None
    kind = reply.media[0]
    if not interactive:
        if reply.header is not None or reply.footer is not None:
            raise ChannelError(f"a {kind} message takes no header or footer; add buttons or a cta, or drop them")
        return
    if reply.header is not None:
        raise ChannelError(f"a message with {kind} media uses it as its header; drop the text `header`")
    if reply.sections or reply.location_request or kind not in HEADER_MEDIA:
        other = "a list" if reply.sections else "a location request" if reply.location_request else "buttons"
        raise ChannelError(f"{kind} media cannot go with {other}: "
                           "WhatsApp takes image, video or document headers on buttons and cta messages only")


def _dress(reply: Reply, fit: bool) -> dict[str, Any]:
    """The header (media or text) and footer of an interactive message."""
    header: tuple[str, str] | str | None = reply.media if reply.media is not None else (
        _fit(reply.header, MAX_HEADER, "header", fit) if reply.header is not None else None)
    dress: dict[str, Any] = {}
    if header is not None:
        dress["header"] = header
    if reply.footer is not None:
        dress["footer"] = _fit(reply.footer, MAX_FOOTER, "footer", fit)
    return dress


def _interactive_call(reply: Reply, text: str, dress: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if reply.cta is not None:
        return "send_cta_url", {"text": text, "display_text": reply.cta[0], "url": reply.cta[1], **dress}
    if reply.buttons:
        return "send_buttons", {"text": text, "buttons": list(reply.buttons), **dress}
    if reply.sections:
        sections = [
            {"title": title, "rows": [{"id": r[0], "title": r[1], **({"description": r[2]} if r[2] else {})} for r in rows]}
            for title, rows in reply.sections
        ]
        return "send_list", {"text": text, "button": reply.list_button or "Choose", "sections": sections, **dress}
    if dress:  # (a location request is all that is left: it takes neither)
        raise ChannelError(_DRESS_ALONE)
    return "send_location_request", {"text": text}


def _shorten(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    log.warning("reply text shortened to fit WhatsApp", extra={"field": what, "length": len(text), "limit": limit})
    return text[: limit - 1] + "…"


# The outgoing builder behind each sender method (what the sender posts for it).
_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "send_template": outgoing.template_message,
    "send_text": outgoing.text_message,
    "send_buttons": outgoing.buttons_message,
    "send_list": outgoing.list_message,
    "send_media": outgoing.media_message,
    "send_cta_url": outgoing.cta_url_message,
    "send_location_request": outgoing.location_request_message,
}


def reply_payload(to: str, reply: Reply, *, fit: bool = True) -> dict[str, Any]:
    """The ``/messages`` body a WhatsApp channel posts for ``reply`` (ChannelError if it cannot be sent)."""
    method, kwargs = reply_call(reply, fit=fit)
    return _BUILDERS[method](to, **kwargs)


def _read_receipts_from_env() -> bool:
    return env_flag("FLOWKIT_READ_RECEIPTS", False)


#: WhatsApp's customer-service window: free-form messages only within 24 h of the user's last one.
WHATSAPP_WINDOW_MS = 24 * 3_600_000


class WhatsAppChannel:
    """Sends replies through a :class:`flowkit.channels.whatsapp.WhatsAppSender`.

    With ``read_receipts`` (default: the ``FLOWKIT_READ_RECEIPTS`` environment variable, off)
    the runtime's :meth:`seen` marks each handled message read, with the typing indicator
    while a service call runs. With ``numbers`` (several numbers on one deployment) each
    session's messages leave from the number its id names (flowkit/channels/whatsapp/numbers.py)."""

    window_ms = WHATSAPP_WINDOW_MS  # the runtime keeps free-form replies inside it

    def __init__(self, sender: WhatsAppSender, *, read_receipts: bool | None = None,
                 numbers: Numbers | None = None) -> None:
        self.sender = sender
        self.read_receipts = _read_receipts_from_env() if read_receipts is None else read_receipts
        self.numbers = numbers if numbers is not None else Numbers()
        self._senders: dict[str, Any] = {}

    def route(self, to: str) -> tuple[Any, str]:
        """(the sender of the number session ``to`` belongs to, the user it addresses)."""
        return _route(self.sender, self.numbers, self._senders, to)

    def seen(self, message_id: str, *, working: bool = False, to: str | None = None) -> None:
        """Mark ``message_id`` read (and show "typing…" when ``working``) from the number of
        session ``to``. A receipt that fails is logged, never raised: it must not cost the
        user their reply."""
        if not self.read_receipts:
            return
        try:
            (self.route(to)[0] if to else self.sender).mark_read(message_id, typing=working)
        except (ChannelError, OSError) as exc:
            log.warning("read receipt failed", extra={"message_id": message_id, "error": str(exc)})

    def send(self, to: str, reply: Reply) -> str | None:
        method, kwargs = reply_call(reply)
        sender, user = self.route(to)
        wamid: str | None = getattr(sender, method)(user, **kwargs)
        return wamid


def _route(sender: Any, numbers: Numbers, senders: dict[str, Any], to: str) -> tuple[Any, str]:
    """A session's messages leave from the number that received its user's (numbers.py)."""
    number, user = numbers.address(to)
    if number is None:
        return sender, user
    twin = senders.get(number)
    if twin is None:
        twin = senders[number] = sender.for_number(number)
    return twin, user


class AsyncWhatsAppChannel:
    """Sends replies through a :class:`flowkit.channels.whatsapp.AsyncWhatsAppSender` (read
    receipts as for :class:`WhatsAppChannel`)."""

    window_ms = WHATSAPP_WINDOW_MS

    def __init__(self, sender: AsyncWhatsAppSender, *, read_receipts: bool | None = None,
                 numbers: Numbers | None = None) -> None:
        self.sender = sender
        self.read_receipts = _read_receipts_from_env() if read_receipts is None else read_receipts
        self.numbers = numbers if numbers is not None else Numbers()
        self._senders: dict[str, Any] = {}

    def route(self, to: str) -> tuple[Any, str]:
        """(the sender of the number session ``to`` belongs to, the user it addresses)."""
        return _route(self.sender, self.numbers, self._senders, to)

    async def seen(self, message_id: str, *, working: bool = False, to: str | None = None) -> None:
        if not self.read_receipts:
            return
        try:
            await (self.route(to)[0] if to else self.sender).mark_read(message_id, typing=working)
        except (ChannelError, OSError) as exc:
            log.warning("read receipt failed", extra={"message_id": message_id, "error": str(exc)})

    async def send(self, to: str, reply: Reply) -> str | None:
        method, kwargs = reply_call(reply)
        sender, user = self.route(to)
        wamid: str | None = await getattr(sender, method)(user, **kwargs)
        return wamid
