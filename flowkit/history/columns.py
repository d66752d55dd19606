"""The history export format, one import path for all of it (docs/design.md, "History export").

Each part lives in a module named for what it holds; this module re-exports them all, so
``from flowkit.history.columns import read_history`` keeps working:

- :mod:`~flowkit.history.schema`: the contract: column names, types, Arrow schemas, time helpers;
- :mod:`~flowkit.history.normalizing`: tables and frames from any writer to the canonical form;
- :mod:`~flowkit.history.reading`: finding and reading an export's tables and ``export.json``;
- :mod:`~flowkit.history.writing`: writing tables and exports in chunks, with checksums.
"""

from __future__ import annotations

from flowkit.history.normalizing import (
    canonical_reprompts,
    empty_frame,
    fill_optional,
    frame_to_table,
    is_canonical,
    normalize,
    normalize_partial,
    normalize_table,
    table_to_frame,
)
from flowkit.history.reading import (
    Export,
    Located,
    format_of,
    locate_export,
    parquet_files,
    read_export,
    read_history,
    read_meta,
    read_sessions,
    read_table,
)
from flowkit.history.schema import (
    ACTORS,
    EVENTS,
    FORMATS,
    HISTORY_CATEGORIES,
    HISTORY_COLUMNS,
    HISTORY_SCHEMA,
    MEANING,
    OPTIONAL,
    PATH_SEPARATOR,
    REQUIRED,
    SESSION_CATEGORIES,
    SESSION_COLUMNS,
    SESSIONS_SCHEMA,
    STATUS_VALUES,
    TERMINAL,
    TS,
    Format,
    Kind,
    iso,
    schema_of,
    to_ms,
    utc_timestamp,
)
from flowkit.history.writing import (
    Chunked,
    TableWriter,
    rows_to_table,
    sha256_file,
    write_chunk,
    write_export,
    write_meta,
)

_parquet_files = parquet_files  # the name the DuckDB and Dask engines import

__all__ = [
    "Format", "FORMATS", "HISTORY_COLUMNS", "SESSION_COLUMNS", "EVENTS", "ACTORS", "STATUS_VALUES",
    "TERMINAL", "PATH_SEPARATOR", "TS", "HISTORY_SCHEMA", "SESSIONS_SCHEMA", "HISTORY_CATEGORIES",
    "SESSION_CATEGORIES", "REQUIRED", "OPTIONAL", "MEANING", "Kind", "schema_of", "to_ms", "iso",
    "utc_timestamp", "normalize_table", "fill_optional", "canonical_reprompts", "table_to_frame",
    "frame_to_table", "normalize", "is_canonical", "empty_frame", "normalize_partial", "Located", "format_of",
    "locate_export", "parquet_files", "read_table", "read_history", "read_sessions", "read_meta", "Export",
    "read_export", "rows_to_table", "Chunked", "write_chunk", "TableWriter", "sha256_file", "write_meta",
    "write_export",
]
