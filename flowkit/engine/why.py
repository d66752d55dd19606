"""Why a transition went where it went, for the history record's ``why`` (JSON text).

Pure, like the rest of the engine. Three kinds of reasons, any of which a record may carry:

- ``branches``: each conditional ``next`` the transition followed: the step, the condition
  that matched (``if``; null: the default branch after none matched), the conditions that
  did not (``passed``), the values they read (``read``) and where it went (``goto``);
- ``invalid``: the validation error (``code``, ``detail``) and the ``input`` it judged;
- ``service``: the service result or error that decided (``call``, ``ok``, ``error``).

Sensitive slots and the user's profile are never written: their values read ``"[redacted]"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

REDACTED = "[redacted]"
#: Longest value kept in ``read`` or ``input`` (a long text would bloat every history entry).
MAX_VALUE_CHARS = 200


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        return value if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
    return value


class _Slot(Protocol):
    @property
    def sensitive(self) -> bool: ...


def read_values(env: Mapping[str, Any], slots: Mapping[str, _Slot]) -> dict[str, Any]:
    """The values a condition read, with secrets (sensitive ``slots``, the profile) left out."""
    out = {}
    for k, v in env.items():
        spec = slots.get(k)
        out[k] = REDACTED if k == "profile" or (spec is not None and spec.sensitive) else _short(v)
    return out


def branch(step: str | None, matched: str | None, passed: list[str], read: Mapping[str, Any],
           goto: str) -> dict[str, Any]:
    d: dict[str, Any] = {"step": step, "if": matched, "goto": goto}
    if passed:
        d["passed"] = passed
    if read:
        d["read"] = dict(read)
    return d


def invalid(code: str, detail: str, text: str | None, redact: bool) -> dict[str, Any]:
    return {"code": code, "detail": detail, "input": REDACTED if redact and text is not None else _short(text)}


def encode(why: Mapping[str, Any]) -> str | None:
    """Canonical JSON text (keys sorted), or None when there is nothing to explain.

    orjson on the hot path (a branch taken on every answer: json.dumps cost more than the rest
    of an answer); what it refuses (a lone surrogate in a user's text, which has no UTF-8
    form; a non-text key) is written by json.dumps as ASCII with escapes."""
    if not why:
        return None
    try:
        return orjson.dumps(why, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(why, ensure_ascii=True, sort_keys=True, separators=(",", ":"), default=str)


__all__ = ["REDACTED", "branch", "encode", "invalid", "read_values"]
