"""The history export format: column names, types and schemas, and the time helpers.

This module is the contract of docs/design.md, "History export", in code (normalising:
:mod:`~flowkit.history.normalizing`; reading: :mod:`~flowkit.history.reading`; writing:
:mod:`~flowkit.history.writing`; all re-exported by :mod:`~flowkit.history.columns`). Other tools (DuckDB,
Spark, the dashboard) read the files it writes, so names and types never change here
without changing docs/design.md.

An export is a folder::

    export.json            exported_at (ISO-8601 UTC), flowkit version, row counts, checksums
    history/part-*.parquet one row per commit (or history.jsonl / history.csv)
    sessions/part-*.parquet the sessions snapshot (or sessions.jsonl / sessions.csv)

Parquet is a multi-file dataset (one ``part-NNNNN.parquet`` per chunk of the stream), so
exports are written with bounded memory and read by DuckDB/Spark as one table.

In pandas the history has these dtypes (what :func:`read_history` returns):

============== ======================================= ==========================================
column         pandas dtype                            files
============== ======================================= ==========================================
session_id     ``str``                                 string
flow           ``category``                            string
flow_version   ``category``                            string
version        ``int64``                               int64
ts             ``datetime64[ms, UTC]``                 timestamp(ms, UTC); ISO-8601 in JSONL/CSV
event          ``category``                            string
from_step      ``category`` (NaN at start)             string, null at start
to_step        ``category``                            string
path           ``list<string>[pyarrow]``               list; JSONL array; CSV joined by ``>``
status         ``category``                            string
message_id     ``str`` (nullable)                      string
input          ``str`` (nullable)                      string (JSON text)
error          ``str`` (nullable)                      string
actor          ``category``                            string
why            ``str`` (nullable)                      string (JSON text: flowkit/engine/why.py)
============== ======================================= ==========================================

Reading accepts what other writers plausibly produce and normalises it (docs/history.md,
"Exports from other writers", lists every variant): timestamps as ISO-8601 with any offset
(converted to UTC; naive ones are taken as UTC), datetimes, or epoch numbers in seconds,
milliseconds, microseconds or nanoseconds (the unit read from the magnitude); ``path`` as a
list, a ``>``-joined string or a quoted list (``["a", "b"]``); the optional columns
(:data:`OPTIONAL`) left out; a re-prompt written with an empty path and an ``invalid_input``
error. Anything else raises :class:`~flowkit.errors.HistoryError` naming the file, the
column and an example of a bad value.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from flowkit.errors import HistoryError
from flowkit.flow.model import STATUSES, TERMINAL_STATUSES

Format = Literal["parquet", "jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("parquet", "jsonl", "csv")

HISTORY_COLUMNS = ("session_id", "flow", "flow_version", "version", "ts", "event", "from_step", "to_step", "path",
                   "status", "message_id", "input", "error", "actor", "why")
SESSION_COLUMNS = ("session_id", "flow", "flow_version", "version", "step", "status", "started_at", "updated_at")

EVENTS = ("start", "message", "service_result", "timeout", "command", "rollback", "recovery", "expire", "migrate",
          "delivery_failed")
ACTORS = ("runtime", "admin", "recovery", "simulator", "agent")  # agent: a person in a hand-off
STATUS_VALUES = STATUSES
TERMINAL = TERMINAL_STATUSES

PATH_SEPARATOR = ">"  # how CSV writes a path; step names never contain it (they are identifiers and '/')

TS = pa.timestamp("ms", tz="UTC")
HISTORY_SCHEMA = pa.schema([
    ("session_id", pa.string()), ("flow", pa.string()), ("flow_version", pa.string()), ("version", pa.int64()),
    ("ts", TS), ("event", pa.string()), ("from_step", pa.string()), ("to_step", pa.string()),
    ("path", pa.list_(pa.string())), ("status", pa.string()), ("message_id", pa.string()), ("input", pa.string()),
    ("error", pa.string()), ("actor", pa.string()), ("why", pa.string()),
])
SESSIONS_SCHEMA = pa.schema([
    ("session_id", pa.string()), ("flow", pa.string()), ("flow_version", pa.string()), ("version", pa.int64()),
    ("step", pa.string()), ("status", pa.string()), ("started_at", TS), ("updated_at", TS),
])

# Low-cardinality text becomes pandas categoricals: 10M rows of step names cost bytes, not strings.
HISTORY_CATEGORIES = ("flow", "flow_version", "event", "from_step", "to_step", "status", "actor")
SESSION_CATEGORIES = ("flow", "flow_version", "step", "status")
# Columns that may never be null.
REQUIRED = {
    "history": ("session_id", "flow", "flow_version", "version", "ts", "event", "status"),
    "sessions": ("session_id", "flow", "flow_version", "version", "status"),
}
# Columns another writer may leave out: filled with nulls (actor: taken as "runtime"). The others
# carry what the checks judge by (path: the steps a record went through) and are required.
OPTIONAL = {
    "history": ("message_id", "input", "error", "actor", "why"),
    "sessions": ("started_at", "updated_at"),
}
MEANING = {
    "history": "one row per commit: " + ", ".join(HISTORY_COLUMNS),
    "sessions": "one row per session: " + ", ".join(SESSION_COLUMNS),
}

Kind = Literal["history", "sessions"]


def schema_of(kind: Kind) -> pa.Schema:
    return HISTORY_SCHEMA if kind == "history" else SESSIONS_SCHEMA


# ---------------------------------------------------------------- time helpers


def to_ms(value: Any) -> int:
    """Epoch milliseconds from an int (ms), a datetime (naive = UTC), a pandas Timestamp or ISO-8601 text.

    >>> to_ms("2026-10-01T02:00:00+02:00")
    1790812800000
    >>> iso(to_ms("2026-10-01 00:00:00"))
    '2026-10-01T00:00:00.000Z'
    """
    if isinstance(value, bool):
        raise HistoryError(f"not a time: {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise HistoryError(f"not an ISO-8601 time: {value!r} (use e.g. 2026-10-01T12:00:00Z)") from None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    raise HistoryError(f"not a time: {value!r}")


def iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` (the JSONL/CSV form of a timestamp)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_timestamp(value: Any) -> pd.Timestamp:
    """A timezone-aware UTC ``pd.Timestamp`` from anything :func:`to_ms` accepts."""
    return pd.Timestamp(to_ms(value), unit="ms", tz="UTC")

