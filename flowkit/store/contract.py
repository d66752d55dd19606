"""The named contract between Python and the store's Lua scripts: one builder and one reply
decoder per script, so no caller fills KEYS/ARGV by position or reads a reply by index.

Each builder's fields are, in order, the script's ARGV; ``KEYS`` names its keys. The header
of each ``.lua`` file lists the same names (``-- KEYS[i] name: ...``, ``-- ARGV[i] name: ...``)
and tests/store/test_contract.py checks that the two agree, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, ClassVar

from flowkit.store import keys as K
from flowkit.store.codec import TERMINAL_STATUSES, s
from flowkit.store.driver import Call
from flowkit.store.keys import SessionKeys
from flowkit.store.scripts import (
    COMMIT,
    DUMP,
    MIGRATE,
    QUARANTINE,
    RECOVER,
    REHIST,
    REPACK,
    RESTORE,
    TIMEOUT,
    Script,
)

#: a value Redis accepts as one script argument
Arg = str | bytes | int


@dataclass(frozen=True, slots=True)
class _Args:
    """Base of the builders: the fields, in declaration order, are the script's ARGV."""

    SCRIPT: ClassVar[Script]
    KEYS: ClassVar[tuple[str, ...]]

    @classmethod
    def argv_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def argv(self) -> tuple[Arg, ...]:
        # not dataclasses.astuple: it deep-copies every field (a commit's ~2 KB of bytes included)
        get = _GETTERS.get(type(self))
        if get is None:
            get = _GETTERS[type(self)] = _getter(self.argv_names())
        return get(self)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Arg, ...]]:
    one: Callable[[Any], Any] = attrgetter(*names)  # (a tuple of the fields when there are several)
    if len(names) > 1:
        return one
    return lambda args: (one(args),)


#: per builder class: its ARGV fields, in order, read in one call
_GETTERS: dict[type[_Args], Callable[[Any], tuple[Arg, ...]]] = {}


def _text(v: object) -> str:
    return str(s(v)) if v is not None else ""


# ---------------------------------------------------------------- commit.lua


@dataclass(frozen=True, slots=True)
class CommitArgs(_Args):
    """ARGV of commit.lua: one versioned commit of a session."""

    SCRIPT: ClassVar[Script] = COMMIT
    KEYS: ClassVar[tuple[str, ...]] = ("state", "hist", "seen", "snap", "fx", "active", "timeouts", "outbox", "flows")
    UNINDEXED: ClassVar[int] = 18  # ARGV (and 5 KEYS) sent without the indexes (a cluster)

    expected: int
    dedupe: str
    version: int
    state: str | bytes
    checksum: str
    base_checksum: str
    flow: str
    step: str
    status: str
    updated_at: int
    timeout_at: int | str  # '' = none
    terminal: int
    outbox: str | bytes
    dedupe_max: int
    history_max: int
    terminal_ttl_ms: int
    element: bytes
    whole: int  # 1: the element holds the whole state
    session_id: str = ""
    counter_prefix: str = K.IDX_COUNT_PREFIX
    outbox_member: str = ""

    def call(self, k: SessionKeys, *, indexed: bool = False) -> Call:
        """``indexed`` (a single server): the script writes the derived indexes and counters too."""
        if indexed:
            return Call(COMMIT, (*k.all, K.IDX_ACTIVE, K.IDX_TIMEOUTS, K.IDX_OUTBOX, K.IDX_FLOWS), self.argv())
        return Call(COMMIT, k.all, self.argv()[:self.UNINDEXED])


@dataclass(frozen=True, slots=True)
class CommitReply:
    """commit.lua's reply. ``tag`` is ok, conflict, duplicate, corrupt or rebase (nothing written:
    send an element holding the whole state); for ok ``version`` is
    the new version and flow/step/status the old state's, else they are the stored state's."""

    tag: str
    version: int
    flow: str
    step: str
    status: str
    base_ok: bool = True  # ok: the delta was made against the stored state
    updated_at: str = ""
    timeout_at: str = ""
    outbox_at: str = ""  # effects stored under the new version: when ('' = none)
    checksum: object = None  # conflict: the stored state, to rerun the engine on
    state: object = None

    @classmethod
    def decode(cls, reply: Sequence[object]) -> CommitReply:
        tag = _text(reply[0])
        if tag == "rebase":
            return cls(tag, int(str(s(reply[1]))), "", "", "")
        if tag == "ok":
            return cls(tag, int(str(s(reply[1]))), _text(reply[3]), _text(reply[4]), _text(reply[5]),
                       base_ok=_text(reply[2]) == "1")
        return cls(tag, int(str(s(reply[1]))), _text(reply[2]), _text(reply[3]), _text(reply[4]),
                   updated_at=_text(reply[5]), timeout_at=_text(reply[6]), outbox_at=_text(reply[7]),
                   checksum=reply[8] if len(reply) > 9 else None, state=reply[9] if len(reply) > 9 else None)


