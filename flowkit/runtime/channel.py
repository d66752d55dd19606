"""Where replies go. The runtime only needs ``send(to, reply)``; WhatsApp is one channel,
an in-memory recorder (tests, the simulator) is another."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flowkit.engine.events import Reply
from flowkit.errors import ChannelError


class Channel(Protocol):
    """``send`` returns the channel's message id (WhatsApp: the wamid its statuses name).

    A channel with a customer-service window declares it as ``window_ms`` (an attribute;
    absent means none): the runtime then sends free-form replies only inside it."""

    def send(self, to: str, reply: Reply) -> str | None: ...


class AsyncChannel(Protocol):
    async def send(self, to: str, reply: Reply) -> str | None: ...


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
    async def send(self, to: str, reply: Reply) -> str:  # type: ignore[override]
        return RecordingChannel.send(self, to, reply)


def reply_call(reply: Reply) -> tuple[str, dict[str, Any]]:
    """Which WhatsApp sender method sends ``reply``, and its keyword arguments."""
    text = reply.text or ""
    if reply.template is not None:
        name, language, params = reply.template
        components: Sequence[dict[str, Any]] | None = (
            [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}] if params else None
        )
        return "send_template", {"name": name, "language": language, "components": components}
    if reply.buttons:
        return "send_buttons", {"text": text, "buttons": list(reply.buttons)}
    if reply.sections:
        sections = [
            {"title": title, "rows": [{"id": r[0], "title": r[1], **({"description": r[2]} if r[2] else {})} for r in rows]}
            for title, rows in reply.sections
        ]
        return "send_list", {"text": text, "button": reply.list_button or "Choose", "sections": sections}
    return "send_text", {"text": text}


#: WhatsApp's customer-service window: free-form messages only within 24 h of the user's last one.
WHATSAPP_WINDOW_MS = 24 * 3_600_000


class WhatsAppChannel:
    """Sends replies through a :class:`flowkit.channels.whatsapp.WhatsAppSender`."""

    window_ms = WHATSAPP_WINDOW_MS  # the runtime keeps free-form replies inside it

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    def send(self, to: str, reply: Reply) -> str | None:
        method, kwargs = reply_call(reply)
        return getattr(self.sender, method)(to, **kwargs)


class AsyncWhatsAppChannel:
    """Sends replies through a :class:`flowkit.channels.whatsapp.AsyncWhatsAppSender`."""

    window_ms = WHATSAPP_WINDOW_MS

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    async def send(self, to: str, reply: Reply) -> str | None:
        method, kwargs = reply_call(reply)
        return await getattr(self.sender, method)(to, **kwargs)
