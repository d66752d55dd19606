"""The history export format: column names, types, reading, writing and validation.

This module is the contract of docs/design.md, "History export", in code. Other tools (DuckDB,
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
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from flowkit.errors import HistoryError
from flowkit.flow.model import STATUSES, TERMINAL_STATUSES
from flowkit.history.partitioned import clear_dataset, hive_values

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
_REQUIRED = {
    "history": ("session_id", "flow", "flow_version", "version", "ts", "event", "status"),
    "sessions": ("session_id", "flow", "flow_version", "version", "status"),
}
# Columns another writer may leave out: filled with nulls (actor: taken as "runtime"). The others
# carry what the checks judge by (path: the steps a record went through) and are required.
OPTIONAL = {
    "history": ("message_id", "input", "error", "actor", "why"),
    "sessions": ("started_at", "updated_at"),
}
_MEANING = {
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


# ---------------------------------------------------------------- normalising


def _bad(kind: Kind, source: str, column: str, why: str) -> HistoryError:
    return HistoryError(f"{source}: {kind} column {column!r} {why} ({_MEANING[kind]}; see docs/design.md, 'History export')")


def _example(arr: pa.ChunkedArray | pa.Array, mask: pa.Array | pa.ChunkedArray) -> str:
    bad = arr.filter(mask)
    return repr(bad[0].as_py()) if len(bad) else "?"


def _to_timestamp(arr: pa.ChunkedArray, kind: Kind, source: str, column: str) -> pa.ChunkedArray:
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is None:  # naive times are UTC by the contract
            arr = pc.assume_timezone(arr, "UTC") if len(arr) else arr.cast(pa.timestamp(t.unit, tz="UTC"))
        return arr.cast(TS)
    if pa.types.is_date(t):
        return arr.cast(pa.timestamp("ms")).cast(TS)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return pa.chunked_array([pa.array(_epoch_ms(arr.to_numpy(zero_copy_only=False), kind, source, column),
                                          pa.int64(), mask=pc.is_null(arr).to_numpy(zero_copy_only=False)).cast(TS)])
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(len(arr), TS)])
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return arr.cast(TS)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        # Mixed offsets, naive text (taken as UTC) or epoch milliseconds as text: value by value.
        values = pd.Series(arr.to_pylist(), dtype=object)
        present = values.notna()
        digits = present & values.map(_numeric_text)
        ms = np.zeros(len(values), dtype=np.int64)
        if digits.any():
            ms[digits.to_numpy()] = _epoch_ms(np.array([float(v) for v in values[digits]]), kind, source, column)
        rest = present & ~digits
        parsed = pd.to_datetime(values[rest], utc=True, format="ISO8601", errors="coerce")
        if parsed.isna().any():
            bad = values[rest][parsed.isna()].iloc[0]
            raise _bad(kind, source, column, f"is not an ISO-8601 time: {bad!r} (use e.g. 2026-10-01T12:00:00Z)")
        ms[rest.to_numpy()] = parsed.astype("datetime64[ms, UTC]").array.asi8
        return pa.chunked_array([pa.array(ms, pa.int64(), mask=~present.to_numpy()).cast(TS)])
    raise _bad(kind, source, column, f"has type {t}; expected timestamp, epoch milliseconds or ISO-8601 text")


# Epoch numbers from other writers come in seconds, milliseconds, microseconds or nanoseconds.
# The unit is read from the magnitude, which is unambiguous for any date from 1973 to 5138:
# below 1e11 only seconds make sense (as milliseconds it would be before March 1973), and
# each further unit is 1000 times larger. One column must use one unit.
_EPOCH_UNITS = ((1e11, 1000.0, "seconds"), (1e14, 1.0, "milliseconds"), (1e17, 1e-3, "microseconds"),
                (np.inf, 1e-6, "nanoseconds"))


def _epoch_ms(values: np.ndarray, kind: Kind, source: str, column: str) -> np.ndarray:
    """Epoch numbers in one unit (found from their magnitude) as int64 milliseconds; NaN -> 0 (masked by the caller)."""
    v = np.asarray(values, dtype=np.float64)
    mag = np.abs(np.nan_to_num(v, nan=0.0))
    seen = mag > 0
    unit = np.searchsorted([u[0] for u in _EPOCH_UNITS], mag, side="right")
    used = sorted(set(unit[seen].tolist()))
    if len(used) > 1:
        examples = ", ".join(f"{_EPOCH_UNITS[u][2]} (e.g. {v[seen & (unit == u)][0]:.0f})" for u in used)
        raise _bad(kind, source, column, f"mixes epoch units: {examples}; write one unit per column, or ISO-8601 text")
    factor = _EPOCH_UNITS[used[0]][1] if used else 1.0
    if not np.isfinite(v[seen]).all():
        raise _bad(kind, source, column, "holds a non-finite number; expected an epoch time or ISO-8601 text")
    return np.rint(np.nan_to_num(v, nan=0.0) * factor).astype(np.int64)


def _numeric_text(v: object) -> bool:
    """'1764583200', '1764583200123' or '1764583200.5': an epoch number written as text."""
    if not isinstance(v, str):
        return False
    head, _, tail = v.strip().lstrip("-").partition(".")
    return head.isdigit() and (not tail or tail.isdigit())


def _to_int(arr: pa.ChunkedArray, kind: Kind, source: str, column: str) -> pa.ChunkedArray:
    t = arr.type
    if pa.types.is_integer(t):
        return arr.cast(pa.int64())
    if pa.types.is_floating(t):
        frac = pc.not_equal(pc.floor(arr), arr)
        if pc.any(frac).as_py():
            raise _bad(kind, source, column, f"must hold whole numbers; got {_example(arr, frac)}")
        return arr.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return arr.cast(pa.int64())
        except pa.ArrowInvalid:
            ok = pc.match_substring_regex(arr, r"^\s*-?\d+\s*$")
            raise _bad(kind, source, column, f"must be an integer (int64); got {_example(arr, pc.invert(ok))}") from None
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(len(arr), pa.int64())])
    raise _bad(kind, source, column, f"has type {t}; expected int64")


def _to_string(arr: pa.ChunkedArray, kind: Kind, source: str, column: str) -> pa.ChunkedArray:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type) if not isinstance(arr, pa.ChunkedArray) else pa.chunked_array(
            [c.dictionary_decode() for c in arr.chunks], type=t.value_type)
        t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t) or pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        # Labels like flow_version "3" may arrive as numbers from a CSV or JSON writer.
        return arr.cast(pa.string())
    if pa.types.is_floating(t):
        frac = pc.not_equal(pc.floor(arr), arr)
        if not pc.any(frac).as_py():
            return arr.cast(pa.int64()).cast(pa.string())
        return arr.cast(pa.string())
    if column == "input" and (pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_map(t)):
        # A JSONL writer may have kept the payload as an object; the contract is JSON text.
        return pa.chunked_array([pa.array([None if v is None else json.dumps(v, sort_keys=True, separators=(",", ":"))
                                           for v in arr.to_pylist()], pa.string())])
    raise _bad(kind, source, column, f"has type {t}; expected text")


def _to_path(arr: pa.ChunkedArray, kind: Kind, source: str, column: str) -> pa.ChunkedArray:
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        if pa.types.is_dictionary(vt):
            arr = pa.chunked_array([pa.ListArray.from_arrays(c.offsets, c.values.dictionary_decode()) for c in arr.chunks])
        elif pa.types.is_null(vt) or pa.types.is_large_string(vt):
            arr = arr.cast(pa.list_(pa.string()))
        elif not pa.types.is_string(vt):
            raise _bad(kind, source, column, f"must be a list of step names; got a list of {vt}")
        arr = arr.cast(pa.list_(pa.string()))
        return pc.if_else(pc.is_null(arr), pa.scalar([], pa.list_(pa.string())), arr) if arr.null_count else arr
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        arr = arr.cast(pa.string())
        if pc.any(pc.starts_with(pc.utf8_trim_whitespace(pc.fill_null(arr, "")), "[")).as_py():
            return _quoted_paths(arr, kind, source, column)
        # The CSV form: steps joined by '>', empty when the session stayed put.
        filled = pc.fill_null(arr, "")
        split = pc.split_pattern(filled, PATH_SEPARATOR)
        empty = pc.equal(filled, "")
        return pc.if_else(empty, pa.scalar([], pa.list_(pa.string())), split).cast(pa.list_(pa.string()))
    raise _bad(kind, source, column, f"has type {t}; expected a list of step names (or text joined by '>')")


def _quoted_paths(arr: pa.ChunkedArray, kind: Kind, source: str, column: str) -> pa.ChunkedArray:
    """Paths that another writer kept as list text: JSON (``["a", "b"]``), Python-style
    (``['a', 'b']``) or bare (``[a, b]``); ``>``-joined text may sit beside them."""
    out: list[list[str]] = []
    for v in arr.to_pylist():
        text = (v or "").strip()
        if not text.startswith("["):
            out.append([p.strip() for p in text.split(PATH_SEPARATOR)] if text else [])
            continue
        if not text.endswith("]"):
            raise _bad(kind, source, column, f"holds an unterminated list {v!r}; expected e.g. [\"ask_size\", \"ask_qty\"]")
        try:
            items = json.loads(text)
        except ValueError:
            # Step names are identifiers joined by '/': no commas, quotes or brackets inside.
            items = [p.strip().strip("'\"").strip() for p in text[1:-1].split(",")]
            items = [p for p in items if p]
        if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
            raise _bad(kind, source, column, f"holds {v!r}; expected a list of step names")
        out.append(items)
    return pa.chunked_array([pa.array(out, pa.list_(pa.string()))])


def normalize_table(table: pa.Table, kind: Kind = "history", *, source: str = "<data>") -> pa.Table:
    """Check ``table`` against the documented columns and cast it to the canonical Arrow schema.

    Extra columns are dropped; missing or ill-typed columns raise :class:`HistoryError`.
    """
    schema = schema_of(kind)
    table = _fill_optional(table, kind)
    missing = [c for c in schema.names if c not in table.column_names]
    if missing:
        raise HistoryError(
            f"{source}: {kind} is missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(expected {_MEANING[kind]}; see docs/design.md, 'History export')")
    cols = []
    for f in schema:
        arr = _normalize_column(table.column(f.name), f, kind, source)
        if f.name in _REQUIRED[kind]:
            _check_required(arr, kind, source, f.name)
        cols.append(arr)
    out = pa.Table.from_arrays(cols, schema=schema)
    _check_values(out, kind, source)
    return canonical_reprompts(out) if kind == "history" else out


def _fill_optional(table: pa.Table, kind: Kind) -> pa.Table:
    for name in OPTIONAL[kind]:
        if name not in table.column_names:
            fill = pa.array(["runtime"] * len(table), pa.string()) if name == "actor" else pa.nulls(len(table))
            table = table.append_column(name, fill)
    return table


def canonical_reprompts(table: pa.Table) -> pa.Table:
    """Write a re-prompt the way flowkit's engine does, whoever wrote the record.

    An invalid answer keeps the session at its question: flowkit records the retry
    self-edge (``path == [step]``); other writers record an empty path with the
    ``invalid_input`` error. Both mean the same, so the checks (RETRY_LOOP above all) see
    one form: a ``message`` record with an empty path, ``from_step == to_step`` and an
    ``invalid_input`` error gets ``path = [step]``. Needs ``event``, ``from_step``,
    ``to_step``, ``path`` and ``error``; a table without them is returned as it is.
    """
    names = set(table.column_names)
    if not {"event", "from_step", "to_step", "path", "error"} <= names or not len(table):
        return table
    def text(name: str) -> pa.ChunkedArray:
        arr = table.column(name)
        return arr.cast(pa.string()) if pa.types.is_dictionary(arr.type) else arr
    frm = text("from_step")
    error = pc.fill_null(text("error"), "")
    mask = pc.and_(pc.and_(pc.equal(pc.list_value_length(pc.fill_null(table.column("path"), pa.scalar([], pa.list_(pa.string())))), 0),
                           pc.equal(text("event"), "message")),
                   pc.and_(pc.equal(frm, text("to_step")), pc.starts_with(error, "invalid_input")))
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return table
    n = len(table)
    single = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), frm.combine_chunks())
    path = pc.if_else(mask, single, table.column("path").combine_chunks().cast(pa.list_(pa.string())))
    i = table.column_names.index("path")
    return table.set_column(i, table.schema.field(i).with_type(pa.list_(pa.string())), path)


def _check_required(arr: pa.ChunkedArray, kind: Kind, source: str, column: str) -> None:
    empty = pc.is_null(arr)
    if pa.types.is_string(arr.type):
        empty = pc.or_(empty, pc.equal(pc.fill_null(arr, ""), ""))
    n = pc.sum(empty).as_py() or 0
    if n:
        row = pc.index(empty, True).as_py()
        raise _bad(kind, source, column, f"is empty in {n} row(s), first at row {row}; it is required")


def _check_values(table: pa.Table, kind: Kind, source: str, only: Sequence[str] | None = None) -> None:
    checks: list[tuple[str, Sequence[str]]] = [("status", STATUS_VALUES)]
    if kind == "history":
        checks.append(("event", EVENTS))
    for column, allowed in checks:
        if only is not None and column not in only:
            continue
        values = pc.unique(table.column(column)).to_pylist()
        bad = sorted(str(v) for v in values if v is not None and v not in allowed)
        if bad:
            raise _bad(kind, source, column, f"has unknown value(s) {', '.join(map(repr, bad[:5]))}; allowed: {', '.join(allowed)}")
    if kind == "history" and (only is None or "version" in only):
        v = table.column("version")
        if len(v) and pc.min(v).as_py() < 1:
            raise _bad(kind, source, "version", f"must be >= 1 (1 is the first commit); got {pc.min(v).as_py()}")


def table_to_frame(table: pa.Table, kind: Kind = "history") -> pd.DataFrame:
    """The canonical pandas form of a normalised table (categoricals, UTC timestamps, list paths)."""
    categories = HISTORY_CATEGORIES if kind == "history" else SESSION_CATEGORIES
    cols = {}
    for name in table.column_names:
        arr = table.column(name)
        if name in categories:
            arr = arr.dictionary_encode()  # arrow dictionaries become pandas categoricals without a string round trip
        cols[name] = arr
    t = pa.table(cols)
    df = t.to_pandas(types_mapper=lambda typ: pd.ArrowDtype(typ) if pa.types.is_list(typ) else None,
                     split_blocks=True, self_destruct=True)
    for name in categories:
        if name in df.columns and not isinstance(df[name].dtype, pd.CategoricalDtype):
            df[name] = df[name].astype("category")
    return df


def frame_to_table(df: pd.DataFrame, kind: Kind = "history", *, source: str = "<DataFrame>") -> pa.Table:
    """A DataFrame with the documented columns (any reasonable dtypes) as a canonical Arrow table."""
    missing = [c for c in schema_of(kind).names if c not in df.columns and c not in OPTIONAL[kind]]
    if missing:
        raise HistoryError(f"{source}: {kind} is missing column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(map(repr, missing))} (expected {_MEANING[kind]})")
    cols = {}
    for name in schema_of(kind).names:
        if name not in df.columns:
            continue  # an optional column: normalize_table fills it
        s = df[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object).where(s.notna(), None)
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC")
        try:
            cols[name] = pa.chunked_array([pa.array(s, from_pandas=True)]) if len(s) else pa.chunked_array([], type=_guess(s))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if name == "path":
                raise _bad(kind, source, name, f"must be a list of step names: {exc}") from None
            # Mixed types (numbers and text): as text, so the column check names a bad value.
            text = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v))
            cols[name] = pa.chunked_array([pa.array(text, type=pa.string(), from_pandas=True)])
    return normalize_table(pa.table(cols), kind, source=source)


def _guess(s: pd.Series) -> pa.DataType:
    try:
        return pa.array(s.iloc[:0], from_pandas=True).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.null()


def normalize(df: pd.DataFrame, kind: Kind = "history", *, source: str = "<DataFrame>") -> pd.DataFrame:
    """Validate a DataFrame against the documented columns and return it with the canonical dtypes.

    Already-canonical frames (what :func:`read_history` returns) pass through unchanged, so
    analysis functions call this on whatever they are given at no cost.
    """
    if is_canonical(df, kind):
        if kind == "history" and len(df) and _empty_path_reprompts(df):
            return table_to_frame(canonical_reprompts(frame_to_table(df, kind, source=source)), kind)
        return df
    return table_to_frame(frame_to_table(df, kind, source=source), kind)


def _empty_path_reprompts(df: pd.DataFrame) -> bool:
    """A cheap look for rows canonical_reprompts would rewrite (flowkit's own exports have none)."""
    candidates = df["error"].str.startswith("invalid_input", na=False)
    return bool(candidates.any() and (candidates & (df["path"].list.len() == 0)).any())


def is_canonical(df: pd.DataFrame, kind: Kind = "history") -> bool:
    schema = schema_of(kind)
    if list(df.columns[: len(schema.names)]) != list(schema.names):
        return False
    categories = HISTORY_CATEGORIES if kind == "history" else SESSION_CATEGORIES
    for f in schema:
        d = df[f.name].dtype
        if f.name in categories:
            ok = isinstance(d, pd.CategoricalDtype)
        elif f.type == TS:
            ok = isinstance(d, pd.DatetimeTZDtype) and str(d.tz) == "UTC" and d.unit == "ms"
        elif f.type == pa.int64():
            ok = d == np.int64
        elif pa.types.is_list(f.type):
            ok = isinstance(d, pd.ArrowDtype) and pa.types.is_list(d.pyarrow_dtype)
        else:
            ok = isinstance(d, pd.StringDtype) or d == np.dtype(object)
        if not ok:
            return False
    return True


def empty_frame(kind: Kind = "history") -> pd.DataFrame:
    return table_to_frame(schema_of(kind).empty_table(), kind)


# ---------------------------------------------------------------- locating files


@dataclass(frozen=True)
class Located:
    """Where an export's tables are and in which format (``None`` when a table is absent)."""

    root: Path
    history: Path | None
    history_format: Format | None
    sessions: Path | None
    sessions_format: Format | None
    meta: Path | None


def _table_path(root: Path, name: str) -> tuple[Path | None, Format | None]:
    d = root / name
    if d.is_dir():
        return d, "parquet"
    for fmt, suffix in (("parquet", ".parquet"), ("jsonl", ".jsonl"), ("csv", ".csv")):
        p = root / f"{name}{suffix}"
        if p.is_file():
            return p, fmt  # type: ignore[return-value]  # (fmt was checked against FORMATS)
    return None, None


def format_of(path: Path) -> Format:
    if path.is_dir():
        return "parquet"
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    for fmt, suffixes in (("parquet", (".parquet", ".pq")), ("jsonl", (".jsonl", ".ndjson", ".json", ".jsonl.gz")),
                          ("csv", (".csv", ".csv.gz"))):
        if suffix.lower() in suffixes:
            return fmt  # type: ignore[return-value]  # (fmt was checked against FORMATS)
    raise HistoryError(f"{path}: unknown file type {path.suffix!r}; use .parquet, .jsonl or .csv (or an export folder)")


def locate_export(path: str | Path) -> Located:
    """Find the tables of an export folder, or treat ``path`` as a single history file/dataset."""
    p = Path(path)
    if not p.exists():
        raise HistoryError(f"{p}: no such file or folder")
    if p.is_dir() and ((p / "export.json").exists() or _table_path(p, "history")[0] is not None):
        h, hf = _table_path(p, "history")
        s, sf = _table_path(p, "sessions")
        meta = p / "export.json"
        if h is None:
            raise HistoryError(f"{p}: export folder without history (expected history/, history.jsonl or history.csv)")
        return Located(p, h, hf, s, sf, meta if meta.exists() else None)
    return Located(p.parent, p, format_of(p), None, None, None)


# ---------------------------------------------------------------- reading


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(f for f in path.rglob("*.parquet") if f.is_file())
    return files


def read_table(path: str | Path, kind: Kind = "history", *, fmt: Format | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """Read one table of an export (any format) as a canonical Arrow table.

    ``columns`` limits what is read from Parquet (the others come back empty-typed);
    analysis reads only what it needs, which is what keeps 10M rows cheap.
    """
    p = Path(path)
    fmt = fmt or format_of(p)
    source = str(p)
    schema = schema_of(kind)
    try:
        if fmt == "parquet":
            files = _parquet_files(p)
            if not files:
                return schema.empty_table()
            want = list(columns) if columns is not None else None
            # What a re-prompt means needs its error (canonical_reprompts): read it along with
            # the path even when the caller does not want it, and blank it again afterwards.
            extra = ["error"] if want is not None and kind == "history" and "path" in want and "error" not in want else []
            tables = []
            for f in files:
                present = pq.read_schema(f).names
                # Hive folders (flow=NAME/...) hold the columns the files leave out (flowkit.history.partitioned).
                hive = {k: v for k, v in hive_values(f, p).items() if k in schema.names and k not in present}
                cols = [c for c in (want + extra if want is not None else present) if c in present]
                missing = [c for c in schema.names if c not in present and c not in hive and (want is None or c in want)
                           and c not in OPTIONAL[kind]]
                if missing:
                    raise HistoryError(f"{f}: {kind} is missing column{'s' if len(missing) > 1 else ''} "
                                       f"{', '.join(map(repr, missing))} (expected {_MEANING[kind]}; see docs/design.md, 'History export')")
                part = pq.read_table(f, columns=cols)
                for k, v in hive.items():
                    part = part.append_column(k, pa.repeat(pa.scalar(v, pa.string()), part.num_rows))
                tables.append(_fill_optional(part, kind).select(
                    [c for c in (want + extra if want is not None else schema.names)
                     if c in present or c in hive or c in OPTIONAL[kind]]))
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
            if want is not None:
                # Fill the columns not read with typed nulls so the table has the whole schema.
                for fld in schema:
                    if fld.name not in table.column_names:
                        table = table.append_column(fld.name, pa.nulls(len(table), fld.type))
                table = table.select(schema.names)
                table = _normalize_partial(table, kind, source, want + [c for c in extra if c in table.column_names])
                for c in extra:
                    i = table.column_names.index(c)
                    table = table.set_column(i, table.schema.field(i), pa.nulls(len(table), table.schema.field(i).type))
                return table
        elif fmt == "jsonl":
            if p.stat().st_size == 0:
                return schema.empty_table()
            try:
                table = pajson.read_json(p, parse_options=pajson.ParseOptions(newlines_in_values=False))
            except pa.ArrowInvalid:
                # Mixed types in a column (a number here, text there): read line by line so the
                # error names the column and shows the bad value.
                return frame_to_table(_jsonl_frame(p), kind, source=source)
        elif fmt == "csv":
            with p.open(encoding="utf-8") as fh:
                header = fh.readline().strip().split(",")
            if header == [""]:
                return schema.empty_table()
            # Everything as text first: labels like flow_version "3" must not become numbers.
            table = pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(
                column_types={c.strip('"'): pa.string() for c in header}, strings_can_be_null=True, null_values=[""],
                quoted_strings_can_be_null=False))
            # A quoted "" stays an empty string; for optional text columns that means null too.
        else:  # pragma: no cover - Format is closed
            raise HistoryError(f"unknown format {fmt!r}")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"{source}: cannot read {kind} as {fmt}: {exc}") from None
    return normalize_table(table, kind, source=source)


