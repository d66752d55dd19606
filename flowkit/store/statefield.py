"""How the state JSON sits in the session's state hash: packed, in fields of at most 64 bytes.

A hash stays listpack-encoded (one compact allocation) only while every value is at most
``hash-max-listpack-value`` (64 bytes by default) and it has at most
``hash-max-listpack-entries`` (128) fields. The state JSON (~0.4-0.7 KB) in one ``state``
field turned the whole hash into a hashtable (~1.0-1.3 KB per session). So the state is
written as a *blob* (the JSON deflated when that is smaller, marked by a leading ``z``; the
JSON itself otherwise, which starts with ``{``) cut into fields ``s0``, ``s1``, ... of 64
bytes. A blob too long to stay listpack-encoded anyway goes whole into ``s0``: splitting it
would only add fields.

The old layout (the JSON in ``state``) is still read, and wins when present, so a session
written by an older flowkit, a restore, or a hand edit of ``state`` is read as it says; the
next commit rewrites it packed and drops ``state``. Lua never parses the state: the scripts
only cut the blob (commit.lua, recover.lua) and join it back (the conflict reply,
atomic_read.py); Python packs and unpacks. Pure: no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

#: the old layout's field, and the prefix of the packed chunks' fields
PLAIN = "state"
CHUNK_PREFIX = "s"
#: bytes per chunk: Redis's default ``hash-max-listpack-value``
CHUNK = 64
#: above this many chunks the hash is a hashtable whatever we do (128 fields at most, 8 taken)
MAX_CHUNKS = 96
_DEFLATED = b"z"


def pack(state_json: bytes) -> bytes:
    """The blob stored for ``state_json``: deflated (raw, level 6) when that saves bytes."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    z = _DEFLATED + c.compress(state_json) + c.flush()
    return z if len(z) < len(state_json) else state_json


def unpack(blob: bytes) -> bytes:
    """The state JSON a blob holds. A damaged blob comes back as it is: it then fails the
    checksum like any other damaged state (and recovery takes over)."""
    if blob[:1] != _DEFLATED:
        return blob
    try:
        return zlib.decompress(blob[1:], -15)
    except zlib.error:
        return blob


def chunk_fields(n: int) -> list[str]:
    return [f"{CHUNK_PREFIX}{i}" for i in range(n)]


def split(blob: bytes) -> list[bytes]:
    """The chunk values of a blob, as the scripts cut it (kept here for tests and tools)."""
    if len(blob) > CHUNK * MAX_CHUNKS:
        return [blob]
    return [blob[i:i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]


def _b(v: object) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


def state_text(fields: Mapping[str, bytes]) -> bytes | None:
    """The state JSON of a state hash read whole (field name -> raw value); None if it holds
    no state. ``state`` (the old layout) wins over chunks."""
    if PLAIN in fields:
        return fields[PLAIN]
    parts = []
    for name in chunk_fields(len(fields)):
        if name not in fields:
            break
        parts.append(fields[name])
    return unpack(b"".join(parts)) if parts else None


def as_fields(pairs: Iterable[tuple[object, object]]) -> dict[str, bytes]:
    """A HGETALL reply's pairs as field name -> raw bytes."""
    return {_b(a).decode("utf-8", "replace"): _b(b) for a, b in pairs}


def is_chunk(name: str) -> bool:
    return name.startswith(CHUNK_PREFIX) and name[len(CHUNK_PREFIX):].isdigit()


def plain_fields(fields: Mapping[str, bytes]) -> dict[str, bytes]:
    """The hash in the old layout (``state`` holding the JSON, no chunks): what backups write,
    so their format does not change."""
    out = {k: v for k, v in fields.items() if not is_chunk(k)}
    text = state_text(fields)
    if text is not None:
        out[PLAIN] = text
    return out


__all__ = ["CHUNK", "MAX_CHUNKS", "PLAIN", "as_fields", "chunk_fields", "is_chunk", "pack", "plain_fields", "split",
           "state_text", "unpack"]
