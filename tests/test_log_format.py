"""The JSON log formatter's fast paths (orjson, redaction pre-checks) write what the standard
library path wrote: same fields, same values, secrets masked in every spelling the patterns match."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest

from flowkit import log as fklog


def _format(**extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("flowkit.test", logging.INFO, __file__, 1, "event handled", (), None)
    record.__dict__.update(extra)
    line = fklog.JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)  # type: ignore[no-any-return]


def test_fields_render_as_the_standard_library_rendered_them() -> None:
    when = dt.datetime(2026, 12, 4, 10, 0, 0)
    got = _format(session_id="31612345678", version=7, latency_ms=1.25, flow=None, ok=True, when=when,
                  text="héllo 👋", nested={"a": [1, 2]}, by_int={1: "x"})
    assert got["session_id"] == "31612345678" and got["version"] == 7 and got["latency_ms"] == 1.25
    assert got["flow"] is None and got["ok"] is True and got["nested"] == {"a": [1, 2]}
    assert got["when"] == str(when)  # default=str, as json.dumps(default=str) wrote it
    assert got["text"] == "héllo 👋" and got["by_int"] == {"1": "x"}


def test_a_lone_surrogate_still_makes_a_line() -> None:
    # orjson refuses it; the standard library escapes it: the line is never lost
    assert _format(text="bad \ud800 half")["text"] == "bad \ud800 half"


@pytest.mark.parametrize("text, secret", [
    ("redis://user:hunter2@host:6379/0", "hunter2"),
    ("Authorization: BEARER abc.def-123", "abc.def-123"),
    ("Bearer\ttok123", "tok123"),
    ("GET /x?acceſs_token=EAAG123&y=1", "EAAG123"),  # (?i) folds ſ to s; the pre-check must too
    ("ACCESS_TOKEN=EAAG456", "EAAG456"),
])
def test_secrets_are_masked_in_every_spelling(text: str, secret: str) -> None:
    assert secret not in fklog.redact(text) and "***" in fklog.redact(text)
    assert secret not in _format(detail=text)["detail"]


def test_secret_named_fields_are_masked() -> None:
    got = _format(app_secret="s3cret", Authorization="Bearer x", session_id="1")
    assert got["app_secret"] == "***" and got["Authorization"] == "***" and got["session_id"] == "1"
