"""Session state and history records: frozen values with an exact JSON form.

Times are integer epoch milliseconds so that a state serialises and parses back to an
equal value. The user's WhatsApp profile lives in ``slots["profile"]`` (``profile`` is a
reserved name, never a declared slot) so templates can greet by name at any step.

Inside a sub-flow, ``step`` is qualified with the calling step (``contact/ask_email``),
``slots`` are the sub-flow's own and ``stack`` holds the callers' frames; ``flow`` and
``flow_version`` always name the session's root flow, so one session's history reads
against one flow graph.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from flowkit.errors import StateValidationError
from flowkit.flow import patterns
from flowkit.flow.model import STATUSES, TERMINAL_STATUSES, SlotSpec

PROFILE = "profile"
EXPERIMENTS = "experiments"  # the variants of split steps (engine/experiments.py)
_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class State:
    session_id: str
    flow: str
    flow_version: str
    step: str | None
    status: str
    slots: Mapping[str, Any] = field(default_factory=dict)
    attempts: Mapping[str, int] = field(default_factory=dict)
    stack: tuple[Mapping[str, Any], ...] = ()
    pending: Mapping[str, Any] | None = None
    version: int = 0
    started_at: int = 0
    updated_at: int = 0
    #: The plan's token (engine/plan.py) when the engine made this very object and checked it
    #: against that flow's whole slot schema; None for a state built any other way (loaded,
    #: ``evolve``d, unpickled), which the engine checks whole. Not part of the value: set only
    #: at construction by the engine (``make``), never compared, shown or serialised.
    checked_by: object = field(default=None, init=False, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def profile(self) -> Mapping[str, Any]:
        p = self.slots.get(PROFILE)
        return p if isinstance(p, Mapping) else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "flow": self.flow,
            "flow_version": self.flow_version,
            "step": self.step,
            "status": self.status,
            "slots": dict(self.slots),
            "attempts": dict(self.attempts),
            "stack": [dict(f) for f in self.stack],
            "pending": dict(self.pending) if self.pending is not None else None,
            "version": self.version,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> State:
        missing = [k for k in _FIELDS if k not in d]
        if missing:
            raise StateValidationError(f"state is missing {', '.join(missing)}; it is not a flowkit session state")
        return cls(
            session_id=str(d["session_id"]),
            flow=str(d["flow"]),
            flow_version=str(d["flow_version"]),
            step=d["step"],
            status=str(d["status"]),
            slots=dict(d["slots"] or {}),
            attempts={str(k): int(v) for k, v in (d["attempts"] or {}).items()},
            stack=tuple(dict(f) for f in (d["stack"] or ())),
            pending=dict(d["pending"]) if d["pending"] is not None else None,
            version=int(d["version"]),
            started_at=int(d["started_at"]),
            updated_at=int(d["updated_at"]),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> State:
        return cls.from_dict(json.loads(text))

    def evolve(self, **changes: Any) -> State:
        return replace(self, **changes)


def make(cls: type[_T], values: dict[str, Any]) -> _T:
    """A new frozen dataclass from *all* its field values, without running ``__init__``.

    For the engine's hot path only: a frozen ``__init__`` sets each field through
    ``object.__setattr__`` (about 6x the cost). This is construction, not mutation: the
    object is filled before anyone holds it, and nothing writes into it afterwards.
    ``values`` must name every field (docs/decisions.md, "One engine path").
    """
    obj = _new(cls)
    _set(obj, "__dict__", values)
    return obj


_new, _set = object.__new__, object.__setattr__


_FIELDS = ("session_id", "flow", "flow_version", "step", "status", "slots", "attempts", "stack", "pending",
           "version", "started_at", "updated_at")


@dataclass(frozen=True, kw_only=True)
class Record:
    """One history record: exactly the history columns of docs/design.md, minus what the store adds
    (``session_id``, ``flow``, ``flow_version`` come from the state)."""

    version: int
    ts: int
    event: str
    from_step: str | None
    to_step: str | None
    path: tuple[str, ...]
    status: str
    message_id: str | None = None
    input: str | None = None
    error: str | None = None
    actor: str = "runtime"
    why: str | None = None  # JSON: the branch, validation or service result that decided (engine/why.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "ts": self.ts,
            "event": self.event,
            "from_step": self.from_step,
            "to_step": self.to_step,
            "path": list(self.path),
            "status": self.status,
            "message_id": self.message_id,
            "input": self.input,
            "error": self.error,
            "actor": self.actor,
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        return cls(
            version=int(d["version"]),
            ts=int(d["ts"]),
            event=d["event"],
            from_step=d.get("from_step"),
            to_step=d.get("to_step"),
            path=tuple(d.get("path") or ()),
            status=d["status"],
            message_id=d.get("message_id"),
            input=d.get("input"),
            error=d.get("error"),
            actor=d.get("actor", "runtime"),
            why=d.get("why"),
        )


# ---------------------------------------------------------------- slot validation

# Slot checks run on answers and on whatever expressions and services wrote, so they use no
# backtracking regular expressions: a flow's `pattern:` goes through RE2 (linear time), the
# rest are plain string tests.


def _is_email(value: str) -> bool:
    """``x@y.z``: one ``@``, no whitespace, a dot inside the domain."""
    local, at, domain = value.partition("@")
    return (bool(at and local) and "@" not in domain and "." in domain[1:-1]
            and not any(c.isspace() for c in value))


def _is_phone(value: str) -> bool:
    digits = value[1:] if value.startswith("+") else value
    return 6 <= len(digits) <= 15 and digits.isdecimal()


#: Python writes no int of more than 4,300 digits as text (and JSON needs the text).
_JSON_INT = 10**4000


def json_problem(value: Any) -> str | None:
    """Why ``value`` has no JSON form the store accepts (NaN, infinity, a gigantic int), or None."""
    todo = [value]
    while todo:
        v = todo.pop()
        cls = v.__class__
        if cls is float:
            if not math.isfinite(v):
                return f"{v} is not a finite number"
        elif cls is int:
            if not -_JSON_INT < v < _JSON_INT:
                return "a whole number with more than 4000 digits"
        elif isinstance(v, Mapping):
            todo.extend(v.values())
        elif isinstance(v, (list, tuple)):
            todo.extend(v)
    return None


def slot_problem(spec: SlotSpec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec`` (a short code-like reason), or None when it fits."""
    if value is None:
        return None
    check = _CHECKS.get(spec.type)
    return check(spec, value) if check is not None else None


