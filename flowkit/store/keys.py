"""Redis key names (docs/design.md, "Redis layout").

Every key of one session carries the hash tag ``{s:<sid>}``, so the commit script touches a
single slot and runs unchanged on Redis Cluster. Global derived indexes (``fk:idx:*``) live
in other slots and are written beside the commit, never inside it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flowkit.errors import SessionIdError

PREFIX = "fk:{s:"
STATE_SUFFIX = "}:state"
#: SCAN pattern of every session's state hash (``{`` and ``}`` are not glob characters).
STATE_PATTERN = PREFIX + "*" + STATE_SUFFIX

IDX_ACTIVE = "fk:idx:active"  # zset sid -> updated_at, non-terminal sessions only
IDX_TIMEOUTS = "fk:idx:timeouts"  # zset sid -> timeout_at (epoch ms)
IDX_OUTBOX = "fk:idx:outbox"  # zset "sid#version" -> when the unacknowledged effects were committed
IDX_FLOWS = "fk:idx:flows"  # set of flow names that have counters
IDX_COUNT_PREFIX = "fk:idx:count:"  # hash per flow: sessions, status:<status>, step:<step>

QUARANTINE_PREFIX = "fk:quarantine:"
QUARANTINE_COUNT = "fk:quarantine:count"  # string counter: states ever quarantined
QUARANTINE_INDEX = "fk:quarantine:index"  # zset quarantine key -> when


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The per-session keys, in the order the Lua scripts expect them as KEYS."""

    session_id: str
    state: str  # hash: version, state (JSON), checksum, flow, step, status, updated_at, timeout_at
    hist: str  # stream: one entry per commit, entry id "<version>-0"
    seen: str  # zset: message id -> version that applied it (dedupe)
    snap: str  # hash: version -> "<checksum>:<state JSON>"
    fx: str  # hash: version -> {"at": ms, "effects": [...]} (the outbox, until acknowledged)

    @property
    def all(self) -> tuple[str, str, str, str, str]:
        return (self.state, self.hist, self.seen, self.snap, self.fx)


def session_keys(session_id: str) -> SessionKeys:
    if not isinstance(session_id, str) or not session_id:
        raise SessionIdError(f"a session id must be a non-empty string (the user's WhatsApp id), got {session_id!r}")
    return _session_keys(session_id)


@functools.lru_cache(maxsize=4096)  # every commit needs them; live sessions repeat
def _session_keys(session_id: str) -> SessionKeys:
    base = f"fk:{{s:{session_id}}}:"
    return SessionKeys(session_id, base + "state", base + "hist", base + "seen", base + "snap", base + "fx")


def state_key(session_id: str) -> str:
    """``session_keys(sid).state`` without the cache: for reads over many sessions once each."""
    return f"fk:{{s:{session_id}}}:state"


def session_id_from_state_key(key: str | bytes) -> str:
    """``fk:{s:abc}:state`` -> ``abc`` (works even if the id itself contains ``}``)."""
    if isinstance(key, bytes):
        key = key.decode()
    if not (key.startswith(PREFIX) and key.endswith(STATE_SUFFIX)):
        raise ValueError(f"{key!r} is not a session state key")
    return key[len(PREFIX):-len(STATE_SUFFIX)]


def counter_key(flow: str) -> str:
    return IDX_COUNT_PREFIX + flow


def quarantine_key(session_id: str, digest: str) -> str:
    # Same hash tag as the session: the commit script moves the bad state there atomically.
    return f"{QUARANTINE_PREFIX}{{s:{session_id}}}:{digest}"


def outbox_member(session_id: str, version: int) -> str:
    return f"{session_id}#{version}"


def parse_outbox_member(member: str | bytes) -> tuple[str, int]:
    if isinstance(member, bytes):
        member = member.decode()
    sid, _, version = member.rpartition("#")  # the version never contains '#', the id may
    return sid, int(version)


# ---------------------------------------------------------------- outbound delivery (runtime/sender.py)

WAMID_PREFIX = "fk:wamid:"  # string per accepted send: "<version>#<index>#<sid>", for its statuses


def wamid_key(wamid: str) -> str:
    # A global key (no hash tag): a status names only the wamid, so it must be found by it alone.
    return WAMID_PREFIX + wamid


def sent_key(session_id: str) -> str:
    """hash "<version>:<index>" -> wamid: which replies of an outbox entry were accepted already."""
    return f"fk:{{s:{session_id}}}:sent"


def delivery_key(session_id: str) -> str:
    """list of the session's delivery statuses (JSON), newest last, bounded: for transcripts."""
    return f"fk:{{s:{session_id}}}:dlv"


def inbound_key(session_id: str) -> str:
    """string: when the user last wrote (epoch ms); it expires when the 24-hour window closes."""
    return f"fk:{{s:{session_id}}}:in"


def delivery_keys(session_id: str) -> tuple[str, str, str]:
    return sent_key(session_id), delivery_key(session_id), inbound_key(session_id)


def transcript_key(session_id: str) -> str:
    """list of the session's messages both ways (JSON), oldest first; bounded like the history."""
    return f"fk:{{s:{session_id}}}:tx"


# Flow definitions (runtime/registry.py reads and writes them through store/flowdefs.py).
FLOW_NAMES = "fk:flowdefs"  # set of every registered flow name
FLOWDEF_LATEST = "__latest__"  # field of a flowdef hash naming the version new sessions use


def flowdef_key(name: str) -> str:
    """Hash of one flow's definitions: version id -> YAML, plus ``FLOWDEF_LATEST``."""
    return f"fk:flowdef:{name}"
