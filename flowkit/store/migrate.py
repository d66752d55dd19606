"""Layout 1 (history stream) -> layout 2 (compact list), per session, atomically.

Two ways in, one conversion: ``flowkit redis migrate-layout`` walks every session
(:func:`migrate_store`), and any store operation that meets a layout-1 stream (Redis answers
WRONGTYPE) converts that one session on the spot (:func:`migrate_session`) and goes on, so
existing data keeps working before, during and after the command. The conversion reads the
stream, packs its entries (:func:`flowkit.store.entries.pack_records`) and swaps the key in a
script that first checks the stream is still what was read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flowkit.batching import batched
from flowkit.errors import StoreError
from flowkit.store import entries, legacy
from flowkit.store import keys as K
from flowkit.store.codec import s
from flowkit.store.contract import MigrateArgs
from flowkit.store.driver import Op

ATTEMPTS = 5


def is_wrongtype(reply: Any) -> bool:
    return isinstance(reply, Exception) and "WRONGTYPE" in str(reply)


def migrate_session(sid: str, *, dry_run: bool = False) -> Op[int]:
    """Convert one session's history; 1 converted (or would be, ``dry_run``), 0 nothing to do."""
    hist = K.session_keys(sid).hist
    for _ in range(ATTEMPTS):
        r = yield [("TYPE", hist)]
        if s(r[0]) != "stream":
            return 0
        if dry_run:
            return 1
        r = yield [("XRANGE", hist, "-", "+")]
        raw = r[0]
        if isinstance(raw, Exception):
            continue  # it stopped being a stream between the two reads: look again
        records = [legacy.decode_entry(sid, eid, fields) for eid, fields in raw or []]
        elements = entries.pack_records(records)
        last = str(s(raw[-1][0])) if raw else ""
        r = yield [MigrateArgs(length=len(records), last=last, elements=tuple(elements)).call(K.session_keys(sid))]
        if isinstance(r[0], Exception):
            raise StoreError(f"session {sid!r}: Redis refused the layout migration: {r[0]}") from r[0]
        if int(r[0]) >= 0:
            return int(r[0])
    raise StoreError(f"session {sid!r}: its history kept changing during the layout migration; is a process of "
                     "an older flowkit still writing? Stop it and run `flowkit redis migrate-layout` again")


class _Store(Protocol):
    @property
    def config(self) -> Any: ...
    def iter_session_ids(self, batch: int = 1000) -> Iterable[str]: ...
    def _run(self, op: Op[Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class MigrationReport:
    sessions: int  # sessions looked at
    migrated: int  # converted (or, in a dry run, that would be)
    dry_run: bool
    states_packed: int = 0  # state hashes rewritten packed (flowkit/store/repack.py), or that would be
    histories_packed: int = 0  # JSON history elements rewritten binary (flowkit/store/rehist.py), or would be

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "migrated": self.migrated, "dry_run": self.dry_run,
                "states_packed": self.states_packed, "histories_packed": self.histories_packed}


def migrate_store(store: _Store, *, dry_run: bool = False, batch: int = 200,
                  progress: Callable[[int], None] | None = None) -> MigrationReport:
    """Convert every session still in layout 1, repack every state hash still in the old layout
    (ended sessions are never committed again) and every history list still holding JSON
    elements; idempotent (a rerun finds nothing to do)."""
    from flowkit.store.rehist import repack_history
    from flowkit.store.repack import repack_state

    seen = migrated = packed = rehist = 0
    for chunk in batched(store.iter_session_ids(), batch):
        for sid in chunk:
            migrated += store._run(migrate_session(sid, dry_run=dry_run))
            packed += store._run(repack_state(sid, dry_run=dry_run))
            rehist += store._run(repack_history(sid, dry_run=dry_run))
        seen += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return MigrationReport(seen, migrated, dry_run, packed, rehist)
