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
from typing import Any

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


def read_values(env: Mapping[str, Any], sensitive: frozenset[str]) -> dict[str, Any]:
    """The values a condition read, with secrets left out."""
    return {k: REDACTED if k in sensitive or k == "profile" else _short(v) for k, v in sorted(env.items())}


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
    """Canonical JSON text, or None when there is nothing to explain. ASCII, like the record's
    ``input``: a user's text may hold lone surrogates, which have no UTF-8 form."""
    if not why:
        return None
    return json.dumps(why, ensure_ascii=True, sort_keys=True, separators=(",", ":"), default=str)


__all__ = ["REDACTED", "branch", "encode", "invalid", "read_values"]
