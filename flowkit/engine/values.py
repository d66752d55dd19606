"""The engine's small value helpers: time (``now`` as epoch ms and as ISO text), what an
expression sees (:func:`scope`), the history record's ``input`` text, values made storable
as JSON, and the next wake-up of a session (:func:`schedule`). Pure, like all of the engine.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

from flowkit.engine import handoff
from flowkit.engine.events import Event, Schedule, ServiceResult, UserMessage
from flowkit.engine.inputs import is_utf8
from flowkit.engine.state import PROFILE, make
from flowkit.errors import EngineError
from flowkit.flow.model import Flow


def to_ms(now: int | dt.datetime) -> int:
    """``now`` as epoch milliseconds; a naive datetime is refused (its zone is a guess)."""
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise EngineError("now must be timezone-aware (UTC); naive datetimes are ambiguous")
        return int(now.timestamp() * 1000)
    return int(now)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def scope(names: frozenset[str], declared: Mapping[str, Any], slots: Mapping[str, Any], now: int,
          session_id: str, flow: str, step: str | None) -> dict[str, Any]:
    """What an expression reading ``names`` sees: its slots (None when declared but unset),
    ``profile``, ``now`` and ``today`` (UTC, ISO-8601) and ``session``. Only the names it reads
    are worked out (the clock's text is not cheap); a name that is none of these stays
    missing, so the expression fails with "unknown name" as it should."""
    env: dict[str, Any] = {}
    for n in names:
        if n == "profile":
            env[n] = dict(slots.get(PROFILE) or {})
        elif n == "now":
            env[n] = iso(now)
        elif n == "today":
            env[n] = iso(now)[:10]
        elif n == "session":
            env[n] = {"id": session_id, "flow": flow, "step": step}
        elif n in slots:
            env[n] = slots[n]
        elif n in declared:
            env[n] = None
    return env


def schedule(pending: Mapping[str, Any] | None, root: Flow, now: int) -> Schedule:
    """The next wake-up of a live session: its step's deadline or the flow's inactivity timeout."""
    at, reason = 0, "none"
    deadline = pending.get("deadline") if pending else None
    if deadline is not None:
        at, reason = int(deadline), pending["wait"]  # type: ignore[index]  # (pending is set when deadline is)
    timeout = root.timeout
    if timeout is not None and not handoff.is_held(pending):  # people have their own clock
        idle = now + int(timeout * 1000)
        if deadline is None or (idle, "session") < (at, reason):  # the earlier; on a tie, the lesser reason
            at, reason = idle, "session"
    return make(Schedule, {"at": at, "reason": reason, "kind": "schedule"})


def payload_json(payload: Mapping[str, Any]) -> str:
    """An event's payload as the history record's ``input`` text."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if not text.isascii() and not is_utf8(text):  # lone surrogates: escaped, so the record has a UTF-8 form
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return text


def record_input(event: Event, redact: bool) -> str:
    """The history record's ``input``: the event's payload as JSON (``{"redacted":true,...}``
    for a sensitive answer or service result). A typed text, the common case, is written
    directly: the same text ``payload_json`` gives, at a fraction of json.dumps' cost."""
    if redact and isinstance(event, (UserMessage, ServiceResult)):
        return payload_json({"type": getattr(event, "type", "service_result"), "redacted": True})
    if type(event) is UserMessage and event.type == "text" and event.text is not None and event.reply_id is None \
            and event.location is None and event.media is None and is_utf8(event.text):
        return '{"text":' + encode_basestring(event.text) + ',"type":"text"}'
    return payload_json(event.payload())


def cycle(path: list[str]) -> list[str]:
    """The repeating loop at the end of ``path``: ``[a, b, c, b, c, b]`` -> ``[b, c, b]``."""
    if not path:
        return []
    last = path[-1]
    for i in range(len(path) - 2, -1, -1):
        if path[i] == last:
            return path[i:]
    return path[-12:]


def json_value(value: Any, where: str) -> Any:
    """``value`` as it reads back from the state's JSON (tuples become lists), or EngineError
    when it has no exact JSON form (objects, sets, NaN/infinity, non-text keys)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EngineError(f"{where} cannot be stored in the session state: {exc}") from None
    if not text.isascii() and not is_utf8(text):  # the store writes UTF-8
        raise EngineError(f"{where} cannot be stored in the session state: it has text with lone surrogates")
    return json.loads(text)


def readable(value: Any) -> Any:
    """``value`` with each lone surrogate in its texts replaced by U+FFFD. For the user's
    profile only: a display name is worth keeping legible, and it cannot be asked again."""
    if isinstance(value, str):
        return value if is_utf8(value) else "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, Mapping):
        return {k: readable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [readable(v) for v in value]
    return value
