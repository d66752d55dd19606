"""Reading an export: finding its tables (folder or single file, any format) and reading them
into canonical Arrow tables and DataFrames, with ``export.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from flowkit.errors import HistoryError
from flowkit.history.normalizing import (
    fill_optional,
    frame_to_table,
    normalize_partial,
    normalize_table,
    table_to_frame,
)
from flowkit.history.partitioned import hive_values
from flowkit.history.schema import MEANING, OPTIONAL, Format, Kind, schema_of, to_ms, utc_timestamp

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


def parquet_files(path: Path) -> list[Path]:
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
            files = parquet_files(p)
            if not files:
                return schema.empty_table()
            if columns is not None:
                return _read_parquet_columns(files, p, kind, source, list(columns))
            table = _read_parquet(files, p, kind, None, [])
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
            csv_table = _read_csv(p)
            if csv_table is None:
                return schema.empty_table()
            table = csv_table
        else:  # pragma: no cover - Format is closed
            raise HistoryError(f"unknown format {fmt!r}")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"{source}: cannot read {kind} as {fmt}: {exc}") from None
    return normalize_table(table, kind, source=source)


def _read_parquet(files: list[Path], root: Path, kind: Kind, want: list[str] | None, extra: list[str]) -> pa.Table:
    """The Parquet parts as one table: ``want`` (and ``extra``) columns, else all of them,
    with the columns hive folders hold and optional columns filled."""
    schema = schema_of(kind)
    tables = []
    for f in files:
        present = pq.read_schema(f).names
        # Hive folders (flow=NAME/...) hold the columns the files leave out (flowkit.history.partitioned).
        hive = {k: v for k, v in hive_values(f, root).items() if k in schema.names and k not in present}
        cols = [c for c in (want + extra if want is not None else present) if c in present]
        missing = [c for c in schema.names if c not in present and c not in hive and (want is None or c in want)
                   and c not in OPTIONAL[kind]]
        if missing:
            raise HistoryError(f"{f}: {kind} is missing column{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(map(repr, missing))} (expected {MEANING[kind]}; see docs/design.md, 'History export')")
        part = pq.read_table(f, columns=cols)
        for k, v in hive.items():
            part = part.append_column(k, pa.repeat(pa.scalar(v, pa.string()), part.num_rows))
        tables.append(fill_optional(part, kind).select(
            [c for c in (want + extra if want is not None else schema.names)
             if c in present or c in hive or c in OPTIONAL[kind]]))
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _read_parquet_columns(files: list[Path], root: Path, kind: Kind, source: str, want: list[str]) -> pa.Table:
    """Only the ``want`` columns, normalised; the others typed nulls so the table has the whole schema."""
    schema = schema_of(kind)
    # What a re-prompt means needs its error (canonical_reprompts): read it along with
    # the path even when the caller does not want it, and blank it again afterwards.
    extra = ["error"] if kind == "history" and "path" in want and "error" not in want else []
    table = _read_parquet(files, root, kind, want, extra)
    for fld in schema:
        if fld.name not in table.column_names:
            table = table.append_column(fld.name, pa.nulls(len(table), fld.type))
    table = table.select(schema.names)
    table = normalize_partial(table, kind, source, want + [c for c in extra if c in table.column_names])
    for c in extra:
        i = table.column_names.index(c)
        table = table.set_column(i, table.schema.field(i), pa.nulls(len(table), table.schema.field(i).type))
    return table


def _read_csv(p: Path) -> pa.Table | None:
    """A CSV table with every column as text (``None``: the file is empty)."""
    with p.open(encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    if header == [""]:
        return None
    # Everything as text first: labels like flow_version "3" must not become numbers.
    # A quoted "" stays an empty string; for optional text columns that means null too.
    return pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(
        column_types={c.strip('"'): pa.string() for c in header}, strings_can_be_null=True, null_values=[""],
        quoted_strings_can_be_null=False))


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