# ---------------------------------------------------------------- recover.lua


@dataclass(frozen=True, slots=True)
class RecoverArgs(_Args):
    """ARGV of recover.lua: quarantine a bad state and commit a rebuilt one in its place."""

    SCRIPT: ClassVar[Script] = RECOVER
    KEYS: ClassVar[tuple[str, ...]] = ("state", "hist", "seen", "snap", "fx", "quarantine")

    raw_version: str
    raw_checksum: str
    version: int
    state: str | bytes
    checksum: str
    flow: str
    step: str
    status: str
    updated_at: int
    timeout_at: int | str  # '' = none
    terminal: int
    history_max: int
    terminal_ttl_ms: int
    reason: str
    now: int
    element: bytes

    def call(self, k: SessionKeys, quarantine: str) -> Call:
        return Call(RECOVER, (*k.all, quarantine), self.argv())


@dataclass(frozen=True, slots=True)
class RecoverReply:
    """recover.lua's reply: ``ok`` with the bad state's index fields, or ``conflict``."""

    ok: bool
    version: int
    flow: str = ""
    step: str = ""
    status: str = ""
    created: bool = False  # the quarantine copy was made by this call

    @classmethod
    def decode(cls, reply: Sequence[object]) -> RecoverReply:
        if _text(reply[0]) != "ok":
            return cls(False, int(str(s(reply[1]))))
        return cls(True, int(str(s(reply[1]))), _text(reply[2]), _text(reply[3]), _text(reply[4]),
                   bool(int(str(s(reply[5])))))


# ---------------------------------------------------------------- quarantine.lua


@dataclass(frozen=True, slots=True)
class QuarantineArgs(_Args):
    """ARGV of quarantine.lua: copy a bad state aside, leaving it in place."""

    SCRIPT: ClassVar[Script] = QUARANTINE
    KEYS: ClassVar[tuple[str, ...]] = ("state", "quarantine")

    raw_version: str
    raw_checksum: str
    reason: str
    now: int

    def call(self, k: SessionKeys, quarantine: str) -> Call:
        return Call(QUARANTINE, (k.state, quarantine), self.argv())


@dataclass(frozen=True, slots=True)
class QuarantineReply:
    """quarantine.lua's reply: whether the state was still the bad one, and the copy new."""

    quarantined: bool
    created: bool

    @classmethod
    def decode(cls, reply: Sequence[object]) -> QuarantineReply:
        if _text(reply[0]) != "quarantined":
            return cls(False, False)
        return cls(True, bool(int(str(s(reply[1])))))


# ---------------------------------------------------------------- timeout.lua, migrate.lua, dump.lua, restore.lua

#: the terminal statuses as the scripts take them (ARGV, never filled into a source)
TERMINAL_ARG = ",".join(sorted(TERMINAL_STATUSES))


@dataclass(frozen=True, slots=True)
class TimeoutArgs(_Args):
    """ARGV of timeout.lua; it replies 1 if the timeouts index should hold the session."""

    SCRIPT: ClassVar[Script] = TIMEOUT
    KEYS: ClassVar[tuple[str, ...]] = ("state", "timeouts")
    UNINDEXED: ClassVar[int] = 2  # ARGV (and 1 KEY) sent without the index (a cluster)

    timeout_at: int | str  # '' = none
    terminal: str = TERMINAL_ARG
    session_id: str = ""

    def call(self, k: SessionKeys, *, indexed: bool = False) -> Call:
        """``indexed`` (a single server): the script writes the timeouts index too."""
        if indexed:
            return Call(TIMEOUT, (k.state, K.IDX_TIMEOUTS), self.argv())
        return Call(TIMEOUT, (k.state,), self.argv()[:self.UNINDEXED])


