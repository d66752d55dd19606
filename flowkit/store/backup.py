"""``flowkit backup OUT`` / ``flowkit restore IN``: every session with its history, verified.

A backup is a JSON Lines file:

- a header ``{"format": "flowkit-backup", "version": 1, "created_at": ..., "flowkit": ...}``;
- one line per session: its keys exactly as stored (state hash, history entries with their
  ids, dedupe set, snapshots, outbox, TTL), read atomically per session by a Lua script,
  with ``sum``, the checksum of the line;
- a trailer ``{"end": true, "sessions": n, "sum": ...}`` (a file without it is incomplete).

Backing up writes ``OUT.partial`` and renames it at the end; if interrupted, running it
again continues after the last complete line. Restoring verifies every line's checksum and
every state's checksum (and that the last history entry describes that state) before
writing; a session already in Redis at the same or a newer version is left alone, so
restoring into a live Redis never goes back in time, and an interrupted restore is simply
run again. Derived indexes are updated for every restored session.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from flowkit.batching import batched
from flowkit.errors import BackupError
from flowkit.log import get_logger
from flowkit.store import codec
from flowkit.store import keys as K
from flowkit.store.codec import dumps, s
from flowkit.store.driver import Batch, Call
from flowkit.store.ops import _counter_cmds, _index_cmds, _triple, as_int, check, pairs
from flowkit.store.scripts import DUMP, RESTORE

log = get_logger("flowkit.store.backup")

FORMAT = "flowkit-backup"
FORMAT_VERSION = 1
Progress = Callable[[int, int | None], None]  # (sessions done, total if known)


@dataclass(frozen=True)
class BackupReport:
    path: str
    sessions: int
    resumed_from: int = 0  # sessions already in the partial file from an interrupted run
    skipped: tuple[str, ...] = ()  # sessions whose keys could not be read (corrupt: load() them first)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sessions": self.sessions, "resumed_from": self.resumed_from,
                "skipped": list(self.skipped)}


@dataclass(frozen=True)
class RestoreReport:
    path: str
    sessions: int  # lines read
    restored: int
    skipped_newer: int  # Redis already had this version or a newer one
    details: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sessions": self.sessions, "restored": self.restored,
                "skipped_newer": self.skipped_newer}


def _line_sum(obj: dict[str, Any]) -> str:
    return codec.checksum(dumps({k: v for k, v in obj.items() if k != "sum"}))


def _flat(reply: Any) -> list[str]:
    return [str(s(x)) for pair in pairs(reply) for x in pair]


def _session_line(sid: str, reply: Any) -> dict[str, Any] | None:
    if not reply:
        return None  # deleted since the scan
    state_raw, hist_raw, seen_raw, snap_raw, fx_raw, ttl = reply
    state = _flat(state_raw)
    fields = dict(zip(state[::2], state[1::2], strict=True))
    hist = [[str(s(eid)), [str(s(x)) for x in fields]] for eid, fields in hist_raw or []]
    seen = [x for member, score in pairs(seen_raw) for x in (str(as_int(score)), str(s(member)))]
    line = {"session_id": sid, "version": int(fields.get("version", "0")),
            "data": {"state": state, "hist": hist, "seen": seen, "snap": _flat(snap_raw), "fx": _flat(fx_raw),
                     "ttl": max(0, int(ttl))}}
    line["sum"] = _line_sum(line)
    return line


def _resume(partial: Path) -> tuple[set[str], int]:
    """Session ids already in a partial backup; cuts off a torn last line."""
    done: set[str] = set()
    good_end = 0
    with open(partial, "rb") as fh:
        header = fh.readline()
        try:
            if json.loads(header).get("format") != FORMAT:
                raise ValueError
        except ValueError:
            return set(), 0
        good_end = fh.tell()
        for raw in fh:
            try:
                line = json.loads(raw)
                if line.get("sum") != _line_sum(line) or not raw.endswith(b"\n"):
                    break
            except ValueError:
                break
            done.add(line["session_id"])
            good_end += len(raw)
    with open(partial, "r+b") as fh:
        fh.truncate(good_end)
    return done, good_end


def backup(store: Any, out: str | os.PathLike[str], *, batch: int = 200, resume: bool = True,
           progress: Progress | None = None) -> BackupReport:
    """Write every session of ``store`` (a :class:`~flowkit.store.Store`) to ``out``."""
    path = Path(out)
    partial = path.with_name(path.name + ".partial")
    done: set[str] = set()
    if resume and partial.exists():
        done, end = _resume(partial)
        if end == 0:
            partial.unlink()
    resumed = len(done)
    total = sum(c["sessions"] for c in store.counters().values()) or None
    mode = "ab" if partial.exists() else "wb"
    written = resumed
    skipped: list[str] = []
    try:
        fh = open(partial, mode)  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise BackupError(f"cannot write the backup: {exc}") from exc
    with fh:
        if mode == "wb":
            header = {"format": FORMAT, "version": FORMAT_VERSION, "flowkit": _flowkit_version(),
                      "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
            fh.write((dumps(header) + "\n").encode())
        for chunk in batched((sid for sid in store.iter_session_ids(batch) if sid not in done), batch):
            replies = store.driver.execute([Call(DUMP, K.session_keys(sid).all, ()) for sid in chunk])
            lines = []
            for sid, reply in zip(chunk, replies, strict=True):
                if isinstance(reply, Exception):
                    skipped.append(sid)
                    log.warning("session not backed up: its keys are unreadable", extra={"session_id": sid,
                                                                                       "error": str(reply)})
                    continue
                line = _session_line(sid, reply)
                if line is not None:
                    lines.append(dumps(line) + "\n")
            fh.write("".join(lines).encode())
            written += len(lines)
            if progress:
                progress(written, total)
        fh.write((dumps({"end": True, "sessions": written}) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)
    log.info("backup written", extra={"path": str(path), "sessions": written, "resumed_from": resumed})
    return BackupReport(str(path), written, resumed, tuple(skipped))


def _flowkit_version() -> str:
    try:
        from flowkit import __version__
    except ImportError:  # pragma: no cover
        return "unknown"
    return __version__


def _verify(line: dict[str, Any], lineno: int) -> None:
    where = f"backup line {lineno} (session {line.get('session_id')!r})"
    if line.get("sum") != _line_sum(line):
        raise BackupError(f"{where}: checksum mismatch; the file is damaged")
    data = line["data"]
    fields = dict(zip(data["state"][::2], data["state"][1::2], strict=True))
    text, digest = fields.get("state"), fields.get("checksum")
    if text is None or codec.checksum(text) != digest:
        raise BackupError(f"{where}: the state fails its checksum")
    if codec.state_problem(json.loads(text), line["session_id"], line["version"]):
        raise BackupError(f"{where}: the state breaks the schema")
    if data["hist"]:
        last_id, last_fields = data["hist"][-1]
        f = dict(zip(last_fields[::2], last_fields[1::2], strict=True))
        if codec.entry_id_version(last_id) == line["version"] and f.get("checksum") != digest:
            raise BackupError(f"{where}: the last history entry does not describe the state")


def _read_lines(fh: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, raw in enumerate(fh, start=2):
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise BackupError(f"backup line {lineno} is not JSON (truncated or damaged file)") from exc
        if not isinstance(line, dict):
            raise BackupError(f"backup line {lineno} is not a session record (damaged file)")
        yield lineno, line


def restore(store: Any, src: str | os.PathLike[str], *, batch: int = 200,
            progress: Progress | None = None) -> RestoreReport:
    """Put every session of a backup file back into ``store``; never replaces a newer version.

    The whole file is verified first (a damaged line or a wrong count anywhere writes nothing),
    then read again and written ``batch`` sessions per round trip.
    """
    path = Path(src)
    total = int(_trailer(path)["sessions"])
    for _ in _verified_lines(path, total):
        pass
    report = {"sessions": 0, "restored": 0, "skipped_newer": 0}
    pending: list[dict[str, Any]] = []
    for line in _verified_lines(path, total):
        pending.append(line)
        if len(pending) >= batch:
            _restore_batch(store, pending, report)
            pending = []
            if progress:
                progress(report["sessions"], total)
    if pending:
        _restore_batch(store, pending, report)
    if progress:
        progress(report["sessions"], total)
    log.info("backup restored", extra={"path": str(path), **report})
    return RestoreReport(str(path), report["sessions"], report["restored"], report["skipped_newer"])


def _verified_lines(path: Path, total: int) -> Iterator[dict[str, Any]]:
    """The session lines of a backup, each verified; raises BackupError on any damage."""
    n = 0
    with open(path, "rb") as fh:
        try:
            header = json.loads(fh.readline() or b"{}")
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
            raise BackupError(f"{path} is not a flowkit backup (version {FORMAT_VERSION})")
        for lineno, line in _read_lines(fh):
            if line.get("end"):
                break
            _verify(line, lineno)
            n += 1
            yield line
    if n != total:
        raise BackupError(f"{path}: the trailer says {total} sessions, the file holds {n}")


def _trailer(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            last = fh.read().rstrip(b"\n").rpartition(b"\n")[2]
        trailer = json.loads(last)
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is unreadable or incomplete ({exc})") from exc
    if not isinstance(trailer, dict) or not trailer.get("end"):
        raise BackupError(f"{path} has no trailer: the backup is incomplete (run `flowkit backup` again to finish it)")
    return trailer


def _restore_batch(store: Any, lines: list[dict[str, Any]], report: dict[str, int]) -> None:
    calls: Batch = [Call(RESTORE, K.session_keys(line["session_id"]).all, (line["version"], dumps(line["data"])))
                    for line in lines]
    replies = store.driver.execute(calls)
    index: Batch = []
    for line, reply in zip(lines, replies, strict=True):
        sid = line["session_id"]
        reply = check(reply, sid)
        report["sessions"] += 1
        if s(reply[0]) != "restored":
            report["skipped_newer"] += 1
            continue
        report["restored"] += 1
        data = line["data"]
        f = dict(zip(data["state"][::2], data["state"][1::2], strict=True))
        old = _triple(reply[2], reply[3], reply[4]) if s(reply[1]) else None
        new = _triple(f.get("flow"), f.get("step"), f.get("status"))
        index += _counter_cmds(codec.counter_move(old, new), [new[0]] if new and new[0] else [])
        index += _index_cmds(sid, f.get("status"), f.get("updated_at") or 0, f.get("timeout_at"))
        for version, value in zip(data["fx"][::2], data["fx"][1::2], strict=True):
            index.append(("ZADD", K.IDX_OUTBOX, value.partition(":")[0], K.outbox_member(sid, int(version))))
    if index:
        for reply in store.driver.execute(index):
            check(reply)
