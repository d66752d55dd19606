"""Reading a JSON document whose shape is not trusted: strict getters that raise a
``WebhookError`` (400, ``bad_payload``) naming the JSON path of the problem, and loose ones
for decoration, taken when it has the expected type and ignored otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from flowkit.errors import WebhookError

_NAMES: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


def bad(message: str) -> NoReturn:
    raise WebhookError(message, status=400, reason="bad_payload")


def describe(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    return _NAMES.get(type(v), type(v).__name__)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def as_object(v: object, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        bad(f"{path} must be an object, got {describe(v)}")
    return v


def required(obj: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    if key not in obj:
        bad(f"{join_path(path, key)} is missing")
    return optional(obj, key, kind, path)


def optional(obj: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    v = obj.get(key)
    if key in obj and not isinstance(v, kind):
        bad(f"{join_path(path, key)} must be {_NAMES[kind]}, got {describe(v)}")
    return v


def loose_str(obj: object, key: str) -> str | None:
    """A decoration field: taken when it is a string, ignored otherwise."""
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) else None


def loose_num(obj: object, key: str) -> int | float | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def unix_seconds(obj: Mapping[str, Any], path: str) -> int:
    key_path = f"{path}.timestamp"
    if "timestamp" not in obj:
        bad(f"{key_path} is missing")
    v = obj["timestamp"]
    # WhatsApp sends a string of digits; accept a plain integer too. The length cap keeps
    # int() away from Python's digit limit on hostile input.
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 15:
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**15:
        return v
    bad(f"{key_path} must be unix seconds as a string of digits, got {describe(v)}")
