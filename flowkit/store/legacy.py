"""Layout 1: the history as a Redis stream, one entry per version (flowkit up to the compact
layout of :mod:`flowkit.store.entries`). Read-only knowledge of that format, frozen: it is
what ``flowkit redis migrate-layout`` (and the lazy migration on first touch) converts from,
and what backup files keep carrying (their ``hist`` lines are layout-1 entries, so backups of
either layout, old or new, restore into the compact layout).

Entry id ``<version>-<ts>``; fields always all of ENTRY_FIELDS, in order; null stored as '';
``to_step`` '' when the path says it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowkit.store.codec import canonical, derived_to_step, dumps, s

ENTRY_FIELDS = ("event", "from_step", "to_step", "path", "status", "message_id", "input", "error", "actor",
                "flow", "flow_version", "delta", "checksum")
#: written after them only when the record has one (a backup line of the compact layout)
OPTIONAL_FIELDS = ("why",)


def entry_id(version: int, ts: int) -> str:
    return f"{version}-{ts}"


def parse_entry_id(eid: Any) -> tuple[int, int]:
    version, _, ts = str(s(eid)).partition("-")
    return int(version), int(ts or 0)


def entry_values(record: Mapping[str, Any], state: Mapping[str, Any], delta_json: str | bytes,
                 state_sum: str) -> list[str | bytes]:
    """A layout-1 stream entry's values, in ENTRY_FIELDS order. null is stored as ''."""
    path = record["path"]
    from_step = record["from_step"]
    to = record["to_step"]
    to_txt = "" if to == (path[-1] if path else from_step) else dumps(to)
    msg, inp, err = record["message_id"], record["input"], record["error"]
    return [record["event"], "" if from_step is None else from_step, to_txt, canonical(list(path), trusted=True),
            record["status"], "" if msg is None else msg, "" if inp is None else inp, "" if err is None else err,
            record["actor"], state["flow"], state["flow_version"], delta_json, state_sum]


def record_fields(rec: Mapping[str, Any]) -> list[str]:
    """A full record (with ``delta`` and ``checksum``) as a layout-1 field/value list."""
    vals = entry_values(rec, rec, dumps(rec["delta"]), str(rec["checksum"]))
    out = [x for name, v in zip(ENTRY_FIELDS, vals, strict=True) for x in (name, v.decode() if isinstance(v, bytes) else v)]
    for name in OPTIONAL_FIELDS:
        if rec.get(name):
            out += [name, rec[name]]
    return out


def entry_fields(raw: Any) -> dict[str, str]:
    """A stream entry's fields as a str dict, from a raw reply (flat list) or a parsed dict."""
    if isinstance(raw, dict):
        return {str(s(k)): str(s(v)) for k, v in raw.items()}
    it = iter(raw)
    return {str(s(k)): str(s(v)) for k, v in zip(it, it, strict=True)}


def decode_entry(session_id: str, eid: Any, raw: Any) -> dict[str, Any]:
    """One layout-1 entry as a full record: the export columns plus ``delta`` and ``checksum``."""
    f = entry_fields(raw)
    version, ts = parse_entry_id(eid)

    def opt(k: str) -> str | None:
        v = f.get(k) or ""
        return v if v != "" else None

    from_step = opt("from_step")
    path = json.loads(f.get("path") or "[]")
    to = f.get("to_step") or ""
    return {
        "session_id": session_id, "flow": f.get("flow"), "flow_version": f.get("flow_version"), "version": version,
        "ts": ts, "event": f.get("event"), "from_step": from_step,
        "to_step": json.loads(to) if to else derived_to_step(from_step, path), "path": path,
        "status": f.get("status"), "message_id": opt("message_id"), "input": opt("input"), "error": opt("error"),
        "actor": f.get("actor"), "delta": json.loads(f["delta"]) if f.get("delta") else None,
        "checksum": f.get("checksum"), "why": opt("why"),
    }