def _normalize_partial(table: pa.Table, kind: Kind, source: str, want: Sequence[str]) -> pa.Table:
    """Normalise only the read columns (the placeholders are typed nulls and are not checked)."""
    schema = schema_of(kind)
    cols = []
    for f in schema:
        arr = table.column(f.name)
        if f.name in want:
            full = _normalize_column(arr, f, kind, source)
            if f.name in _REQUIRED[kind]:
                _check_required(full, kind, source, f.name)
            cols.append(full)
        else:
            cols.append(arr.cast(f.type))
    out = pa.Table.from_arrays(cols, schema=schema)
    _check_values(out, kind, source, only=want)
    if kind == "history" and {"event", "from_step", "to_step", "path", "error"} <= set(want):
        out = canonical_reprompts(out)
    return out


def _normalize_column(arr: pa.ChunkedArray, f: pa.Field, kind: Kind, source: str) -> pa.ChunkedArray:
    if f.type == TS:
        return _to_timestamp(arr, kind, source, f.name)
    if f.type == pa.int64():
        return _to_int(arr, kind, source, f.name)
    if pa.types.is_list(f.type):
        return _to_path(arr, kind, source, f.name)
    return _to_string(arr, kind, source, f.name)


def _jsonl_frame(p: Path) -> pd.DataFrame:
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise HistoryError(f"{p}:{n}: not a JSON line: {exc}") from None
    return pd.DataFrame(rows)


