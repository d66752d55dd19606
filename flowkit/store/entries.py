"""The history list's elements (docs/decisions.md, "Compact history layout", "Binary history
elements").

A session's history is a Redis LIST (``fk:{s:<sid>}:hist``), one element per version, oldest
first. A small list is one listpack: ~1 byte of overhead per element, against a stream's
~4 KB before its first entry. Two element forms are read; new elements are always binary.

**Layout 3 (binary, written now)**::

    0x01 <version, ASCII digits> ':' <ts: 6 bytes> <event> <status> <actor> <flags>
         [<checksum: 8 bytes>] [<message id: 1 byte n, then n/2 bytes>] <tail>

Flags: 1 the checksum is in the header, 2 the packed message id is, 4 the input is a text
message's (below), 8 the tail is stored as it is (deflate did not make it smaller).
Event, status and actor are small integers (their index in the codec's tuples; append-only).
The version is text so the scripts can read it with a pattern (``^\\1(%d+):``). The checksum is
the 64-bit number; a damaged one (migrated as found) goes into the tail instead. A WhatsApp
message id is base64 of a record naming the sender's number and a random hex id; when the
number is the session's (its id, or the part before ``@``), only the random id is kept, as
bytes. The tail is a JSON array deflated with a fixed dictionary (:data:`ZDICT_1`)::

    [from_step, to_step ([value], or 0 when the path says it), path, input, error,
     flow, flow_version (0 = the previous element's, or the whole state's), why, delta, extra?]

``input`` is the text alone when it is ``{"text": ..., "type": "text"}`` (flag 4); ``extra``
holds what the header could not: ``m`` the message id, ``c`` a textual checksum, ``t`` a
timestamp outside 0..2^48. A whole-state delta is ``{"R": state}`` with the keys the record
already says (session id, version, flow, flow version, step, status, updated_at when it is
the ts) left out; ``{"r": state}`` (everything) is read too.

**Layout 2 (JSON, read only)**: the same fields in one JSON array, positions fixed
(:data:`POSITIONS`), ``0x5b`` ('[') first. Elements written by older flowkits stay as they are
until ``flowkit redis migrate-layout`` repacks them; a list may hold both forms.

Flow and flow version are written out on the first element, after any change, whenever the
delta is a whole state, always when the store trims its history (the first kept element must
stand alone), and on elements converted from layout 1 or a backup.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from flowkit.store.codec import ACTORS, EVENTS, STATUSES, canonical, derived_to_step, dumps

_EVENT = {name: i for i, name in enumerate(EVENTS)}
_STATUS = {name: i for i, name in enumerate(STATUSES)}
_ACTOR = {name: i for i, name in enumerate(ACTORS)}

Flow = tuple[str, str]  # (flow, flow_version)
#: where each part of a record sits in a layout-2 element, and in :func:`to_array`'s list
POSITIONS = {name: i for i, name in enumerate((
    "version", "ts", "event", "from_step", "to_step", "path", "status", "actor", "input", "error", "flow",
    "flow_version", "checksum", "message_id", "why", "delta"))}

TAG_3 = b"\x01"
# The deflate dictionary of layout 3. NEVER edit it: every element written with it needs these
# exact bytes to be read (a new dictionary needs a new tag). It holds what elements of any flow
# share: the engine's state keys in canonical order, delta operators, input forms, statuses.
# Deflate finds matches nearest the end soonest, so the commonest text is last.
ZDICT_1 = (
    b'"image","document","audio","video","sticker","location","latitude","longitude","address","contacts",'
    b'"caption","mime_type","sha256","filename","reaction","emoji","order","product_items","referral",'
    b'"button","payload","interactive","button_reply","list_reply","nfm_reply","response_json","description",'
    b'"id":"","title":"","type":"interactive"}'
    b'"restored_from":,"quarantine":"corrupt_state: ","error":"","result":{"ok":true,"retry","service",'
    b'"cancelled","handoff","expired","failed","completed","active","waiting_service","wait":"service"'
    b'{"d":["],"s":{"":0}},"stack":[{"at":"","flow":"","slots":{}}],"why":'
    b'"R":{"attempts":{},"pending":{"deadline":null,"step":"","trail":[],"wait":"input"},"slots":{},"stack":[],'
    b'"started_at":,"status":"waiting_input","step":"","updated_at":,"version":1}}]'
    b'"r":{"attempts":{},"flow":"","flow_version":"1","pending":{"deadline":null,"step":"","trail":["'
    b'{"flow":"","text":"'
    b'",0,["",null,0,0,null,{"p":{"attempts":{"d":["'
    b'"],"s":{"":1}},"pending":{"a":{"trail":["'
    b'"]},"s":{"deadline":17,"step":"'
    b'"}},"slots":{"s":{"'
)
_TS_MAX = 1 << 48
_F_SUM, _F_MID, _F_TEXT, _F_RAW = 1, 2, 4, 8  # header flags


def _deflate(data: bytes) -> bytes:
    # a 4 KB window holds the dictionary and any element but a big whole state; a small hash
    # table (memLevel 4) is what makes a compressor for ~200 bytes cheap to set up (~5 us)
    c = zlib.compressobj(9, zlib.DEFLATED, -12, 4, zlib.Z_DEFAULT_STRATEGY, ZDICT_1)
    return c.compress(data) + c.flush()


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(-15, ZDICT_1)
    try:
        out = d.decompress(data) + d.flush()
    except zlib.error as exc:
        raise ValueError(f"the element's tail does not inflate ({exc})") from None
    if not d.eof or d.unused_data:
        raise ValueError("the element's tail is cut short or has bytes after its end")
    return out


# ---------------------------------------------------------------- message ids


def _number(session_id: str) -> str:
    # sessions on a second WhatsApp number are "<wa_id>@<phone_number_id>"
    return session_id.partition("@")[0]


@functools.lru_cache(maxsize=4096)
def wamid_prefix(session_id: str) -> str | None:
    """What every WhatsApp message id from the number ``session_id`` starts with (None if the
    id is not a number). The id decodes to 1c 18 <length> <number> 15 02 00 12 18 14 <random>
    (e.g. ``wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQz...`` for 15551234567); only whole base64
    groups are taken, so the random part never leaks into the prefix. (Layout 2.)"""
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


@functools.lru_cache(maxsize=4096)
def _wamid_head(session_id: str) -> bytes | None:
    """The bytes every WhatsApp id from the session's number starts with, up to the length of
    the random part (None if the session id does not name a number)."""
    number = _number(session_id)
    if not (number.isascii() and number.isdigit() and len(number) < 32):
        return None
    return b"\x1c\x18" + bytes([len(number)]) + number.encode() + b"\x15\x02\x00\x12\x18"


def _mid_bytes(session_id: str, mid: str) -> bytes | None:
    """The random part of a WhatsApp id from the session's own number, packed (None: keep the
    id whole). Only when unpacking gives back the very same id."""
    pre = _wamid_head(session_id) if mid.startswith("wamid.") else None
    if pre is None:
        return None
    try:
        raw = binascii.a2b_base64(mid[6:], strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    n = raw[len(pre)] if len(raw) > len(pre) and raw.startswith(pre) else 1
    rnd = raw[len(pre) + 1:len(pre) + 1 + n]
    if n % 2 or n > 250 or raw[len(pre) + 1 + n:] != b"\x00" or not rnd.isalnum() or rnd != rnd.upper():
        return None
    try:
        packed = bytes([n]) + bytes.fromhex(rnd.decode())
    except ValueError:
        return None
    return packed if _mid_text(session_id, packed) == mid else None


def _mid_text(session_id: str, packed: bytes) -> str:
    pre = _wamid_head(session_id)
    if pre is None:
        raise ValueError(f"a packed message id in session {session_id!r}, which is not a number")
    rnd = packed[1:].hex().upper().encode()
    return "wamid." + binascii.b2a_base64(pre + bytes([len(rnd)]) + rnd + b"\x00", newline=False).decode()


# ---------------------------------------------------------------- writing


def _text_form(text: str) -> str:
    return '{"text":' + orjson.dumps(text).decode() + ',"type":"text"}'


def _text_input(inp: Any) -> str | None:
    """The text of an input that is exactly :func:`_text_form` of it (what the runtime writes for
    a text message; anything else is kept whole, so reading it back is exact either way)."""
    if isinstance(inp, str) and inp.startswith('{"text":') and inp.endswith(',"type":"text"}'):
        try:
            d = orjson.loads(inp)
        except orjson.JSONDecodeError:
            return None
        if isinstance(d, dict) and isinstance(d.get("text"), str) and _text_form(d["text"]) == inp:
            return d["text"]  # type: ignore[no-any-return]  # (orjson.loads is Any; checked a str above)
    return None


_IMPLIED = ("session_id", "version", "flow", "flow_version", "step", "status")


def _whole(delta_json: bytes, session_id: str, record: Mapping[str, Any], flow: Flow) -> bytes:
    """A whole-state delta without what the record says (``{"R":...}``), when that is exact."""
    if not delta_json.startswith(b'{"r":'):
        return delta_json
    state = orjson.loads(delta_json)["r"]
    said = {"session_id": session_id, "version": record["version"], "flow": flow[0], "flow_version": flow[1],
            "step": record["to_step"], "status": record["status"]}
    if not isinstance(state, dict) or any(k not in state or type(state[k]) is not type(v) or state[k] != v
                                          for k, v in said.items()):
        return delta_json
    rest = {k: v for k, v in state.items() if k not in said}
    if type(rest.get("updated_at")) is int and rest["updated_at"] == record["ts"]:
        del rest["updated_at"]
    return b'{"R":' + canonical(rest, trusted=True) + b"}"


def _is_digest(text: str) -> bool:
    try:
        return str(int(text)) == text and -(1 << 63) <= int(text) < (1 << 63)
    except ValueError:
        return False


def pack(session_id: str, record: Mapping[str, Any], flow: str, flow_version: str, state_sum: str,
         delta_json: bytes | str, *, same_flow: bool) -> bytes:
    """One history element (layout 3). ``same_flow``: the element before says the flow."""
    delta = delta_json.encode() if isinstance(delta_json, str) else delta_json
    if delta.startswith(b'{"r":'):
        same_flow = False  # a whole state stands alone: readers need no element before it
    path = record["path"]
    from_step = record["from_step"]
    to = record["to_step"]
    to_v: Any = 0 if to == (path[-1] if path else from_step) else [to]
    fl: Any = 0 if same_flow else flow
    fv: Any = 0 if same_flow else flow_version
    flags = 0
    extra: dict[str, Any] = {}
    ts = record["ts"]
    if not 0 <= ts < _TS_MAX:
        extra["t"], ts = ts, 0
    summed = _is_digest(state_sum)
    if summed:
        flags |= _F_SUM
    else:
        extra["c"] = state_sum
    mid = record["message_id"]
    mid_b = _mid_bytes(session_id, mid) if mid else None
    if mid_b is not None:
        flags |= _F_MID
    elif mid is not None:
        extra["m"] = mid
    inp = record["input"]
    text = _text_input(inp)
    if text is not None:
        flags |= _F_TEXT
        inp = text
    items = [from_step, to_v, list(path), inp, record["error"], fl, fv, record.get("why") or None]
    # record_problem checked every value's type (strings, ints, a list of strings): trusted
    tail = canonical(items, trusted=True)[:-1] + b"," + _whole(delta, session_id, record, (flow, flow_version))
    tail += (b"," + canonical(extra, trusted=True) + b"]") if extra else b"]"
    body = _deflate(tail)
    if len(body) >= len(tail):
        flags |= _F_RAW
        body = tail
    return b"".join((TAG_3, b"%d:" % record["version"], struct.pack(">Q", ts)[2:],
                     bytes((_EVENT[record["event"]], _STATUS[record["status"]], _ACTOR[record["actor"]], flags)),
                     struct.pack(">q", int(state_sum)) if summed else b"", mid_b or b"", body))


# ---------------------------------------------------------------- reading


def to_array(session_id: str, raw: bytes | str) -> list[Any]:
    """Any element as the layout-2 array (:data:`POSITIONS`; message id whole, delta parsed)."""
    b = raw.encode() if isinstance(raw, str) else raw
    if b[:1] != TAG_3:
        e = orjson.loads(b)
        if not isinstance(e, list) or len(e) < 16:
            raise ValueError("a history element is not an array of 16 values")
        e[13] = _long_mid(session_id, e[13])
        return e
    return _from_binary(session_id, b)


def _from_binary(session_id: str, b: bytes) -> list[Any]:
    colon = b.index(b":", 1, 24)
    version = int(b[1:colon])
    i = colon + 1
    if len(b) < i + 11:
        raise ValueError("a history element is cut short")
    ts = int.from_bytes(b[i:i + 6], "big")
    ev, st, actor, flags = b[i + 6:i + 10]
    i += 10
    digest: Any = None
    if flags & _F_SUM:
        digest = int.from_bytes(b[i:i + 8], "big", signed=True)
        i += 8
    mid: str | None = None
    if flags & _F_MID:
        n = b[i] // 2 + 1
        mid = _mid_text(session_id, b[i:i + n])
        i += n
    t = orjson.loads(b[i:] if flags & _F_RAW else _inflate(b[i:]))
    from_step, to, path, inp, err, fl, fv, why, delta = t[:9]
    extra = t[9] if len(t) > 9 else {}
    if flags & _F_TEXT:
        inp = _text_form(inp)
    ts, digest, mid = extra.get("t", ts), extra.get("c", digest), extra.get("m", mid)
    if isinstance(delta, dict) and "R" in delta:
        whole = dict(delta["R"])
        whole.setdefault("updated_at", ts)
        whole.update(session_id=session_id, version=version, flow=fl, flow_version=fv,
                     step=derived_to_step(from_step, path) if to == 0 else to[0], status=STATUSES[st])
        delta = {"r": whole}
    return [version, ts, ev, from_step, to, path, st, actor, inp, err, fl, fv, digest, mid, why, delta]


def decode(session_id: str, raw: Any, prev: Flow | None, *, with_delta: bool = True) -> dict[str, Any]:
    """One element as a record (the export columns; with ``delta`` and ``checksum`` if asked).

    ``prev``: the flow of the element before it (None: there is none)."""
    return _record(session_id, to_array(session_id, raw), prev, with_delta)


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
        "status": STATUSES[st], "message_id": mid, "input": inp, "error": err, "actor": ACTORS[actor],
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


def from_array(session_id: str, e: list[Any]) -> bytes:
    """A layout-2 array (:func:`to_array`'s form) packed as a layout-3 element: what tests and
    tools that edit an element in place write back."""
    v, ts, ev, from_step, to, path, st, actor, inp, err, fl, fv, digest, mid, why, delta = e[:16]
    rec = {"version": v, "ts": ts, "event": EVENTS[ev], "from_step": from_step,
           "to_step": derived_to_step(from_step, path) if to == 0 else to[0], "path": path, "status": STATUSES[st],
           "actor": ACTORS[actor], "input": inp, "error": err, "message_id": mid, "why": why}
    same = fl == 0 and fv == 0
    if same and isinstance(delta, dict) and isinstance(delta.get("r"), dict):
        fl, fv, same = delta["r"]["flow"], delta["r"]["flow_version"], False  # (a whole state names its flow)
    return pack(session_id, rec, "" if same else fl, "" if same else fv, str(digest), dumps(delta).encode(),
                same_flow=same)


def pack_records(records: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Full records (with ``delta`` and ``checksum``, e.g. from layout 1 or a backup) as list
    elements. Each names its flow: whoever converts cannot know whether the store will trim."""
    return [pack(rec["session_id"], rec, rec["flow"], rec["flow_version"], str(rec["checksum"]),
                 dumps(rec["delta"]).encode(), same_flow=False) for rec in records]