@dataclass(frozen=True, slots=True)
class MigrateArgs(_Args):
    """ARGV of migrate.lua (the last field spreads over every ARGV from its position on); it
    replies 1 migrated, 0 nothing to do, -1 the stream changed."""

    SCRIPT: ClassVar[Script] = MIGRATE
    KEYS: ClassVar[tuple[str, ...]] = ("hist",)

    length: int
    last: str
    elements: tuple[bytes, ...]

    def argv(self) -> tuple[Arg, ...]:
        return (self.length, self.last, *self.elements)

    def call(self, k: SessionKeys) -> Call:
        return Call(MIGRATE, (k.hist,), self.argv())


@dataclass(frozen=True, slots=True)
class DumpArgs(_Args):
    """dump.lua takes keys only; its reply is read by flowkit/store/backup.py (``_session_line``)."""

    SCRIPT: ClassVar[Script] = DUMP
    KEYS: ClassVar[tuple[str, ...]] = ("state", "hist", "seen", "snap", "fx")

    def call(self, k: SessionKeys) -> Call:
        return Call(DUMP, k.all, ())


@dataclass(frozen=True, slots=True)
class RestoreArgs(_Args):
    """ARGV of restore.lua. ``indexed`` (a single server) also sends the index KEYS and ARGV[3..5]:
    the script then writes the indexes and counters itself; a cluster sends ARGV[1..2] only."""

    SCRIPT: ClassVar[Script] = RESTORE
    KEYS: ClassVar[tuple[str, ...]] = ("state", "hist", "seen", "snap", "fx", "active", "timeouts", "outbox",
                                       "flows")
    UNINDEXED: ClassVar[int] = 2  # ARGV (and 5 KEYS) sent without the indexes

    version: int
    data: str
    session_id: str
    counter_prefix: str = K.IDX_COUNT_PREFIX
    terminal: str = TERMINAL_ARG

    def call(self, k: SessionKeys, *, indexed: bool) -> Call:
        if indexed:
            return Call(RESTORE, (*k.all, K.IDX_ACTIVE, K.IDX_TIMEOUTS, K.IDX_OUTBOX, K.IDX_FLOWS), self.argv())
        return Call(RESTORE, k.all, self.argv()[:self.UNINDEXED])


@dataclass(frozen=True, slots=True)
class RestoreReply:
    """restore.lua's reply: restored or skipped, and what was there before."""

    restored: bool
    previous_version: str  # '' = none
    flow: str = ""
    step: str = ""
    status: str = ""

    @classmethod
    def decode(cls, reply: Sequence[object]) -> RestoreReply:
        extra = [_text(x) for x in reply[2:5]]
        return cls(_text(reply[0]) == "restored", _text(reply[1]), *extra)


@dataclass(frozen=True, slots=True)
class RepackArgs(_Args):
    """ARGV of repack.lua: rewrite an old-layout state hash packed (flowkit/store/repack.py)."""

    SCRIPT: ClassVar[Script] = REPACK
    KEYS: ClassVar[tuple[str, ...]] = ("state",)

    plain: bytes
    blob: bytes

    def call(self, k: SessionKeys) -> Call:
        return Call(REPACK, (k.state,), self.argv())


@dataclass(frozen=True, slots=True)
class RehistArgs(_Args):
    """ARGV of rehist.lua (the last field spreads over every ARGV from its position on): swap a
    history list for its binary repacking (flowkit/store/rehist.py); 1 done, 0 nothing to do,
    -1 the list changed."""

    SCRIPT: ClassVar[Script] = REHIST
    KEYS: ClassVar[tuple[str, ...]] = ("hist",)

    length: int
    last: bytes
    elements: tuple[bytes, ...]

    def argv(self) -> tuple[Arg, ...]:
        return (self.length, self.last, *self.elements)

    def call(self, k: SessionKeys) -> Call:
        return Call(REHIST, (k.hist,), self.argv())


#: every script with a builder, for the header check
BUILDERS: tuple[type[_Args], ...] = (CommitArgs, RecoverArgs, QuarantineArgs, TimeoutArgs, MigrateArgs, DumpArgs,
                                     RestoreArgs, RepackArgs, RehistArgs)

__all__ = ["BUILDERS", "TERMINAL_ARG", "CommitArgs", "CommitReply", "DumpArgs", "MigrateArgs", "QuarantineArgs",
           "QuarantineReply", "RecoverArgs", "RecoverReply", "RehistArgs", "RepackArgs", "RestoreArgs", "RestoreReply", "TimeoutArgs"]
