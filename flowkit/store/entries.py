"""Layout 2: the compact history (docs/decisions.md, "Compact history layout").

A session's history is a Redis LIST (``fk:{s:<sid>}:hist``), one element per version, oldest
first. A small list is one listpack: ~1 byte of overhead per element, against a stream's
~4 KB before its first entry. Each element is a JSON array, positions fixed:

    0 version  1 ts  2 event code  3 from_step  4 to_step ([value], or 0 when the path says it)
    5 path  6 status code  7 actor code  8 input  9 error  10 flow  11 flow_version
    (10/11: 0 = the previous element's, or the whole state's when 14 is one)
    12 checksum (a number)  13 message_id  14 why (the engine's JSON text, or null)  15 delta

A WhatsApp message id is base64 of a record that names the sender's number; when the session
id is that number, the id's first 30 characters follow from it, and 13 holds ``[rest]``.
Event, status and actor are small integers (their index in the codec's tuples; append-only).
The delta is last so that the commit script can swap it for the whole state (``{"r":...}``)
when the caller's base was stale: ``head .. delta .. "]"``. Flow and flow version are written
out on the first element, after any change, whenever the delta is a whole state, always when
the store trims its history (the first kept element must stand alone), and on elements
converted from layout 1 or a backup.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from flowkit.store.codec import ACTORS, EVENTS, STATUSES, canonical, derived_to_step, dumps

_EVENT = {name: i for i, name in enumerate(EVENTS)}
_STATUS = {name: i for i, name in enumerate(STATUSES)}
_ACTOR = {name: i for i, name in enumerate(ACTORS)}

Flow = tuple[str, str]  # (flow, flow_version)
#: where each part of a record sits in an element (the docstring's table, for code and tests)
POSITIONS = {name: i for i, name in enumerate((
    "version", "ts", "event", "from_step", "to_step", "path", "status", "actor", "input", "error", "flow",
    "flow_version", "checksum", "message_id", "why", "delta"))}


@functools.lru_cache(maxsize=4096)
def wamid_prefix(session_id: str) -> str | None:
    """What every WhatsApp message id from the number ``session_id`` starts with (None if the
    id is not a number). The id decodes to 1c 18 <length> <number> 15 02 00 12 18 14 <random>
    (e.g. ``wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQz...`` for 15551234567); only whole base64
    groups are taken, so the random part never leaks into the prefix."""
    if not (session_id.isascii() and session_id.isdigit()) or len(session_id) > 32:
        return None
    raw = b"\x1c\x18" + bytes([len(session_id)]) + session_id.encode() + b"\x15\x02\x00\x12\x18\x14"
    return "wamid." + base64.b64encode(raw[:len(raw) // 3 * 3]).decode()


def _short_mid(session_id: str, mid: str | None) -> str | list[str] | None:
    pre = wamid_prefix(session_id) if mid else None
    return [mid[len(pre):]] if pre and mid and mid.startswith(pre) else mid


def _long_mid(session_id: str, mid: Any) -> str | None:
    if not isinstance(mid, list):
        return mid  # type: ignore[no-any-return]  # (a message id (str) or None)
    pre = wamid_prefix(session_id)
    if pre is None:
        raise ValueError(f"a shortened message id in session {session_id!r}, which is not a number")
    return pre + str(mid[0])


def head(session_id: str, record: Mapping[str, Any], flow: str, flow_version: str, state_sum: str, *,
         same_flow: bool) -> bytes:
    """Everything of one element but the delta and the closing bracket (ends with a comma)."""
    path = record["path"]
    from_step = record["from_step"]
    to = record["to_step"]
    to_v: Any = 0 if to == (path[-1] if path else from_step) else [to]
    fl: Any = 0 if same_flow else flow
    fv: Any = 0 if same_flow else flow_version
    items = [record["version"], record["ts"], _EVENT[record["event"]], from_step, to_v, list(path),
             _STATUS[record["status"]], _ACTOR[record["actor"]], record["input"], record["error"], fl, fv,
             _digest(state_sum), _short_mid(session_id, record["message_id"]), record.get("why") or None]
    # record_problem checked every value's type (strings, ints, a list of strings): trusted
    return canonical(items, trusted=True)[:-1] + b","


def _digest(text: str) -> int | str:
    # a number is what checksums are; a damaged one (migrated as found) stays text
    return int(text) if text.lstrip("-").isdigit() else text


def element(head_: bytes, delta_json: bytes | str) -> bytes:
    return head_ + (delta_json.encode() if isinstance(delta_json, str) else delta_json) + b"]"


def decode(session_id: str, raw: Any, prev: Flow | None, *, with_delta: bool = True) -> dict[str, Any]:
    """One element as a record (the export columns; with ``delta`` and ``checksum`` if asked).

    ``prev``: the flow of the element before it (None: there is none)."""
    e = orjson.loads(raw)
    return _record(session_id, e, prev, with_delta)


def _record(session_id: str, e: list[Any], prev: Flow | None, with_delta: bool) -> dict[str, Any]:
    v, ts, ev, from_step, to, path, st, actor, inp, err, fl, fv, digest, mid, why, delta = e[:16]
    if fl == 0 or fv == 0:
        # the commit script may have swapped in a whole state (stale base): it names its flow
        whole = delta.get("r") if isinstance(delta, dict) else None
        src = (whole["flow"], whole["flow_version"]) if isinstance(whole, dict) else prev
        if src is None:
            raise ValueError(f"history element {v} names no flow and has no element before it")
        fl, fv = (src[0] if fl == 0 else fl), (src[1] if fv == 0 else fv)
    rec: dict[str, Any] = {
        "session_id": session_id, "flow": fl, "flow_version": fv, "version": v, "ts": ts, "event": EVENTS[ev],
        "from_step": from_step, "to_step": derived_to_step(from_step, path) if to == 0 else to[0], "path": path,
        "status": STATUSES[st], "message_id": _long_mid(session_id, mid), "input": inp, "error": err, "actor": ACTORS[actor],
        "why": why or None,  # (the engine's JSON text, kept exactly as written)
    }
    if with_delta:
        rec["delta"] = delta
        rec["checksum"] = str(digest)
    return rec


def decode_all(session_id: str, raws: Iterable[Any], *, with_delta: bool = True,
               fallback: Flow | None = None) -> list[dict[str, Any]]:
    """A whole list (or a tail of one, with ``fallback`` the flow before it), in order."""
    out: list[dict[str, Any]] = []
    prev = fallback
    for raw in raws:
        rec = decode(session_id, raw, prev, with_delta=with_delta)
        prev = (rec["flow"], rec["flow_version"])
        out.append(rec)
    return out


def decode_json_array(session_id: str, payload: bytes | str, *, with_delta: bool = False,
                      fallback: Flow | None = None) -> list[dict[str, Any]]:
    """The elements joined as one JSON array (the export script's reply): one parse for all."""
    out: list[dict[str, Any]] = []
    prev = fallback
    for e in orjson.loads(payload):
        rec = _record(session_id, e, prev, with_delta)
        prev = (rec["flow"], rec["flow_version"])
        out.append(rec)
    return out


def pack_records(records: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Full records (with ``delta`` and ``checksum``, e.g. from layout 1 or a backup) as list
    elements. Each names its flow: whoever converts cannot know whether the store will trim."""
    out: list[bytes] = []
    for rec in records:
        out.append(element(head(rec["session_id"], rec, rec["flow"], rec["flow_version"], str(rec["checksum"]), same_flow=False),
                           dumps(rec["delta"]).encode()))
    return out
