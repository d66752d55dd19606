"""The pure half of the store: canonical JSON, checksums, state/record schema and deltas (the
history layout is :mod:`flowkit.store.entries`). No I/O here; the sync and async stores share it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, overload

import orjson

from flowkit.errors import InvalidCommitError

STATE_KEYS = ("session_id", "flow", "flow_version", "step", "status", "slots", "attempts", "stack", "pending",
              "version", "started_at", "updated_at")
STATUSES = ("active", "waiting_input", "waiting_service", "completed", "failed", "cancelled", "handoff", "expired")
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})
HELD_STATUSES = frozenset({"handoff"})  # live, but held by people: never expired for inactivity
EVENTS = ("start", "message", "service_result", "timeout", "command", "rollback", "recovery", "expire", "migrate",
          "delivery_failed")
ACTORS = ("runtime", "admin", "recovery", "simulator", "agent")  # agent: a person in a hand-off
RECORD_KEYS = ("version", "ts", "event", "from_step", "to_step", "path", "status", "message_id", "input", "error",
               "actor")
#: what the store adds to every record it returns (from the state at that version)
ADDED_KEYS = ("session_id", "flow", "flow_version")
_NULLABLE = ("from_step", "to_step", "message_id", "input", "error", "why")
_STATE_KEYSET = frozenset(STATE_KEYS)
_RECORD_NEEDS = frozenset(RECORD_KEYS) - {"version"}
#: optional: a record may say why it went where it went (JSON text, flowkit/engine/why.py)
OPTIONAL_RECORD_KEYS = ("why",)
_RECORD_ALLOWS = frozenset(RECORD_KEYS) | frozenset(ADDED_KEYS) | frozenset(OPTIONAL_RECORD_KEYS)

#: state keys a delta never carries: the entry itself says them (commit enforces that the
#: record's to_step and status are the state's step and status)
FROM_ENTRY = ("version", "step", "status", "flow", "flow_version")


def _json_dumps(value: Any) -> str:
    """The definition of canonical JSON (and the slow path of :func:`canonical`)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# orjson is ~10x faster than json.dumps but is not the definition: it writes NaN/Infinity
# as null, serialises UUIDs, enums and fragments that json.dumps refuses, and writes
# floats in 1e-9 <= |x| < 1e-4 differently ("1e-5" / "0.00001" where Python says "1e-05").
# Its output is used only when it is provably what json.dumps would have written:
# subclasses, dataclasses and datetimes are handed to ``default`` (which refuses them),
# the output must parse back equal to the value (NaN, UUID, enum, tuple fail that), and
# must not contain a small float (any text that looks like one: false alarms only cost
# the slow path). tests/store/test_codec.py checks this against json.dumps with hypothesis.
_ORJSON_OPTS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
                | orjson.OPT_PASSTHROUGH_DATETIME)
_SMALL_EXPONENT = re.compile(rb"e-[0-9](?![0-9])")


def _refuse(value: Any) -> Any:
    raise TypeError(f"not canonical-fast: {type(value).__name__}")


