"""Export every session's history and a sessions snapshot from Redis (``flowkit export``).

Streaming, with bounded memory: session ids come from the store's SCAN (on every primary
of a cluster), ``batch`` sessions are fetched in one pipelined round trip, and rows are
written in chunks (Parquet part files, or appended JSONL/CSV), so memory holds one chunk,
not the store.

Each session is read *atomically*: a tiny read-only Lua script returns its state and its
whole history list together (both keys share the session's hash tag, so this works on
Redis Cluster too). A commit landing during the export is therefore either entirely in
the export or entirely not, and the snapshot always agrees with the last exported
record — a STATE_MISMATCH found in an export is real, never an artefact of exporting.
A state that fails its checksum or schema is left out of the snapshot (its history is
exported; the analysis then reports the session) and counted in ``export.json``.

``export.json`` records ``exported_at`` (taken when the export *starts*: every session is
read at or after it, so STUCK judged against it never flags a session that was active
when it was read), the flowkit version, the ``since``/``flow`` filters, whether the store
trims old history (``history_trimmed``), row counts and the SHA-256 of every file.

The ``messages`` table (:mod:`flowkit.history.messages`) holds the exported sessions'
transcripts, read in one more pipelined round trip per batch, after their histories: a
message that lands in between can be in ``messages`` without its commit in ``history``
(never the other way round for replies, which are written after their commit). A user
who never started a flow has no session to export, so neither do their messages.
``messages_trimmed`` says the store trims transcripts (it does when it trims history),
``messages_at_cap`` how many sessions had as many messages as it keeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from flowkit.batching import batched
from flowkit.errors import HistoryError
from flowkit.history.columns import FORMATS, Format, TableWriter, iso, write_meta
from flowkit.history.messages import MessagesWriter, message_rows, read_transcripts
from flowkit.store.atomic_read import read_sessions_atomic
from flowkit.store.files import private_dir, private_file

FLUSH_ROWS = 100_000  # rows buffered before a chunk is written (one Parquet row group)
MAX_LISTED = 100  # corrupt session ids listed in export.json
Progress = Callable[[int, int | None], None]


def _snapshot_row(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"session_id": state["session_id"], "flow": state["flow"], "flow_version": state["flow_version"],
            "version": state["version"], "step": state.get("step"), "status": state["status"],
            "started_at": state.get("started_at"), "updated_at": state.get("updated_at")}


class _RowWriter(Protocol):
    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None: ...


def _flush_full(w: _RowWriter, buf: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``buf`` once it holds a chunk's worth of rows; the buffer to go on with."""
    if len(buf) < FLUSH_ROWS:
        return buf
    w.write_rows(buf)
    return []


def _in_export(state: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]], flow: str | None) -> bool:
    """Does the session exist (a state or records) and belong to ``flow`` (when one is asked for)?"""
    if state is None and not records:
        return False
    name = state["flow"] if state is not None else records[-1]["flow"]
    return flow is None or name == flow


def _check_options(fmt: str, batch: int) -> None:
    if fmt not in FORMATS:
        raise HistoryError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if batch < 1:
        raise HistoryError("batch must be at least 1")


def _transcripts_into(buf: list[dict[str, Any]], store: Any, sids: list[str], keep: int | None,
                      since: int | None) -> int:
    """Append the message rows of ``sids`` (at or after ``since``) to ``buf``; how many of
    those transcripts are as long as the store keeps (older messages may be gone)."""
    at_cap = 0
    for sid, entries in read_transcripts(store, sids):
        at_cap += keep is not None and len(entries) >= keep
        buf.extend(r for r in message_rows(sid, entries) if since is None or (r["ts"] or 0) >= since)
    return at_cap


def export_store(store: Any, out_dir: str | Path, *, fmt: Format = "parquet", since: int | None = None,
                 flow: str | None = None, batch: int = 500, progress: Progress | None = None,
                 exported_at: int | None = None, rows_per_file: int = 1_000_000,
                 session_ids: Iterable[str] | None = None, partition_by: tuple[str, ...] = ()) -> dict[str, Any]:
    """Export ``store`` (a :class:`flowkit.store.Store`) into ``out_dir``; returns ``export.json``'s content.

    ``since`` (epoch ms) keeps only records at or after it, and only sessions that have
    such records; ``flow`` keeps only sessions of that flow; ``session_ids`` exports just
    those. ``progress(done, total)`` is called after every batch (``total`` is None: SCAN
    does not know it). ``partition_by`` (Parquet only; a subset of ``("flow", "day")``) writes
    the history as hive folders ``history/flow=NAME/day=YYYY-MM-DD/`` (:mod:`flowkit.history.partitioned`);
    the snapshot stays one dataset (one row per session).
    """
    from flowkit import __version__

    _check_options(fmt, batch)
    out = private_dir(out_dir)  # 0700: the files hold personal data (made 0600 at the end)
    started = exported_at if exported_at is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    hist_w = TableWriter(out, "history", fmt, rows_per_file=rows_per_file, partition_by=partition_by)
    sess_w = TableWriter(out, "sessions", fmt, rows_per_file=rows_per_file)
    msg_w = MessagesWriter(out, fmt, rows_per_file=rows_per_file)
    msg_buf: list[dict[str, Any]] = []
    at_cap = 0  # sessions whose transcript is as long as the store keeps: older messages may be gone
    keep = getattr(store, "transcript_keep", None)
    hist_buf: list[dict[str, Any]] = []
    sess_buf: list[dict[str, Any]] = []
    scanned = 0
    corrupt: list[str] = []
    # A store that keeps only the last N entries exports histories that start after version 1
    # on purpose; the analysis must not call that a VERSION_GAP.
    max_len = getattr(getattr(store, "config", None), "history_max_len", None)
    ids = session_ids if session_ids is not None else store.iter_session_ids()
    for sids in batched(ids, batch):
        kept: list[str] = []  # the sessions this batch exports: their transcripts follow
        for sid, state, why, records in read_sessions_atomic(store, sids):
            scanned += 1
            if not _in_export(state, records, flow):
                continue
            if why is not None:
                corrupt.append(sid)
            if since is not None:
                records = [r for r in records if r["ts"] >= since]
                if not records:
                    continue
            hist_buf.extend(records)
            kept.append(sid)
            if state is not None:
                sess_buf.append(_snapshot_row(state))
        at_cap += _transcripts_into(msg_buf, store, kept, keep, since)
        msg_buf = _flush_full(msg_w, msg_buf)
        hist_buf = _flush_full(hist_w, hist_buf)
        sess_buf = _flush_full(sess_w, sess_buf)
        if progress is not None:
            progress(scanned, None)
    hist_w.write_rows(hist_buf)
    sess_w.write_rows(sess_buf)
    msg_w.write_rows(msg_buf)
    meta: dict[str, Any] = {
        "exported_at": iso(started),
        "flowkit_version": __version__,
        "format": fmt,
        "since": iso(since) if since is not None else None,
        "flow": flow,
        "history_trimmed": max_len is not None,
        "history_max_len": max_len,
        "sessions_scanned": scanned,
        "corrupt_states": len(corrupt),
        "corrupt_sessions": corrupt[:MAX_LISTED],
        "history": hist_w.close(),
        "sessions": sess_w.close(),
        "messages": msg_w.close(),
        # the transcript is trimmed like the history (docs/decisions.md, "Transcripts")
        "messages_trimmed": keep is not None,
        "messages_at_cap": at_cap,
    }
    for path in (*hist_w.files, *sess_w.files, *msg_w.files, write_meta(out, meta)):
        private_file(path)
    return meta
