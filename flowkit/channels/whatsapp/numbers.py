"""Several WhatsApp numbers on one deployment: which numbers are ours, which flows each runs,
and how a session id names the number that received its messages.

A business often runs a sales and a support number on one Redis and one ``flowkit serve``.
The numbers file (``--numbers FILE`` or ``FLOWKIT_NUMBERS``) says which flows each runs::

    numbers:
      "106540352242922": {name: Sales, flows: [order_pizza, book_appointment], rate: 80}
      "106540352242923": {name: Support, flows: [support_triage, refund]}

Without it, the numbers are those of ``WHATSAPP_PHONE_NUMBER_ID`` (one or several,
comma-separated) and each runs every flow.

**Session ids.** The first number listed is the *primary* one: its sessions keep the bare
user id (the wa_id), so a deployment that adds a second number keeps its existing
sessions. Sessions on any other number are ``<wa_id>@<phone_number_id>``: the same user
writing to two numbers has two sessions, and every reply, timeout message, agent reply and
read receipt of a session leaves from the number its id names (docs/decisions.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flowkit.errors import NumbersError, Problem
from flowkit.flow.reader import Node, Reader, type_name

#: Between the user id and the number id in a session id (neither ever contains it).
SEPARATOR = "@"
_NUMBER_KEYS = frozenset({"flows", "rate", "name"})
MAX_FILE_BYTES = 256 * 1024
_Err = Callable[[Node, str, str], None]  # reports a problem at a node: (node, code, message)


@dataclass(frozen=True)
class Number:
    """One phone number of this deployment. ``flows`` None: it runs every loaded flow."""

    id: str
    flows: tuple[str, ...] | None = None
    rate: float | None = None  # sends per second (its throughput tier); None: the process's --rate
    name: str | None = None
    #: where each flow name was written (file, line, column), for errors naming unknown flows
    places: tuple[tuple[str, int, int], ...] = field(default=(), compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.id} ({self.name})" if self.name else self.id


@dataclass(frozen=True)
class Numbers:
    """The numbers this deployment answers for, in the order they were listed (the first is primary).

    No numbers at all: any phone number id is accepted and every session id is the bare user id.
    """

    numbers: tuple[Number, ...] = ()
    source: str | None = None  # the numbers file, or None (WHATSAPP_PHONE_NUMBER_ID)

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> Numbers:
        """Numbers that run every flow (``WHATSAPP_PHONE_NUMBER_ID``'s meaning), duplicates dropped."""
        seen: dict[str, Number] = {}
        for raw in ids:
            if (i := raw.strip()) and i not in seen:
                seen[i] = Number(i)
        return cls(tuple(seen.values()))

    @property
    def primary(self) -> Number | None:
        return self.numbers[0] if self.numbers else None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(n.id for n in self.numbers)

    def get(self, number_id: str | None) -> Number | None:
        return next((n for n in self.numbers if n.id == number_id), None)

    def accepts(self, number_id: str | None) -> bool:
        """Is a message to ``number_id`` ours to process? (Any number when none are configured.)"""
        return not self.numbers or number_id in self.ids

    def session_id(self, number_id: str | None, wa_id: str) -> str:
        """The session of ``wa_id`` writing to ``number_id``: the bare user id on the primary number."""
        primary = self.primary
        if primary is None or not number_id or number_id == primary.id:
            return wa_id
        return f"{wa_id}{SEPARATOR}{number_id}"

    def address(self, session_id: str) -> tuple[str | None, str]:
        """(the number a session's messages leave from, the user they go to).

        A bare user id belongs to the primary number (None when no number is configured: the
        sender's own). A session id naming a number no longer configured still answers from
        that number: it is the one the user wrote to."""
        user, sep, number = session_id.rpartition(SEPARATOR)
        if sep and user and number.isdigit():
            return number, user
        primary = self.primary
        return (primary.id if primary else None), session_id

    def flows_for(self, session_id: str) -> frozenset[str] | None:
        """The flows a session may start (None: every flow)."""
        number = self.get(self.address(session_id)[0])
        return frozenset(number.flows) if number is not None and number.flows is not None else None

    def rate_for(self, session_id: str) -> float | None:
        number = self.get(self.address(session_id)[0])
        return number.rate if number is not None else None

    def check_flows(self, known: Iterable[str]) -> None:
        """Raise :class:`NumbersError` naming every flow a number runs that is not loaded."""
        names = sorted(set(known))
        problems = []
        for number in self.numbers:
            for flow, line, column in number.places:
                if flow not in names:
                    problems.append(Problem(
                        self.source or "numbers", line, column, "unknown-flow",
                        f"number {number.label} runs flow {flow!r}, which is not loaded "
                        f"(loaded: {', '.join(names) or 'none'}); fix the name or load that flow"))
        if problems:
            raise NumbersError(problems)


# ---------------------------------------------------------------- the numbers file


def load_numbers(path: str | Path) -> Numbers:
    """Read a numbers file; every problem is reported with its line (:class:`NumbersError`)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise NumbersError(Problem(str(p), 1, 1, "too-large", f"the numbers file is over {MAX_FILE_BYTES} bytes; "
                                                                   "it lists phone numbers, not data"))
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NumbersError(Problem(str(p), 1, 1, "unreadable",
                                   f"cannot read the numbers file: {exc}; check --numbers / FLOWKIT_NUMBERS")) from None
    return parse_numbers(text, str(p))


def parse_numbers(text: str, file: str = "numbers.yaml") -> Numbers:
    """The numbers ``text`` lists (``file`` names it in errors); :class:`NumbersError` lists every problem."""
    if not text.strip():  # the flow reader's own message would ask for a flow
        raise NumbersError(Problem(file, 1, 1, "empty", "the numbers file is empty; write `numbers:` with one "
                                                        "entry per phone number id"))
    reader = Reader(text, file)
    root = reader.read()
    problems = list(reader.problems)
    numbers = _numbers(root, file, problems) if root is not None and not problems else []
    if problems:
        raise NumbersError(problems)
    return Numbers(tuple(numbers), file)


def _numbers(root: Node, file: str, problems: list[Problem]) -> list[Number]:
    def err(node: Node, code: str, message: str) -> None:
        problems.append(Problem(file, node.line, node.column, code, message))

    if not root.is_map:
        err(root, "wrong-type", f"the numbers file must be a mapping with a `numbers:` key, not {type_name(root.plain())}")
        return []
    for key, (knode, _) in root.value.items():
        if key != "numbers":
            err(knode, "unknown-key", f"unknown key {key!r}; the numbers file has one key, `numbers:`")
    entry = root.value.get("numbers")
    if entry is None:
        err(root, "missing", "the numbers file has no `numbers:` key; list each phone number id under it")
        return []
    listed = entry[1]
    if not listed.is_map or not listed.value:
        err(listed, "wrong-type", "`numbers:` must map each phone number id to its settings, "
                                  'e.g. "106540352242922": {flows: [order_pizza]}')
        return []
    out = []
    for number_id, (knode, vnode) in listed.value.items():
        if not number_id.isdigit():
            err(knode, "bad-id", f"{number_id!r} is not a phone number id (digits only, as in the WhatsApp Manager; "
                                 "not the phone number itself with + or spaces)")
            continue
        out.append(_number(number_id, vnode, err))
    return out


def _number(number_id: str, node: Node, err: _Err) -> Number:
    if node.value is None:
        return Number(number_id)
    if not node.is_map:
        err(node, "wrong-type", f"the settings of number {number_id} must be a mapping (flows, rate, name), "
                                f"not {type_name(node.plain())}")
        return Number(number_id)
    settings: Mapping[str, tuple[Node, Node]] = node.value
    for key, (knode, _) in settings.items():
        if key not in _NUMBER_KEYS:
            err(knode, "unknown-key", f"unknown key {key!r} for number {number_id}; use flows, rate or name")
    flows, places = _flows(number_id, settings.get("flows"), err)
    return Number(number_id, flows, _rate(number_id, settings.get("rate"), err),
                  _name(number_id, settings.get("name"), err), places)


def _flows(number_id: str, entry: tuple[Node, Node] | None, err: _Err) -> tuple[tuple[str, ...] | None,
                                                                               tuple[tuple[str, int, int], ...]]:
    if entry is None:
        return None, ()
    node = entry[1]
    if not node.is_list or not node.value:
        err(node, "wrong-type", f"`flows` of number {number_id} must be a non-empty list of flow names "
                                "(leave it out to run every flow)")
        return None, ()
    names: list[str] = []
    places = []
    for item in node.value:
        if not isinstance(item.value, str) or not item.value.strip():
            err(item, "wrong-type", f"a flow name of number {number_id} must be text, not {type_name(item.value)}")
        elif item.value in names:
            err(item, "duplicate", f"flow {item.value!r} is listed twice for number {number_id}")
        else:
            names.append(item.value)
            places.append((item.value, item.line, item.column))
    return tuple(names), tuple(places)


def _rate(number_id: str, entry: tuple[Node, Node] | None, err: _Err) -> float | None:
    if entry is None:
        return None
    v = entry[1].value
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        err(entry[1], "bad-value", f"`rate` of number {number_id} must be a positive number of messages per "
                                   f"second (its throughput tier, e.g. 80), not {v!r}")
        return None
    return float(v)


def _name(number_id: str, entry: tuple[Node, Node] | None, err: _Err) -> str | None:
    if entry is None:
        return None
    v = entry[1].value
    if not isinstance(v, str) or not v.strip():
        err(entry[1], "wrong-type", f"`name` of number {number_id} must be text, e.g. Sales")
        return None
    return v.strip()


# ---------------------------------------------------------------- from the environment


def numbers_from_env(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Numbers:
    """The numbers file ``path`` (default ``FLOWKIT_NUMBERS``), else ``WHATSAPP_PHONE_NUMBER_ID``'s ids."""
    env = os.environ if environ is None else environ
    where = path if path is not None else env.get("FLOWKIT_NUMBERS", "").strip() or None
    if where is not None:
        return load_numbers(where)
    return Numbers.from_ids(env.get("WHATSAPP_PHONE_NUMBER_ID", "").split(","))


__all__ = ["SEPARATOR", "Number", "Numbers", "load_numbers", "numbers_from_env", "parse_numbers"]