def _fast(value: Any, trusted: bool = False) -> bytes | None:
    """orjson's bytes when they equal json.dumps' (see above), else None."""
    try:
        out = orjson.dumps(value, default=_refuse, option=_ORJSON_OPTS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: big ints, non-str keys, deep nesting, ...
        return None
    if b"0.0000" in out or (b"e-" in out and _SMALL_EXPONENT.search(out)):
        return None
    if not trusted and orjson.loads(out) != value:
        return None
    return out


def canonical(value: Any, *, trusted: bool = False) -> bytes:
    """Canonical JSON as UTF-8 bytes: what the checksums hash and Redis stores.

    Byte for byte ``dumps(value).encode()``, only faster; raises TypeError / ValueError for
    what is not JSON (NaN, sets, objects, ...), and for text that is not valid Unicode.

    ``trusted`` skips the parse-back check (~1.5 us of the ~2.5) for values known to hold
    nothing json.dumps would refuse: parts of a value that passed ``canonical`` already
    (a delta of a committed state, a validated list of step names). On anything else it
    may return bytes where json.dumps would raise (NaN -> null, a UUID -> a string)."""
    out = _fast(value, trusted)
    return out if out is not None else _json_dumps(value).encode()


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept; equal values give equal text."""
    out = _fast(value)
    return out.decode() if out is not None else _json_dumps(value)


def checksum(text: str | bytes) -> str:
    """64-bit BLAKE2b of the canonical JSON, as a signed decimal integer.

    It catches corruption and stale bases (not attackers). Decimal because Redis stores an
    integer-looking string as an 8-byte integer inside hashes, streams and sorted sets.
    """
    data = text.encode() if isinstance(text, str) else text
    return str(int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True))


def message_key(message_id: str) -> str:
    """What the dedupe set stores for a message id: its 64-bit digest (WhatsApp ids are ~60
    bytes; the digest is 8, and a collision within one session's last 1000 ids is ~1e-14)."""
    return checksum(message_id)


@overload
def s(value: None) -> None: ...
@overload
def s(value: str | bytes | int | float) -> str: ...
@overload
def s(value: object) -> str | None: ...


def s(value: object) -> str | None:
    """A Redis reply value as text (clients may or may not decode responses)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL_STATUSES


# ---------------------------------------------------------------- schema


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def state_problem(state: Any, session_id: str | None = None, version: int | None = None) -> str | None:  # noqa: C901 -- a validator: one check per state key
    """Why ``state`` is not a session state of the store contract (None if it is one)."""
    if not isinstance(state, dict):
        return f"state must be a JSON object, got {type(state).__name__}"
    if state.keys() != _STATE_KEYSET:
        keys = set(state)
        missing = [k for k in STATE_KEYS if k not in keys]
        extra = sorted(keys - _STATE_KEYSET, key=str)
        return "state keys: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) +
            ([f"unexpected {', '.join(map(str, extra))}"] if extra else []))
    for k in ("session_id", "flow", "flow_version"):
        if not isinstance(state[k], str) or not state[k]:
            return f"{k} must be a non-empty string"
    if state["step"] is not None and not isinstance(state["step"], str):
        return "step must be a string or null"
    if state["status"] not in STATUSES:
        return f"unknown status {state['status']!r}"
    for k, typ in (("slots", dict), ("attempts", dict), ("stack", list)):
        if not isinstance(state[k], typ):
            return f"{k} must be a {'list' if typ is list else 'object'}"
    if state["pending"] is not None and not isinstance(state["pending"], dict):
        return "pending must be an object or null"
    for k in ("version", "started_at", "updated_at"):
        if not _is_int(state[k]) or state[k] < 0:
            return f"{k} must be a non-negative integer"
    if session_id is not None and state["session_id"] != session_id:
        return f"session_id is {state['session_id']!r}, the key says {session_id!r}"
    if version is not None and state["version"] != version:
        return f"version is {state['version']}, the state hash says {version}"
    return None


def record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"record must be a dict, got {type(record).__name__}"
    keys = record.keys()
    if not (_RECORD_NEEDS <= keys <= _RECORD_ALLOWS):
        missing = [k for k in RECORD_KEYS if k not in keys and k != "version"]
        extra = sorted(keys - _RECORD_ALLOWS, key=str)
        return "record keys: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) +
            ([f"unexpected {', '.join(map(str, extra))}"] if extra else []))
    if not _is_int(record["ts"]) or record["ts"] < 0:
        return "ts must be a non-negative integer (epoch ms)"
    if record["event"] not in EVENTS:
        return f"unknown event {record['event']!r}"
    if record["actor"] not in ACTORS:
        return f"unknown actor {record['actor']!r}"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}"
    for k in _NULLABLE:
        if record.get(k) is not None and not isinstance(record[k], str):
            return f"{k} must be a string or null"
    path = record["path"]
    if not isinstance(path, list | tuple) or not all(isinstance(p, str) for p in path):
        return "path must be a list of step names"
    return None


def validate_commit(session_id: str, state: dict[str, Any], record: dict[str, Any],
                    validator: Callable[[dict[str, Any]], None] | None) -> None:
    """Refuse (before any I/O) a commit that would store something unreadable."""
    why = state_problem(state, session_id) or record_problem(record)
    if why is None and record["status"] != state["status"]:
        why = f"record status {record['status']!r} differs from the state's {state['status']!r}"
    if why is None and record["to_step"] != state["step"]:
        why = f"record to_step {record['to_step']!r} differs from the state's step {state['step']!r}"
    if why is None and validator is not None:
        try:
            validator(state)
        except Exception as exc:  # the validator's own error type is not ours to know
            why = f"validator: {exc}"
    if why is not None:
        raise InvalidCommitError(f"session {session_id!r}: cannot commit: {why}")


# ---------------------------------------------------------------- deltas
#
# A delta is a JSON object: "s" {key: new value}, "d" [deleted keys], "p" {key: delta of a
# nested object}, "a" {key: items appended to a list}; or {"r": whole state} when the base is
# unknown. A list that only grew at its end is written as "a" (the trail of steps visited grows
# by one every message: written whole it made the history quadratic); other lists are replaced.
# "version" is never in a delta (it is the entry id); "updated_at" is left out when it equals
# the record's ts (the common case) and then always put back from ts.


def same(a: Any, b: Any) -> bool:
    """Equal *as JSON*: 1 and 1.0 or True and 1 compare equal in Python but not in the checksum."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_SCALARS = (str, int, float, bool, type(None))


def diff_values(old: Mapping[str, Any], new: Mapping[str, Any], skip: frozenset[str] | tuple[()] = ()) -> dict[str, Any]:  # noqa: C901 -- a recursive diff's dispatch over value kinds
    """The delta from ``old`` to ``new`` (keys in ``skip`` ignored on both sides).

    The hot path of every commit: unchanged values are usually the very same objects or
    equal scalars, so those are settled with ``is`` / ``==`` before :func:`same` walks
    anything."""
    sets: dict[str, Any] = {}
    patches: dict[str, Any] = {}
    appends: dict[str, Any] = {}
    for k, v in new.items():
        if k in skip:
            continue
        if k not in old:
            sets[k] = v
            continue
        o = old[k]
        if o is v:
            continue
        to, tv = type(o), type(v)
        if to is not tv:
            if isinstance(o, dict) and isinstance(v, dict):
                sub = diff_values(o, v)
                if sub:
                    patches[k] = sub
            else:
                sets[k] = v
        elif tv in _SCALARS:
            if o != v:
                sets[k] = v
        elif tv is dict or isinstance(v, dict):
            sub = diff_values(o, v)
            if sub:
                patches[k] = sub
        elif tv is list and len(v) > len(o) and same(o, v[:len(o)]):
            appends[k] = v[len(o):]
        elif not same(o, v):
            sets[k] = v
    out: dict[str, Any] = {}
    if sets:
        out["s"] = sets
    if len(old) > len(new) - len(sets) or skip:  # (else nothing can be missing from new)
        deleted = [k for k in old if k not in new and k not in skip]
        if deleted:
            out["d"] = sorted(deleted)
    if patches:
        out["p"] = patches
    if appends:
        out["a"] = appends
    return out


def patch_values(old: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    if "r" in delta:
        return dict(delta["r"])
    new = dict(old)
    for k in delta.get("d", ()):
        new.pop(k, None)
    for k, v in delta.get("p", {}).items():
        new[k] = patch_values(new.get(k) or {}, v)
    for k, items in delta.get("a", {}).items():
        new[k] = [*(new.get(k) or []), *items]  # (a wrong base fails the checksum after)
    new.update(delta.get("s", {}))
    return new


_SKIP = frozenset(FROM_ENTRY)
_SKIP_TS = frozenset((*FROM_ENTRY, "updated_at"))


def state_delta(old: Mapping[str, Any], new: Mapping[str, Any], ts: int) -> dict[str, Any]:
    at_ts = new["updated_at"] == ts
    d = diff_values(old, new, _SKIP_TS if at_ts else _SKIP)
    if not at_ts:
        d.setdefault("s", {})["updated_at"] = new["updated_at"]
    return d


def state_from_entry(old: Mapping[str, Any] | None, record: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """The state after one history entry: ``old`` + the entry's delta + what the record says."""
    if "r" in delta:
        return dict(delta["r"])
    if old is None:
        raise ValueError("a partial delta needs the previous state")
    new = patch_values(old, delta)
    new.update(version=record["version"], step=record["to_step"], status=record["status"], flow=record["flow"],
               flow_version=record["flow_version"])
    if "updated_at" not in delta.get("s", {}):
        new["updated_at"] = record["ts"]
    return new


def full_delta_json(state_json: str | bytes) -> str | bytes:
    """The delta that replaces everything (what the script writes when the base was wrong)."""
    if isinstance(state_json, bytes):
        return b'{"r":' + state_json + b"}"
    return '{"r":' + state_json + "}"


# ---------------------------------------------------------------- history entries


def derived_to_step(from_step: str | None, path: list[str] | tuple[str, ...]) -> str | None:
    return path[-1] if path else from_step


def normalize_record(record: dict[str, Any]) -> None:
    """Empty strings in nullable fields are stored as null (an entry cannot tell them apart)."""
    for k in _NULLABLE:
        if record.get(k) == "":
            record[k] = None
    if isinstance(record.get("path"), tuple):
        record["path"] = list(record["path"])


# ---------------------------------------------------------------- counters (derived index)


def counter_fields(flow: str | None, step: str | None, status: str | None) -> dict[tuple[str, str], int]:
    """The counter increments one session contributes: per flow, per status, per current step."""
    if not flow:
        return {}
    out = {(flow, "sessions"): 1}
    if status:
        out[(flow, f"status:{status}")] = 1
    if step:
        out[(flow, f"step:{step}")] = 1
    return out


def counter_move(old: tuple[str | None, str | None, str | None] | None,
                 new: tuple[str | None, str | None, str | None] | None) -> dict[tuple[str, str], int]:
    """Net HINCRBYs that move one session from ``old`` (flow, step, status) to ``new``."""
    if old == new:
        return {}
    out: dict[tuple[str, str], int] = {}
    for k, v in counter_fields(*(new or (None, None, None))).items():
        out[k] = out.get(k, 0) + v
    for k, v in counter_fields(*(old or (None, None, None))).items():
        out[k] = out.get(k, 0) - v
    return {k: v for k, v in out.items() if v}


def subtract(a: Mapping[tuple[str, str], int], b: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) - v
    return {k: v for k, v in out.items() if v}
