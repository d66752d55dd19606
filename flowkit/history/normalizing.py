"""Normalising history and sessions tables from any writer to the canonical Arrow schema and
pandas dtypes (docs/history.md, "Exports from other writers"): timestamps, epoch units, paths,
optional columns, re-prompts; a bad value raises :class:`~flowkit.errors.HistoryError` naming
the file, the column and an example."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowkit.errors import HistoryError
from flowkit.history.schema import (
    EVENTS,
    HISTORY_CATEGORIES,
    MEANING,
    OPTIONAL,
    PATH_SEPARATOR,
    REQUIRED,
    SESSION_CATEGORIES,
    STATUS_VALUES,
    TS,
    Kind,
    schema_of,
)


def _bad(kind: Kind, source: str, column: str, why: str) -> HistoryError:
    return HistoryError(f"{source}: {kind} column {column!r} {why} ({MEANING[kind]}; see docs/design.md, 'History export')")


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
    table = fill_optional(table, kind)
    missing = [c for c in schema.names if c not in table.column_names]
    if missing:
        raise HistoryError(
            f"{source}: {kind} is missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(expected {MEANING[kind]}; see docs/design.md, 'History export')")
    cols = []
    for f in schema:
        arr = _normalize_column(table.column(f.name), f, kind, source)
        if f.name in REQUIRED[kind]:
            _check_required(arr, kind, source, f.name)
        cols.append(arr)
    out = pa.Table.from_arrays(cols, schema=schema)
    _check_values(out, kind, source)
    return canonical_reprompts(out) if kind == "history" else out


def fill_optional(table: pa.Table, kind: Kind) -> pa.Table:
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
                           f"{', '.join(map(repr, missing))} (expected {MEANING[kind]})")
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


def normalize_partial(table: pa.Table, kind: Kind, source: str, want: Sequence[str]) -> pa.Table:
    """Normalise only the read columns (the placeholders are typed nulls and are not checked)."""
    schema = schema_of(kind)
    cols = []
    for f in schema:
        arr = table.column(f.name)
        if f.name in want:
            full = _normalize_column(arr, f, kind, source)
            if f.name in REQUIRED[kind]:
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