def read_history(path: str | Path, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The history of an export folder (or a history file/dataset) as a DataFrame with the canonical dtypes."""
    loc = locate_export(path)
    assert loc.history is not None and loc.history_format is not None
    return table_to_frame(read_table(loc.history, "history", fmt=loc.history_format, columns=columns), "history")


def read_sessions(path: str | Path) -> pd.DataFrame | None:
    """The sessions snapshot of an export folder, or None when the export has none."""
    loc = locate_export(path)
    if loc.sessions is None or loc.sessions_format is None:
        return None
    return table_to_frame(read_table(loc.sessions, "sessions", fmt=loc.sessions_format), "sessions")


def read_meta(path: str | Path) -> dict[str, Any]:
    """``export.json`` of an export folder (``{}`` when there is none)."""
    loc = locate_export(path)
    if loc.meta is None:
        return {}
    try:
        meta = json.loads(loc.meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{loc.meta}: unreadable export.json: {exc}") from None
    if not isinstance(meta, dict):
        raise HistoryError(f"{loc.meta}: export.json must hold an object")
    if "exported_at" in meta:
        try:
            to_ms(meta["exported_at"])
        except HistoryError as exc:
            raise HistoryError(f"{loc.meta}: exported_at: {exc}") from None
    return meta


@dataclass(frozen=True)
class Export:
    """An export read into memory: the history, the sessions snapshot (or None) and ``export.json``."""

    history: pd.DataFrame
    sessions: pd.DataFrame | None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exported_at(self) -> pd.Timestamp | None:
        v = self.meta.get("exported_at")
        return utc_timestamp(v) if v is not None else None


def read_export(path: str | Path, *, columns: Sequence[str] | None = None) -> Export:
    """Read a whole export folder (or a single history file)."""
    return Export(read_history(path, columns=columns), read_sessions(path), read_meta(path))


# ---------------------------------------------------------------- writing


def rows_to_table(rows: Sequence[Mapping[str, Any]], kind: Kind = "history") -> pa.Table:
    """Plain dicts (store records or states; times in epoch ms or datetimes) as a canonical table."""
    schema = schema_of(kind)
    arrays = []
    for f in schema:
        name = f.name
        if kind == "history" and name == "path":
            paths = [r.get("path") for r in rows]
            if not all(type(x) is list for x in paths):  # noqa: E721 - lists (the store's) need no copy
                paths = [list(x or ()) for x in paths]
            arrays.append(pa.array(paths, f.type))
            continue
        if kind == "history" and name == "actor":
            values: list[Any] = [r.get("actor") or "runtime" for r in rows]
        else:
            values = [r.get(name) for r in rows]
        if f.type == TS:
            if all(type(v) is int for v in values):  # noqa: E721 - the store's epoch ms, the fast common case
                arrays.append(pa.array(values, pa.int64()).cast(TS))
            else:
                arrays.append(pa.array([None if v is None else to_ms(v) for v in values], pa.int64()).cast(TS))
        elif f.type == pa.int64():
            arrays.append(pa.array([None if v is None else int(v) for v in values], pa.int64()))
        else:
            try:
                arrays.append(pa.array(values, pa.string()))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return normalize_table(pa.Table.from_arrays(arrays, schema=schema), kind, source="<records>")


def _jsonl_lines(table: pa.Table) -> Iterable[str]:
    """JSON lines with times as ISO-8601 UTC strings (the JSONL form of the contract)."""
    cols = {}
    for f in table.schema:
        arr = table.column(f.name)
        if f.type == TS:
            cols[f.name] = [None if v is None else iso(v) for v in arr.cast(pa.int64()).to_pylist()]
        else:
            cols[f.name] = arr.to_pylist()
    names = table.schema.names
    for i in range(table.num_rows):
        yield json.dumps({n: cols[n][i] for n in names}, ensure_ascii=False, separators=(",", ":"))


def _csv_table(table: pa.Table) -> pa.Table:
    cols = []
    for f in table.schema:
        arr = table.column(f.name)
        if f.type == TS:
            arr = pa.chunked_array([pa.array([None if v is None else iso(v) for v in arr.cast(pa.int64()).to_pylist()], pa.string())])
        elif pa.types.is_list(f.type):
            joined = pc.binary_join(arr, PATH_SEPARATOR) if len(arr) else pa.chunked_array([], pa.string())
            arr = joined
        cols.append(arr)
    return pa.Table.from_arrays(cols, names=table.schema.names)


class Chunked(Protocol):
    """What :func:`write_chunk` keeps between chunks (a table writer's own fields)."""

    path: Path
    fmt: Format
    files: list[Path]
    rows_per_file: int
    row_group_size: int
    _pq: pq.ParquetWriter | None
    _pq_rows: int


def write_chunk(w: Chunked, table: pa.Table, schema: pa.Schema) -> None:
    """Append ``table`` to a dataset: Parquet parts of ``rows_per_file`` rows in a folder, or
    one JSONL/CSV file appended to (the export's tables all stream this way)."""
    if w.fmt == "parquet":
        offset = 0
        while offset < table.num_rows:
            if w._pq is None:
                f = w.path / f"part-{len(w.files):05d}.parquet"
                w.files.append(f)
                w._pq = pq.ParquetWriter(f, schema, compression="zstd")
                w._pq_rows = 0
            take = min(table.num_rows - offset, w.rows_per_file - w._pq_rows)
            w._pq.write_table(table.slice(offset, take), row_group_size=w.row_group_size)
            w._pq_rows += take
            offset += take
            if w._pq_rows >= w.rows_per_file:
                w._pq.close()
                w._pq = None
    elif w.fmt == "jsonl":
        with w.path.open("a", encoding="utf-8") as text_out:
            for line in _jsonl_lines(table):
                text_out.write(line + "\n")
    else:
        with w.path.open("ab") as bin_out:
            pacsv.write_csv(_csv_table(table), bin_out, write_options=pacsv.WriteOptions(include_header=False,
                                                                                         quoting_style="needed"))


class TableWriter:
    """Streams one table of an export to disk in chunks, with bounded memory.

    Parquet: a ``part-NNNNN.parquet`` file per ``rows_per_file`` rows in a folder.
    JSONL/CSV: one file, appended chunk by chunk. ``close()`` returns the files written
    with their SHA-256 and the row count.
    """

    def __init__(self, root: str | Path, kind: Kind, fmt: Format = "parquet", *, rows_per_file: int = 1_000_000,
                 row_group_size: int = 128_000, partition_by: Sequence[str] = ()) -> None:
        if fmt not in FORMATS:
            raise HistoryError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if partition_by and fmt != "parquet":
            raise HistoryError(f"--partition-by needs the parquet format, not {fmt}: hive folders hold Parquet files")
        self.partition_by = tuple(partition_by)
        self.root = Path(root)
        self.kind: Kind = kind
        self.fmt: Format = fmt
        self.rows_per_file = rows_per_file
        self.row_group_size = row_group_size
        self.rows = 0
        self.files: list[Path] = []
        self._pq: pq.ParquetWriter | None = None
        self._pq_rows = 0
        self._text: Any = None
        self._csv: pacsv.CSVWriter | None = None
        name = "history" if kind == "history" else "sessions"
        if fmt == "parquet":
            self.path = self.root / name
            self.path.mkdir(parents=True, exist_ok=True)
            clear_dataset(self.path)  # a re-export replaces the dataset, never mixes two (nor two layouts)
            if self.partition_by:
                from flowkit.history.partitioned import PartitionedWriter

                self._hive: Any = PartitionedWriter(self.path, schema_of(kind), self.partition_by,
                                                    rows_per_file=rows_per_file, row_group_size=row_group_size)
        else:
            self.path = self.root / f"{name}.{fmt}"
            self.root.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")
            self.files.append(self.path)
            if fmt == "csv":
                self._empty_csv_header()

    def _empty_csv_header(self) -> None:
        with self.path.open("w", encoding="utf-8", newline="") as f:
            f.write(",".join(f'"{n}"' for n in schema_of(self.kind).names) + "\n")

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.write_table(rows_to_table(rows, self.kind))

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.cast(schema_of(self.kind))
        self.rows += table.num_rows
        if self.partition_by:
            self._hive.write_table(table)
        else:
            write_chunk(self, table, schema_of(self.kind))

    def close(self) -> dict[str, Any]:
        if self.partition_by:
            self.files = self._hive.close()
            return {"rows": self.rows, "format": self.fmt, "layout": "hive", "partition_by": list(self.partition_by),
                    "files": {str(f.relative_to(self.root)): sha256_file(f) for f in self.files}}
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self.fmt == "parquet" and not self.files:
            # An empty export still has a readable (empty) dataset with the schema.
            f = self.path / "part-00000.parquet"
            pq.write_table(schema_of(self.kind).empty_table(), f)
            self.files.append(f)
        return {"rows": self.rows, "format": self.fmt,
                "files": {str(f.relative_to(self.root)): sha256_file(f) for f in self.files}}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_meta(root: str | Path, meta: Mapping[str, Any]) -> Path:
    p = Path(root) / "export.json"
    p.write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return p


def write_export(out_dir: str | Path, history: pd.DataFrame | pa.Table, sessions: pd.DataFrame | pa.Table | None = None,
                 *, fmt: Format = "parquet", exported_at: Any = None, extra: Mapping[str, Any] | None = None,
                 rows_per_file: int = 1_000_000, partition_by: Sequence[str] = ()) -> Path:
    """Write DataFrames (or Arrow tables) as an export folder, with ``export.json``.

    ``exported_at`` defaults to now; give the time the data was taken at for reproducible
    staleness (STUCK) checks.
    """
    from flowkit import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"flowkit_version": __version__, "format": fmt}
    tables: list[tuple[Kind, Any]] = [("history", history)]
    if sessions is not None:
        tables.append(("sessions", sessions))
    for kind, data in tables:
        table = data if isinstance(data, pa.Table) else frame_to_table(data, kind)
        w = TableWriter(out, kind, fmt, rows_per_file=rows_per_file,
                        partition_by=partition_by if kind == "history" else ())
        w.write_table(table)
        meta[kind] = w.close()
    meta["exported_at"] = iso(to_ms(exported_at) if exported_at is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    if extra:
        meta.update(extra)
    write_meta(out, meta)
    return out
