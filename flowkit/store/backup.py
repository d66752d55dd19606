"""``flowkit backup OUT`` / ``flowkit restore IN``: every session with its history, verified.

A backup is a JSON Lines file:

- a header ``{"format": "flowkit-backup", "version": 2, "created_at": ..., "flowkit": ...}``;
- one line per session: its keys as stored (state hash, history entries with their ids,
  dedupe set, snapshots, outbox, TTL), read atomically per session by a Lua script, with
  ``sum``, the checksum of the line. History entries are written in layout 1's shape (the
  stream's ``[id, [field, value, ...]]``, :mod:`flowkit.store.legacy`) whichever layout the
  session is stored in, so files of every flowkit version look alike; restoring writes the
  compact layout (:mod:`flowkit.store.entries`);
- a trailer ``{"end": true, "sessions": n, "lines": ..., "sum": ...}`` (a file without it is
  incomplete): ``lines`` is a digest of every session line's ``sum`` in file order (a line
  dropped, added or moved is noticed), ``sum`` the checksum of the trailer itself. Version 1
  files (trailer without checksums) are still read.

Backing up writes ``OUT.partial`` (mode 0600: it holds personal data) and renames it at the
end; if interrupted, running it again continues after the last complete line. Restoring
verifies the whole file first (every line's checksum and structure, every state's checksum,
that the state hash agrees with its state, that history ids increase and the last entry
describes the state, and the trailer), so a bad file writes nothing. A session already in
Redis at the same or a newer version is left alone, so restoring into a live Redis never
goes back in time. On a single server each session is written by one script together with
its derived indexes and counters: a restore killed at any point is simply run again. On
Redis Cluster the indexes live in other slots; a rerun that finds sessions already restored
ends with a reconcile, which repairs whatever the killed run left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from flowkit.batching import batched
from flowkit.errors import BackupError
from flowkit.log import get_logger
from flowkit.store import codec, entries, legacy
from flowkit.store import keys as K
from flowkit.store import statefield as SF
from flowkit.store.codec import dumps, s
from flowkit.store.contract import DumpArgs, RestoreArgs, RestoreReply
from flowkit.store.driver import Batch
from flowkit.store.files import open_private
from flowkit.store.indexcmds import _counter_cmds, _index_cmds, _triple
from flowkit.store.replies import as_int, check, pairs

log = get_logger("flowkit.store.backup")

FORMAT = "flowkit-backup"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: the trailer carries no checksum
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


class _Chain:
    """The trailer's ``lines`` digest: every session line's ``sum``, in file order."""

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=16)

    def add(self, line_sum: str) -> None:
        self._h.update(line_sum.encode() + b"\n")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _trailer_line(sessions: int, chain: _Chain) -> dict[str, Any]:
    trailer: dict[str, Any] = {"end": True, "sessions": sessions, "lines": chain.hexdigest()}
    trailer["sum"] = _line_sum(trailer)
    return trailer


def _flat(reply: Any) -> list[str]:
    return [str(s(x)) for pair in pairs(reply) for x in pair]


def _state_flow(fields: dict[str, str]) -> entries.Flow | None:
    try:
        state = json.loads(fields.get("state") or "")
        return str(state["flow"]), str(state["flow_version"])
    except (ValueError, KeyError, TypeError):
        return None


def _session_line(sid: str, reply: Any) -> dict[str, Any] | None:
    if not reply:
        return None  # deleted since the scan
    state_raw, hist_raw, seen_raw, snap_raw, fx_raw, ttl, layout = reply
    # the state JSON as the old layout's ``state`` field, so the file format does not change
    fields = {k: v.decode() for k, v in SF.plain_fields(SF.as_fields(pairs(state_raw))).items()}
    state = [x for pair in fields.items() for x in pair]
    if int(layout) == 1:
        hist = [[str(s(eid)), [str(s(x)) for x in entry]] for eid, entry in hist_raw or []]
    else:
        hist = [[legacy.entry_id(rec["version"], rec["ts"]), legacy.record_fields(rec)]
                for rec in entries.decode_all(sid, hist_raw or [], fallback=_state_flow(fields))]
    seen = [x for member, score in pairs(seen_raw) for x in (str(as_int(score)), str(s(member)))]
    line = {"session_id": sid, "version": int(fields.get("version", "0")),
            "data": {"state": state, "hist": hist, "seen": seen, "snap": _flat(snap_raw), "fx": _flat(fx_raw),
                     "ttl": max(0, int(ttl))}}
    line["sum"] = _line_sum(line)
    return line


def _resume(partial: Path, chain: _Chain) -> tuple[set[str], int]:
    """Session ids already in a partial backup (fed to ``chain``); cuts off a torn last line."""
    done: set[str] = set()
    good_end = 0
    with open(partial, "rb") as fh:
        header = fh.readline()
        try:
            head = json.loads(header)
            if head.get("format") != FORMAT or head.get("version") != FORMAT_VERSION:
                raise ValueError
        except (ValueError, AttributeError):
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
            chain.add(line["sum"])
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
    chain = _Chain()
    if resume and partial.exists():
        done, end = _resume(partial, chain)
        if end == 0:
            partial.unlink()
    resumed = len(done)
    total = sum(c["sessions"] for c in store.counters().values()) or None
    mode = "ab" if partial.exists() else "wb"
    written = resumed
    skipped: list[str] = []
    try:
        fh = open_private(partial, mode)
    except OSError as exc:
        raise BackupError(f"cannot write the backup: {exc}") from exc
    with fh:
        if mode == "wb":
            header = {"format": FORMAT, "version": FORMAT_VERSION, "flowkit": _flowkit_version(),
                      "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
            fh.write((dumps(header) + "\n").encode())
        for chunk in batched((sid for sid in store.iter_session_ids(batch) if sid not in done), batch):
            replies = store.driver.execute([DumpArgs().call(K.session_keys(sid)) for sid in chunk])
            lines = []
            for sid, reply in zip(chunk, replies, strict=True):
                if isinstance(reply, Exception):
                    skipped.append(sid)
                    log.warning("session not backed up: its keys are unreadable", extra={"session_id": sid,
                                                                                       "error": str(reply)})
                    continue
                line = _session_line(sid, reply)
                if line is not None:
                    chain.add(line["sum"])
                    lines.append(dumps(line) + "\n")
            fh.write("".join(lines).encode())
            written += len(lines)
            if progress:
                progress(written, total)
        fh.write((dumps(_trailer_line(written, chain)) + "\n").encode())
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


def _pairs(value: Any, what: str) -> dict[str, str]:
    """A flat [f, v, ...] list of strings as a dict; ValueError if it is not one."""
    if not isinstance(value, list) or len(value) % 2 or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{what} is not a list of string pairs")
    return dict(zip(value[::2], value[1::2], strict=True))


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{what} is not an integer") from None


def _check_structure(line: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:  # noqa: C901 -- a validator: one check per part of the line
    """The line's data and state fields, every part of the right shape (ValueError if not):
    the restore script must never meet something that fails after its first write."""
    sid, version, data = line.get("session_id"), line.get("version"), line.get("data")
    if not isinstance(sid, str) or not sid:
        raise ValueError("session_id is not a non-empty string")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError("version is not an integer >= 1")
    if not isinstance(data, dict) or set(data) != {"state", "hist", "seen", "snap", "fx", "ttl"}:
        raise ValueError("data does not hold exactly state, hist, seen, snap, fx and ttl")
    fields = _pairs(data["state"], "the state hash")
    if fields.get("version") != str(version):
        raise ValueError("the state hash holds another version than the line")
    _int(fields.get("updated_at"), "updated_at")
    if fields.get("timeout_at"):
        _int(fields["timeout_at"], "timeout_at")
    seen = data["seen"]
    _pairs(seen, "the dedupe set")
    for score in seen[::2]:
        _int(score, "a dedupe score")
    _pairs(data["snap"], "the snapshots")
    for v, value in _pairs(data["fx"], "the outbox").items():
        _int(v, "an outbox version")
        _int(value.partition(":")[0], "an outbox time")
    if _int(data["ttl"], "ttl") < 0:
        raise ValueError("ttl is negative")
    if not isinstance(data["hist"], list):
        raise ValueError("hist is not a list")
    last = (-1, -1)
    for entry in data["hist"]:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str):
            raise ValueError("a history entry is not [id, fields]")
        if not _pairs(entry[1], "a history entry"):
            raise ValueError("a history entry has no fields")
        ms, sep, seq = entry[0].partition("-")
        if not (sep and ms.isdigit() and seq.isdigit()):
            raise ValueError(f"history entry id {entry[0]!r} is malformed")
        eid = (int(ms), int(seq))
        if eid <= last or eid == (0, 0) or max(eid) > 2**53 - 1:
            raise ValueError(f"history entry id {entry[0]!r} does not increase")
        last = eid
    if last[0] > version:
        raise ValueError("the history goes beyond the state's version")
    return data, fields


def _verify(line: dict[str, Any], lineno: int) -> None:
    where = f"backup line {lineno} (session {line.get('session_id')!r})"
    if line.get("sum") != _line_sum(line):
        raise BackupError(f"{where}: checksum mismatch; the file is damaged")
    try:
        data, fields = _check_structure(line)
    except ValueError as exc:
        raise BackupError(f"{where}: {exc}; the file was not written by `flowkit backup` or was altered "
                          "(nothing was restored)") from None
    try:
        _compact(line)  # every entry must convert now: the restore must not fail half way
    except BackupError as exc:
        raise BackupError(f"{where}: {str(exc).partition(': ')[2]}") from None
    text, digest = fields.get("state"), fields.get("checksum")
    if text is None or codec.checksum(text) != digest:
        raise BackupError(f"{where}: the state fails its checksum")
    try:
        state = json.loads(text)
    except ValueError:
        raise BackupError(f"{where}: the state is not JSON") from None
    if codec.state_problem(state, line["session_id"], line["version"]):
        raise BackupError(f"{where}: the state breaks the schema")
    # the indexes and counters are built from these fields: they must say what the state says
    if (fields.get("flow"), fields.get("step"), fields.get("status"), fields.get("updated_at")) != (
            state["flow"], state["step"] or "", state["status"], str(state["updated_at"])):
        raise BackupError(f"{where}: the state hash's flow, step, status or updated_at disagree with the state")
    if data["hist"]:
        last_id, last_fields = data["hist"][-1]
        f = dict(zip(last_fields[::2], last_fields[1::2], strict=True))
        if legacy.parse_entry_id(last_id)[0] == line["version"] and f.get("checksum") != digest:
            raise BackupError(f"{where}: the last history entry does not describe the state")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a backup can hold")


def _loads(raw: bytes | str) -> Any:
    """A backup line's JSON, refusing NaN and Infinity (Python's json reads them; no checksum,
    and no state, may hold them)."""
    return json.loads(raw, parse_constant=_no_constant)


def _read_lines(fh: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, raw in enumerate(fh, start=2):
        try:
            line = _loads(raw)
        except ValueError as exc:
            raise BackupError(f"backup line {lineno} is not JSON (truncated or damaged file)") from exc
        if not isinstance(line, dict):
            raise BackupError(f"backup line {lineno} is not a session record (damaged file)")
        yield lineno, line


def restore(store: Any, src: str | os.PathLike[str], *, batch: int = 200,
            progress: Progress | None = None) -> RestoreReport:
    """Put every session of a backup file back into ``store``; never replaces a newer version.

    The whole file is verified first (a damaged line, a wrong count or a trailer that fails
    its checksum anywhere writes nothing), then read again and written ``batch`` sessions per
    round trip. Safe to kill and run again (see the module docstring).
    """
    path = Path(src)
    trailer = _trailer(path)
    total = int(trailer["sessions"])
    for _ in _verified_lines(path, trailer):
        pass
    report = {"sessions": 0, "restored": 0, "skipped_newer": 0, "already": 0}
    pending: list[dict[str, Any]] = []
    for line in _verified_lines(path, trailer):
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
    if store.driver.cluster and report["already"]:
        # sessions at exactly the backup's version: a killed run wrote them, maybe without
        # their index entries (other slots, other round trip). Reconcile puts them right.
        log.info("restore found sessions an earlier run wrote; reconciling the derived indexes",
                 extra={"sessions": report["already"]})
        store.reconcile()
    log.info("backup restored", extra={"path": str(path), **report})
    return RestoreReport(str(path), report["sessions"], report["restored"], report["skipped_newer"])


def _verified_lines(path: Path, trailer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The session lines of a backup, each verified; raises BackupError on any damage."""
    total = int(trailer["sessions"])
    chain = _Chain()
    n = 0
    with open(path, "rb") as fh:
        try:
            header = _loads(fh.readline() or b"{}")
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError(f"{path} is not a flowkit backup")
        if header.get("version") not in READABLE_VERSIONS:
            raise BackupError(f"{path} is a flowkit backup of format version {header.get('version')!r}; this "
                              f"flowkit reads versions {', '.join(map(str, READABLE_VERSIONS))}: restore it with "
                              "the flowkit that wrote it")
        if header["version"] >= 2 and "sum" not in trailer:
            raise BackupError(f"{path}: the trailer has no checksum; the file is damaged")
        for lineno, line in _read_lines(fh):
            if line.get("end"):
                break
            _verify(line, lineno)
            chain.add(line["sum"])
            n += 1
            yield line
    if n != total:
        raise BackupError(f"{path}: the trailer says {total} sessions, the file holds {n}")
    if header["version"] >= 2 and trailer.get("lines") != chain.hexdigest():
        raise BackupError(f"{path}: the session lines do not match the trailer's digest (a line was added, "
                          "removed or moved); the file is damaged")


