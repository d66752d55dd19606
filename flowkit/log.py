"""Structured logs: one JSON object per line, with the session context as fields.

    log = get_logger("flowkit.runtime")
    log.info("message handled", extra={"session_id": sid, "outcome": "ok", "latency_ms": 3.2})

Every ``flowkit`` command calls :func:`configure` once (the root Typer callback), so the
format (``json`` or ``text``) and level are chosen in one place.

Secrets never reach a log line: fields whose name looks like a secret are masked, and in
every string a URL's password, a ``Bearer`` token and an ``access_token=`` parameter are
replaced by ``***`` (an exception text may quote a Redis URL or a request).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from flowkit.errors import ConfigError

_ORJSON_AS_JSON = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_NON_STR_KEYS)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("token", "secret", "password", "authorization", "signature")
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("json", "text")

# scheme://user:PASSWORD@host, scheme://:PASSWORD@host; Bearer X; access_token=X (query strings, form bodies)
# Bounded repetitions: log text may quote what a user sent, so each attempt must cost O(1)
# and a whole message O(n) (a scheme or credential of unbounded length could make it O(n^2)).
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^\s:/@]{0,256}:)[^\s@/]{1,256}@")
_BEARER = re.compile(r"(?i)(?P<head>bearer\s+)[A-Za-z0-9._~+/=-]+")
_ACCESS_TOKEN = re.compile(r"(?i)(?P<head>access_token=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with URL passwords, bearer tokens and access_token parameters masked."""
    # Every log field goes through here (a line per handled message): a substring test
    # skips each regex scan when it cannot match. casefold() is what (?i) matches
    # ("ſ" folds to "s" in both).
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    folded = text.casefold()
    if "bearer" in folded:
        text = _BEARER.sub(r"\g<head>***", text)
    if "access_token=" in folded:
        text = _ACCESS_TOKEN.sub(r"\g<head>***", text)
    return text


def url_origin(url: str) -> str:
    """``https://hooks.example.com/services/T0/B0/SECRET?x=1`` -> ``https://hooks.example.com``:
    webhook URLs often carry their credential in the path, so logs name only the host."""
    m = re.match(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?:[^@/?#]*@)?(?P<host>[^/?#]*)", url)
    return f"{m.group('scheme')}://{m.group('host')}" if m else "<url>"


@functools.lru_cache(maxsize=1024)  # field names repeat on every line
def _secret_key(key: str) -> bool:
    return any(w in key.lower() for w in _SECRET_WORDS)


def _clean(key: str, value: Any) -> Any:
    if _secret_key(key):
        return "***"
    if isinstance(value, str):
        return redact(value)
    return value


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: _clean(k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _ts(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _ts(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "pid": record.process,  # which process: `serve --workers` runs several on one stderr
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        try:
            # orjson: a few µs instead of ~20 on a line per handled message; everything it
            # would render its own way (datetimes, dataclasses, subclasses) goes to str() as before
            return orjson.dumps(out, default=str, option=_ORJSON_AS_JSON).decode()
        except TypeError:  # a lone surrogate, an int beyond 64 bits: the standard library writes those
            return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For people at a terminal: ``<ts> WARNING flowkit.web: webhook rejected status=403 reason=...``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{_ts(record)} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"]
        for key, value in _fields(record).items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
            parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if (' ' in text or not text) else text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # (StreamHandler is generic in typeshed only)
    """Writes to whatever ``sys.stderr`` is at the time of the call (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override,unused-ignore]  # (a read-only property over a base attribute: fine at runtime; older typeshed flags it)
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def parse_level(level: str | int) -> int:
    """``"info"`` / ``"INFO"`` / ``20`` -> 20; anything else is a :class:`ConfigError`."""
    if isinstance(level, int):
        return level
    name = level.strip().lower()
    if name not in LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}; "
                          "set --log-level or FLOWKIT_LOG_LEVEL to one of them")
    return logging.getLevelName(name.upper())  # type: ignore[no-any-return]  # (a level name gives its number)


_current: dict[str, str] = {}


def current() -> dict[str, str]:
    """The ``FLOWKIT_LOG_FORMAT`` / ``FLOWKIT_LOG_LEVEL`` of the last :func:`configure` (empty if
    none), for child processes that must log the same way (the dashboard's Streamlit app)."""
    return dict(_current)


def configure_from_env() -> Callable[[], None]:
    """:func:`configure` from ``$FLOWKIT_LOG_FORMAT`` and ``$FLOWKIT_LOG_LEVEL`` (json, info)."""
    return configure(os.environ.get("FLOWKIT_LOG_LEVEL") or "info", fmt=os.environ.get("FLOWKIT_LOG_FORMAT") or "json")


def configure(level: str | int = "INFO", stream: Any = None, fmt: str = "json") -> Callable[[], None]:
    """Send flowkit's logs to ``stream`` (default: the current stderr) as JSON lines (or
    ``fmt="text"``). Returns a function that puts the previous logging setup back."""
    if fmt not in FORMATS:
        raise ConfigError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}; use --log-format json or text")
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("flowkit")
    saved = (list(root.handlers), root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level))
    root.propagate = False
    saved_current = dict(_current)
    _current.update({"FLOWKIT_LOG_FORMAT": fmt, "FLOWKIT_LOG_LEVEL": logging.getLevelName(root.level).lower()})

    def restore() -> None:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
        _current.clear()
        _current.update(saved_current)

    return restore


def adopt(name: str) -> None:
    """Send another library's logger (``uvicorn``) through flowkit's handler, so every line a
    command writes to stderr has the same format."""
    other = logging.getLogger(name)
    other.handlers[:] = list(logging.getLogger("flowkit").handlers)
    other.propagate = False


def error_fields(exc: BaseException) -> dict[str, Any]:
    """Log fields that say why ``exc`` happened: its type and text, and for a Graph API
    error the HTTP status, Graph error code/subcode, fbtrace_id and whether a retry may help."""
    out: dict[str, Any] = {"error_type": type(exc).__name__, "error": str(exc)}
    for attr, key in (("status", "http_status"), ("code", "graph_code"), ("subcode", "graph_subcode"),
                      ("fbtrace_id", "fbtrace_id"), ("retryable", "retryable"), ("attempts", "attempts"),
                      ("reason", "reason")):
        value = getattr(exc, attr, None)
        if value is not None and isinstance(value, str | int | float | bool):
            out[key] = value
    return out
