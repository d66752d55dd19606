"""The ``messages`` table of an export: every message of every session, both directions.

One row per transcript entry (:mod:`flowkit.store.transcript`), in the same three formats as
the history (a ``messages/`` Parquet dataset, ``messages.jsonl`` or ``messages.csv``):

============ ====================================================================================
column       meaning
============ ====================================================================================
session_id   the session (the user's WhatsApp id)
ts           when flowkit received it (in) or Graph accepted it (out); UTC, ms
direction    ``in`` (from the user) or ``out`` (to the user)
wamid        WhatsApp's message id (null: a channel without ids)
kind         in: text, button_reply, list_reply, location, media, reaction, edit, revoke...;
             out: text, interactive, template, media
text         what the user typed or read (an emoji for a reaction; a template as ``[template name: params]``)
payload      JSON: the rest (a reply's buttons/list/template/media, a tapped id, a location...)
status       out: the furthest status WhatsApp reported (sent < delivered < read; failed); null: none yet
status_ts    when that status happened
error        out: the failure (``whatsapp:<code>``)
version      in: the session version the message produced (null: it changed nothing);
             out: the version whose outbox entry held the reply (null: a reply outside any commit)
actor        ``user``, ``bot`` or ``agent``
index        out: the reply's position in its outbox entry
sent_ts,     when each status was first reported (null: never); ``played`` (a voice message) counts as read
delivered_ts,
read_ts,
failed_ts
============ ====================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowkit.errors import FlowkitError, HistoryError
from flowkit.history.columns import FORMATS, TS, Format, sha256_file, write_chunk
from flowkit.history.partitioned import clear_dataset
from flowkit.store import transcript as tx

MESSAGE_COLUMNS = ("session_id", "ts", "direction", "wamid", "kind", "text", "payload", "status", "status_ts", "error",
                   "version", "actor", "index", "sent_ts", "delivered_ts", "read_ts", "failed_ts")
MESSAGES_SCHEMA = pa.schema([
    ("session_id", pa.string()), ("ts", TS), ("direction", pa.string()), ("wamid", pa.string()),
    ("kind", pa.string()), ("text", pa.string()), ("payload", pa.string()), ("status", pa.string()),
    ("status_ts", TS), ("error", pa.string()), ("version", pa.int64()), ("actor", pa.string()),
    ("index", pa.int64()), ("sent_ts", TS), ("delivered_ts", TS), ("read_ts", TS), ("failed_ts", TS),
])
_CATEGORIES = ("direction", "kind", "status", "actor")
NAME = "messages"


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def message_rows(session_id: str, entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A session's transcript (as :func:`flowkit.store.transcript.transcript` reads it) as table rows."""
    rows = []
    for e in entries:
        times = tx.status_times(e)
        rows.append({
            "session_id": session_id, "ts": _int(e.get("ts")), "direction": e.get("dir"), "wamid": e.get("wamid"),
            "kind": e.get("kind"), "text": e.get("text"),
            "payload": json.dumps(e.get("payload") or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            "status": e.get("status"), "status_ts": _int(e.get("status_ts")), "error": e.get("error"),
            "version": _int(e.get("version")), "actor": e.get("actor"), "index": _int(e.get("index")),
            **{f"{k}_ts": _int(v) for k, v in times.items()},
        })
    return rows


def rows_to_messages_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    arrays = []
    for f in MESSAGES_SCHEMA:
        values = [r.get(f.name) for r in rows]
        if f.type == TS:
            arrays.append(pa.array(values, pa.int64()).cast(TS))
        elif f.type == pa.int64():
            arrays.append(pa.array(values, pa.int64()))
        else:
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, schema=MESSAGES_SCHEMA)


def read_transcripts(store: Any, sids: Sequence[str]) -> list[tuple[str, list[tx.Entry]]]:
    """The transcripts of ``sids`` in one pipelined round trip (the export reads them per batch)."""
    cmds: list[Any] = [c for sid in sids for c in tx.read_commands(sid)]
    replies = store.driver.execute(cmds) if cmds else []
    try:
        return [(sid, tx.from_replies(sid, replies[2 * i], replies[2 * i + 1])) for i, sid in enumerate(sids)]
    except FlowkitError as exc:
        raise HistoryError(f"Redis refused a transcript read: {exc}") from exc


