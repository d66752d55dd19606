"""Writing an export: records and frames as canonical tables, streamed to Parquet datasets or
JSONL/CSV files in chunks, with checksums and ``export.json``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from flowkit.errors import HistoryError
from flowkit.history.normalizing import frame_to_table, normalize_table
from flowkit.history.partitioned import clear_dataset
from flowkit.history.schema import FORMATS, PATH_SEPARATOR, TS, Format, Kind, iso, schema_of, to_ms

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
