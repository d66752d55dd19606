"""A transcript as a person reads a chat: who wrote what, the options offered, what became of it.

Used by ``flowkit session transcript``, the dashboard's session drill-down and notebook 04.
Takes either transcript entries (:func:`flowkit.store.Store.transcript`: ``dir``, ``payload``
as a dict) or rows of an export's ``messages`` table (``direction``, ``payload`` as JSON text).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

#: What each delivery status looks like, WhatsApp's ticks in words.
MARKS = {"sent": "✓ sent", "delivered": "✓✓ delivered", "read": "✓✓ read", "played": "✓✓ played",
         "failed": "✗ failed"}
WHO = {"user": "user", "bot": "bot", "agent": "agent"}


def _payload(m: Mapping[str, Any]) -> dict[str, Any]:
    p = m.get("payload")
    if isinstance(p, str):
        try:
            p = json.loads(p)
        except ValueError:
            return {}
    return dict(p) if isinstance(p, Mapping) else {}


def _when(ts: Any) -> str:
    if ts is None or ts != ts:  # None or NaT/NaN
        return "?"
    if hasattr(ts, "to_pydatetime"):  # a pandas Timestamp (export rows)
        ts = int(ts.value // 1_000_000)
    return dt.datetime.fromtimestamp(int(ts) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def options(payload: Mapping[str, Any]) -> list[str]:
    """The choices a reply offered: its buttons, list rows, URL button, location request."""
    out = [str(b[1]) for b in payload.get("buttons") or () if len(b) > 1]
    for _title, rows in payload.get("sections") or ():
        out += [str(r[1]) for r in rows if len(r) > 1]
    if payload.get("cta"):
        out.append(f"{payload['cta'][0]} → {payload['cta'][1]}")
    if payload.get("location_request"):
        out.append("Send location")
    return out


def _body(m: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    kind = m.get("kind") or "text"
    text = m.get("text")
    refers = payload.get("refers_to")
    if kind == "reaction":
        return f"reacted {text} to {refers}" if text else f"took back a reaction to {refers}"
    if kind == "edit":
        return f"edited {refers}: {text or ''}"
    if kind == "revoke":
        return f"deleted {refers}"
    if kind == "media":
        media = payload.get("media")  # out: [kind, url]; in: {"kind": ..., "id": ...}
        what = "media"
        if isinstance(media, list) and media:
            what = str(media[0])
        elif isinstance(media, Mapping):
            what = str(media.get("kind") or "media")
        return f"[{what}] {text or ''}".rstrip()
    if kind == "location":
        loc = payload.get("location") or {}
        return f"[location {loc.get('latitude')}, {loc.get('longitude')}] {loc.get('name') or ''}".rstrip()
    if text is None:
        return f"[{kind}]"
    return str(text)


def _status(m: Mapping[str, Any]) -> str:
    status = m.get("status")
    if not isinstance(status, str) or not status:
        return ""
    mark = MARKS.get(status, status)
    error = m.get("error")
    if status == "failed" and isinstance(error, str) and error:
        mark += f" ({error})"
    return f"{mark} {_when(m.get('status_ts'))[11:]}" if m.get("status_ts") is not None else mark


def printable(text: str) -> str:
    """``text`` with lone surrogates (a hostile client's, no UTF-8 form) shown as U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def chat_lines(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """One or more lines per message: time, who, ``›`` in or ``‹`` out, the text, then the
    options offered (``[Small] [Large]``) and the delivery status of an outbound one. Every
    line can be printed (lone surrogates become U+FFFD)."""
    lines: list[str] = []
    for m in messages:
        payload = _payload(m)
        direction = m.get("dir") or m.get("direction")
        arrow = "›" if direction == "in" else "‹"
        who = WHO.get(str(m.get("actor")), str(m.get("actor")))
        head = f"{_when(m.get('ts'))}  {who:<5} {arrow} "
        body = _body(m, payload).splitlines() or [""]
        lines.append(head + body[0])
        pad = " " * len(head)
        lines += [pad + b for b in body[1:]]
        offered = options(payload)
        if offered:
            lines.append(pad + " ".join(f"[{o}]" for o in offered))
        status = _status(m) if direction == "out" else ""
        if status:
            lines.append(pad + status)
    return [printable(line) for line in lines]


def why_text(why: str | Mapping[str, Any] | None) -> str:
    """A history record's ``why`` in one line: ``size == 'large' [size='large'] → upsell``,
    ``invalid not_an_option: 'xl'``, ``service verify failed: timeout``."""
    if why is None or why != why:  # None or NaN (a pandas cell)
        return ""
    if isinstance(why, str):
        text = why
        try:
            why = json.loads(text)
        except ValueError:
            return text
    if not isinstance(why, Mapping):
        return str(why)
    parts = []
    for b in why.get("branches") or ():
        read = ", ".join(f"{k}={v!r}" for k, v in (b.get("read") or {}).items())
        cond = b.get("if") or ("else (not " + " / ".join(b.get("passed") or []) + ")" if b.get("passed") else "else")
        parts.append(f"{cond}" + (f" [{read}]" if read else "") + f" → {b.get('goto')}")
    inv = why.get("invalid")
    if isinstance(inv, Mapping):
        parts.append(f"invalid {inv.get('code')}: {inv.get('input')!r}")
    svc = why.get("service")
    if isinstance(svc, Mapping):
        parts.append(f"service {svc.get('call')} " + ("ok" if svc.get("ok") and not svc.get("error")
                                                       else f"failed: {svc.get('error')}"))
    return "; ".join(parts)


def chat_text(messages: Iterable[Mapping[str, Any]]) -> str:
    return "\n".join(chat_lines(messages))


__all__ = ["MARKS", "chat_lines", "chat_text", "options", "why_text"]