class MessagesWriter:
    """Streams the ``messages`` table to disk in chunks (like :class:`flowkit.history.columns.TableWriter`)."""

    def __init__(self, root: str | Path, fmt: Format = "parquet", *, rows_per_file: int = 1_000_000) -> None:
        if fmt not in FORMATS:
            raise HistoryError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.root = Path(root)
        self.fmt: Format = fmt
        self.rows_per_file = rows_per_file
        self.row_group_size = 128_000
        self.rows = 0
        self.files: list[Path] = []
        self._pq: pq.ParquetWriter | None = None
        self._pq_rows = 0
        if fmt == "parquet":
            self.path = self.root / NAME
            self.path.mkdir(parents=True, exist_ok=True)
            clear_dataset(self.path)  # a re-export replaces the dataset
        else:
            self.path = self.root / f"{NAME}.{fmt}"
            self.root.mkdir(parents=True, exist_ok=True)
            header = ",".join(f'"{n}"' for n in MESSAGE_COLUMNS) + "\n" if fmt == "csv" else ""
            self.path.write_text(header, encoding="utf-8")
            self.files.append(self.path)

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        table = rows_to_messages_table(rows)
        self.rows += table.num_rows
        write_chunk(self, table, MESSAGES_SCHEMA)

    def close(self) -> dict[str, Any]:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self.fmt == "parquet" and not self.files:
            f = self.path / "part-00000.parquet"
            pq.write_table(MESSAGES_SCHEMA.empty_table(), f)
            self.files.append(f)
        return {"rows": self.rows, "format": self.fmt,
                "files": {str(f.relative_to(self.root)): sha256_file(f) for f in self.files}}


def _locate(path: Path) -> tuple[Path, Format]:
    if (path / NAME).is_dir():
        return path / NAME, "parquet"
    text_formats: tuple[Format, ...] = ("jsonl", "csv")
    for fmt in text_formats:
        p = path / f"{NAME}.{fmt}"
        if p.is_file():
            return p, fmt
    raise HistoryError(f"{path}: no messages table (messages/, messages.jsonl or messages.csv); "
                       "export again with this flowkit version (`flowkit export`)")


def read_messages(path: str | Path) -> pd.DataFrame:
    """The ``messages`` table of an export folder, in time order per session, with UTC timestamps."""
    p, fmt = _locate(Path(path))
    try:
        if fmt == "parquet":
            files = sorted(p.glob("*.parquet"))
            table = pa.concat_tables([pq.read_table(f) for f in files]) if files else MESSAGES_SCHEMA.empty_table()
            df = table.cast(MESSAGES_SCHEMA).to_pandas()
        elif fmt == "jsonl":
            df = pd.read_json(p, lines=True, dtype=False) if p.stat().st_size else pd.DataFrame(columns=MESSAGE_COLUMNS)
        else:
            df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise HistoryError(f"{p}: cannot read the messages table as {fmt}: {exc}") from None
    missing = [c for c in MESSAGE_COLUMNS if c not in df.columns]
    if missing:
        raise HistoryError(f"{p}: the messages table lacks {', '.join(missing)}; expected {', '.join(MESSAGE_COLUMNS)}")
    df = df[list(MESSAGE_COLUMNS)].copy()
    for c in ("ts", "status_ts", "sent_ts", "delivered_ts", "read_ts", "failed_ts"):
        df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    for c in ("version", "index"):
        df[c] = pd.to_numeric(df[c]).astype("Int64")
    for c in ("session_id", "wamid", "text", "payload", "error"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    for c in _CATEGORIES:
        df[c] = df[c].astype("category")
    return df


__all__ = ["MESSAGES_SCHEMA", "MESSAGE_COLUMNS", "MessagesWriter", "message_rows", "read_messages", "read_transcripts",
           "rows_to_messages_table"]