def _number(spec: SlotSpec, value: Any) -> str | None:
    if value.__class__ is float and not math.isfinite(value):
        return f"{value} is not a finite number"
    if value.__class__ is int and not -_JSON_INT < value < _JSON_INT:
        return "a whole number with more than 4000 digits"
    if spec.min is not None and value < spec.min:
        return f"{value} is below the minimum {spec.min:g}"
    if spec.max is not None and value > spec.max:
        return f"{value} is above the maximum {spec.max:g}"
    return None


def _int(spec: SlotSpec, value: Any) -> str | None:
    if value.__class__ is not int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"expected a whole number, got {type(value).__name__}"
    return _number(spec, value)


def _float(spec: SlotSpec, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {type(value).__name__}"
    return _number(spec, value)


def _bool(spec: SlotSpec, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true/false, got {type(value).__name__}"


def _string(spec: SlotSpec, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected text, got {type(value).__name__}"
    t = spec.type
    if t == "choice" and spec.options is not None and value not in spec.options:
        return f"{value!r} is not one of {', '.join(spec.options)}"
    if t == "email" and not _is_email(value):
        return f"{value!r} is not an e-mail address"
    if t == "phone" and not _is_phone(value):
        return f"{value!r} is not a phone number"
    if t == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not a YYYY-MM-DD date"
    if spec.min_length is not None and len(value) < spec.min_length:
        return f"shorter than {spec.min_length} characters"
    if spec.max_length is not None and len(value) > spec.max_length:
        return f"longer than {spec.max_length} characters"
    if spec.pattern is not None and not patterns.fullmatch(spec.pattern, value):
        return f"{value!r} does not match {spec.pattern}"
    return None


def _object(spec: SlotSpec, value: Any) -> str | None:
    t = spec.type
    if not isinstance(value, Mapping):
        return f"expected a {t} object, got {type(value).__name__}"
    if t == "location" and not {"latitude", "longitude"} <= set(value):
        return "a location needs latitude and longitude"
    if t == "media" and "id" not in value:
        return "media needs an id"
    return json_problem(value)


def _any(spec: SlotSpec, value: Any) -> str | None:
    return json_problem(value)


_CHECKS = {"int": _int, "number": _float, "bool": _bool, "location": _object, "media": _object, "any": _any,
           **{t: _string for t in ("text", "choice", "email", "phone", "date")}}


def check_slots(slots: Mapping[str, Any], schema: Mapping[str, SlotSpec], *, where: str) -> None:
    """Raise :class:`StateValidationError` naming the slot if ``slots`` break ``schema``."""
    for name, value in slots.items():
        if name == PROFILE:
            if not isinstance(value, Mapping):
                raise StateValidationError(f"{where}: slot 'profile' must be a mapping, got {type(value).__name__}")
            continue
        if name == EXPERIMENTS and name not in schema:  # {split step: variant}, engine/experiments.py
            if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise StateValidationError(f"{where}: slot 'experiments' must map split steps to variant names")
            continue
        spec = schema.get(name)
        if spec is None:
            raise StateValidationError(f"{where}: slot {name!r} is not declared by the flow")
        why = slot_problem(spec, value)
        if why is not None:
            raise StateValidationError(f"{where}: slot {name!r} is invalid: {why}")


def check_state_shape(state: State) -> None:
    """The flow-independent invariants of a state."""
    status = state.status
    if (state.pending is None) is (status in TERMINAL_STATUSES) and status in _STATUSES \
            and state.version >= 0 and 0 <= state.started_at <= state.updated_at:
        return  # (this runs on every event: the message below is only built for a broken state)
    problem = (
        f"unknown status {status!r}" if status not in _STATUSES else
        "bad version or timestamps" if not (state.version >= 0 and 0 <= state.started_at <= state.updated_at) else
        f"a {status} session must say what it waits for (pending)" if state.pending is None else
        f"a {status} session cannot wait for anything")
    raise StateValidationError(f"session {state.session_id!r} v{state.version}: {problem}")


_STATUSES = frozenset(STATUSES)
