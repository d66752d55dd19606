"""Hive-partitioned Parquet (``history/flow=NAME/day=YYYY-MM-DD/part-NNNNN.parquet``).

The layout Spark, DuckDB (``hive_partitioning=true``), pyarrow.dataset, Dask and the
warehouses read as they are, and that lets them skip whole folders when a query names a
flow or a day. As those writers do, the partition columns live in the folder names, not in
the files: ``flow`` comes back from the path (flowkit's readers put it back, see
:func:`hive_values`), ``day`` is the UTC date of ``ts`` and is not a history column.

Values are percent-encoded in folder names (``quote(value, safe="")``), the encoding
pyarrow and Spark decode; flow names are identifiers, so in practice nothing is encoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowkit.errors import HistoryError

PARTITION_KEYS = ("flow", "day")  # what can be partitioned by
MAX_OPEN = 64  # open part files; the least recently used is closed past this (a new part starts next time)


def _segment(name: str) -> tuple[str, str] | None:
    """``flow=order_pizza`` -> ("flow", "order_pizza"); None for a folder that is not a hive key."""
    key, sep, value = name.partition("=")
    return (key, value) if sep and key.isascii() and key.isidentifier() else None


def parse_partition_by(text: str | None) -> tuple[str, ...]:
    """``"flow,day"`` as ``("flow", "day")``; ``None``/empty is no partitioning."""
    if not text:
        return ()
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in keys if k not in PARTITION_KEYS]
    if bad or len(set(keys)) != len(keys):
        raise HistoryError(f"cannot partition by {text!r}: use a comma-separated subset of "
                           f"{', '.join(PARTITION_KEYS)} (each once), e.g. flow,day")
    return keys


def hive_values(file: Path, root: Path) -> dict[str, str]:
    """The ``key=value`` folder names between ``root`` (a dataset folder) and ``file``; for a
    single file (``root == file``) those of its parent folders."""
    try:
        rel = file.parent.relative_to(root) if root != file else file.parent
    except ValueError:
        rel = file.parent
    out: dict[str, str] = {}
    for part in rel.parts:
        seg = _segment(part)
        if seg is not None:
            out[seg[0]] = unquote(seg[1])
    return out


def clear_dataset(path: Path) -> None:
    """Empty a dataset folder of its Parquet files, hive folders included: a re-export replaces the
    dataset, never mixes two exports or two layouts (every reader reads the folder recursively)."""
    path.mkdir(parents=True, exist_ok=True)
    for old in sorted(path.rglob("*.parquet")):
        old.unlink()
    for d in sorted((d for d in path.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        if _segment(d.name) is not None and not any(d.iterdir()):
            d.rmdir()


def day_of(ts: pa.ChunkedArray) -> pa.ChunkedArray:
    """UTC calendar date of each ``ts`` as ``YYYY-MM-DD``."""
    return pc.strftime(ts.cast(pa.timestamp("ms", tz="UTC")), format="%Y-%m-%d")


class PartitionedWriter:
    """Streams a canonical history into hive folders, ``rows_per_file`` rows per part file at
    most; rows keep their order inside a folder (the order that breaks ties of duplicates)."""

    def __init__(self, path: Path, schema: pa.Schema, partition_by: tuple[str, ...], *, rows_per_file: int,
                 row_group_size: int) -> None:
        self.path = path
        self.schema = schema
        self.partition_by = partition_by
        self.file_schema = pa.schema([f for f in schema if f.name not in partition_by])
        self.rows_per_file = rows_per_file
        self.row_group_size = row_group_size
        self.files: list[Path] = []
        self._open: dict[str, tuple[pq.ParquetWriter, int]] = {}  # folder -> (writer, rows in it), in use order
        self._parts: dict[str, int] = {}
        clear_dataset(path)

    def _folder(self, values: tuple[Any, ...]) -> str:
        return "/".join(f"{k}={quote(str(v), safe='')}" for k, v in zip(self.partition_by, values, strict=True))

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        keys = {}
        for k in self.partition_by:
            keys[k] = (day_of(table.column("ts")) if k == "day" else table.column(k)).to_pandas()
        groups = pd.DataFrame(keys).groupby(list(self.partition_by), sort=True, dropna=False).indices
        body = table.select(self.file_schema.names)
        for values, idx in groups.items():
            vals = values if isinstance(values, tuple) else (values,)
            if any(pd.isna(v) for v in vals):
                raise HistoryError(f"cannot partition rows with an empty {', '.join(self.partition_by)}: "
                                   "flow and ts are required columns (normalise the table first)")
            self._write(self._folder(vals), body.take(pa.array(idx)))

    def _write(self, folder: str, part: pa.Table) -> None:
        offset = 0
        while offset < part.num_rows:
            writer, rows = self._open.pop(folder, (None, 0))
            if writer is None:
                if len(self._open) >= MAX_OPEN:
                    oldest = next(iter(self._open))
                    self._open.pop(oldest)[0].close()
                n = self._parts.get(folder, 0)
                self._parts[folder] = n + 1
                f = self.path / folder / f"part-{n:05d}.parquet"
                f.parent.mkdir(parents=True, exist_ok=True)
                self.files.append(f)
                writer = pq.ParquetWriter(f, self.file_schema, compression="zstd")
            take = min(part.num_rows - offset, self.rows_per_file - rows)
            writer.write_table(part.slice(offset, take), row_group_size=self.row_group_size)
            rows += take
            offset += take
            if rows >= self.rows_per_file:
                writer.close()
            else:
                self._open[folder] = (writer, rows)  # re-inserted: the most recently used is last

    def close(self) -> list[Path]:
        for writer, _ in self._open.values():
            writer.close()
        self._open.clear()
        if not self.files:
            # An empty export still has a readable (empty) dataset with the whole schema.
            f = self.path / "part-00000.parquet"
            pq.write_table(self.schema.empty_table(), f)
            self.files.append(f)
        return self.files