def _trailer(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            last = fh.read().rstrip(b"\n").rpartition(b"\n")[2]
        trailer = _loads(last)
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is unreadable or incomplete ({exc})") from exc
    if not isinstance(trailer, dict) or not trailer.get("end"):
        raise BackupError(f"{path} has no trailer: the backup is incomplete (run `flowkit backup` again to finish it)")
    if "sum" in trailer and trailer["sum"] != _line_sum(trailer):
        raise BackupError(f"{path}: the trailer fails its checksum; the file is damaged")
    try:
        if _int(trailer.get("sessions"), "sessions") < 0:
            raise ValueError
    except ValueError:
        raise BackupError(f"{path}: the trailer's session count is not a number; the file is damaged") from None
    return trailer


def _compact(line: dict[str, Any]) -> str:
    """The line's data as the restore script takes it: the history as compact-layout elements."""
    sid = line["session_id"]
    try:
        records = [legacy.decode_entry(sid, eid, fields) for eid, fields in line["data"]["hist"]]
        hist = [e.hex() for e in entries.pack_records(records)]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BackupError(f"session {sid!r}: a history entry of the backup cannot be read ({exc}); the file was "
                          "not written by `flowkit backup` or was altered (this batch was not restored)") from None
    return dumps({**line["data"], "hist": hist})


def _restore_batch(store: Any, lines: list[dict[str, Any]], report: dict[str, int]) -> None:
    # on a single server one script per session writes its keys, index entries and counters:
    # all or nothing; on a cluster the indexes (other slots) are written after it, below
    calls: Batch = [RestoreArgs(version=line["version"], data=_compact(line), session_id=line["session_id"])
                    .call(K.session_keys(line["session_id"]), indexed=not store.driver.cluster) for line in lines]
    replies = store.driver.execute(calls)
    index: Batch = []
    for line, reply in zip(lines, replies, strict=True):
        sid = line["session_id"]
        if isinstance(reply, Exception) and "flowkit restore:" in str(reply):
            raise BackupError(f"session {sid!r}: {reply}")  # verification should have caught it first
        res = RestoreReply.decode(check(reply, sid))
        report["sessions"] += 1
        if not res.restored:
            report["skipped_newer"] += 1
            if as_int(res.previous_version) == line["version"]:
                report["already"] += 1
            continue
        report["restored"] += 1
        if not store.driver.cluster:
            continue
        data = line["data"]
        f = dict(zip(data["state"][::2], data["state"][1::2], strict=True))
        old = _triple(res.flow, res.step, res.status) if res.previous_version else None
        new = _triple(f.get("flow"), f.get("step"), f.get("status"))
        index += _counter_cmds(codec.counter_move(old, new), [new[0]] if new and new[0] else [])
        index += _index_cmds(sid, f.get("status"), f.get("updated_at") or 0, f.get("timeout_at"))
        for version, value in zip(data["fx"][::2], data["fx"][1::2], strict=True):
            index.append(("ZADD", K.IDX_OUTBOX, value.partition(":")[0], K.outbox_member(sid, int(version))))
    if index:
        for reply in store.driver.execute(index):
            check(reply)
