"""Answers a simulated user gives: valid ones drawn from the step's input spec, and the
invalid ones real users send (typos, wrong type, out of range, empty)."""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Callable
from typing import Any

from flowkit.engine.events import UserMessage
from flowkit.flow.model import AskStep, InputSpec, SlotSpec

_FIRST = ["Ana", "Bo", "Chen", "Dara", "Emeka", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lena", "Mo", "Nia"]
_LAST = ["Silva", "Okafor", "Jensen", "Kowalski", "Nguyen", "Haddad", "Smith", "Rossi", "Tanaka", "Moreau"]
_STREETS = ["Main Street", "Harbour Road", "Elm Avenue", "Market Square", "Station Lane"]


def _bounds(spec: InputSpec, slot: SlotSpec | None) -> tuple[float | None, float | None]:
    lo = spec.min if isinstance(spec.min, (int, float)) else None
    hi = spec.max if isinstance(spec.max, (int, float)) else None
    if slot is not None:
        lo = max(x for x in (lo, slot.min) if x is not None) if (lo is not None or slot.min is not None) else None
        hi = min(x for x in (hi, slot.max) if x is not None) if (hi is not None or slot.max is not None) else None
    return lo, hi


def _text_between(rng: random.Random, lo: int, hi: int) -> str:
    n = rng.randint(lo, hi)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < n:
        words.append(rng.choice(_STREETS + _LAST + ["please", "thanks", "order", "today"]))
    return " ".join(words)[:n].strip().ljust(lo, "x")


def valid_answer(step: AskStep, slot: SlotSpec | None, rng: random.Random, today: dt.date, *,
                 upper: float | None = None) -> UserMessage:
    """A message that ``step`` accepts (and the slot it saves into, if any); a number is at
    most ``upper`` when that is given and still allowed."""
    spec = step.input
    t = spec.type
    if t == "choice":
        return _choice(spec, slot, rng)
    if t == "yes_no":
        return _yes_no(rng)
    if t in ("int", "number"):
        return _number(spec, slot, rng, upper)
    if t == "date":
        return _date(spec, rng, today)
    other = _OTHER_VALID.get(t)
    if other is not None:
        return other(spec, rng)
    return _text(step, slot, rng)


def _choice(spec: InputSpec, slot: SlotSpec | None, rng: random.Random) -> UserMessage:
    opts = [o for o in (spec.options or ()) if slot is None or slot.options is None or o in slot.options]
    pick = rng.choice(opts)
    style = rng.random()
    if style < 0.5:
        return UserMessage(type="button_reply" if len(opts) <= 3 else "list_reply", reply_id=pick, text=pick)
    if style < 0.75:
        return UserMessage(text=str((spec.options or ()).index(pick) + 1))  # "2" picks the second option
    return UserMessage(text=pick.upper() if rng.random() < 0.5 else f"  {pick} ")


def _yes_no(rng: random.Random) -> UserMessage:
    yes = rng.random() < 0.7
    if rng.random() < 0.5:
        return UserMessage(type="button_reply", reply_id="yes" if yes else "no", text="Yes" if yes else "No")
    return UserMessage(text=rng.choice(["yes", "Yes!", "sure", "ok", "y"] if yes else ["no", "No", "nope", "n"]))


def _number(spec: InputSpec, slot: SlotSpec | None, rng: random.Random, upper: float | None) -> UserMessage:
    lo, hi = _bounds(spec, slot)
    if upper is not None and (lo is None or upper >= lo) and (hi is None or upper < hi):
        hi = upper if spec.type == "number" or lo is None or int(upper) >= lo else hi
    lo_i = int(lo) if lo is not None else 1
    hi_i = int(hi) if hi is not None else lo_i + 50
    if spec.type == "int" or rng.random() < 0.5:
        lo_c = lo_i if lo is None or lo_i >= lo else lo_i + 1
        return UserMessage(text=str(rng.randint(lo_c, max(lo_c, hi_i))))
    value = rng.uniform(lo if lo is not None else 0.01, hi if hi is not None else 100)
    value = max(lo or 0.01, round(value, 2))
    return UserMessage(text=f"{value:.2f}".replace(".", ",") if rng.random() < 0.3 else f"{value:.2f}")


def _date(spec: InputSpec, rng: random.Random, today: dt.date) -> UserMessage:
    lo_d = dt.date.fromisoformat(str(spec.min)) if spec.min else today
    hi_d = dt.date.fromisoformat(str(spec.max)) if spec.max else today + dt.timedelta(days=60)
    lo_d = max(lo_d, min(today, hi_d))
    day = lo_d + dt.timedelta(days=rng.randint(0, max(0, (hi_d - lo_d).days)))
    return UserMessage(text=day.isoformat() if rng.random() < 0.6 else day.strftime("%d/%m/%Y"))


def _email(spec: InputSpec, rng: random.Random) -> UserMessage:
    name = rng.choice(_FIRST).lower()
    return UserMessage(text=f"{name}.{rng.randint(1, 999)}@example.com")


def _phone(spec: InputSpec, rng: random.Random) -> UserMessage:
    return UserMessage(text=f"+31 6 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}")


def _regex(spec: InputSpec, rng: random.Random) -> UserMessage:
    return UserMessage(text=_regex_sample(spec.pattern or "", rng))


def _location(spec: InputSpec, rng: random.Random) -> UserMessage:
    return UserMessage(type="location", location={"latitude": round(rng.uniform(-60, 60), 5),
                                              "longitude": round(rng.uniform(-170, 170), 5), "name": rng.choice(_STREETS)})


def _media(spec: InputSpec, rng: random.Random) -> UserMessage:
    kind = rng.choice(list(spec.media or ("image",)))
    return UserMessage(type="media", media={"id": f"media.{rng.randrange(10**9)}", "kind": kind, "mime_type": "image/jpeg"})


# input types whose valid answer depends only on the spec and the generator
_OTHER_VALID: dict[str, Callable[[InputSpec, random.Random], UserMessage]] = {
    "email": _email, "phone": _phone, "regex": _regex, "location": _location, "media": _media}


def _text(step: AskStep, slot: SlotSpec | None, rng: random.Random) -> UserMessage:
    spec = step.input
    lo_len = max(spec.min_length or 1, (slot.min_length if slot and slot.min_length else 1))
    hi_len = min(spec.max_length or 40, (slot.max_length if slot and slot.max_length else 40))
    if hi_len < lo_len:
        hi_len = lo_len
    if "name" in step.name:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        if lo_len <= len(name) <= hi_len:
            return UserMessage(text=name)
    return UserMessage(text=_text_between(rng, lo_len, hi_len))


def _regex_sample(pattern: str, rng: random.Random) -> str:
    """A string for the common shapes of patterns (letters/digits with counts); good enough
    for simulation, and checked by the engine like any answer."""
    out = []
    i = 0
    p = pattern.strip("^$")
    while i < len(p):
        if p.startswith("[A-Z]", i) or p.startswith("[A-Za-z]", i):
            pool, i = string.ascii_uppercase, i + (5 if p.startswith("[A-Z]", i) else 8)
        elif p.startswith("[0-9]", i) or p.startswith("\\d", i):
            pool, i = string.digits, i + (5 if p.startswith("[0-9]", i) else 2)
        else:
            out.append(p[i])
            i += 1
            continue
        n = 1
        if i < len(p) and p[i] == "{":
            j = p.index("}", i)
            n = int(p[i + 1 : j].split(",")[0])
            i = j + 1
        out.append("".join(rng.choice(pool) for _ in range(n)))
    return "".join(out)


# What real users send to a question of each type that it rejects.
_INVALID: dict[str, list[str]] = {
    "location": ["here", "see photo", "?"],
    "media": ["here", "see photo", "?"],
    "int": ["lots", "a few", "-999999", "99999999", "??"],
    "number": ["lots", "a few", "-999999", "99999999", "??"],
    "choice": ["not sure", "the big one please", "xyz", "0", "99"],
    "yes_no": ["maybe", "dunno", "what?", "hmm"],
    "date": ["next week sometime", "31/02/2026", "soon", "1999-01-01"],
    "email": ["my email", "ana@", "at example dot com"],
    "phone": ["call me", "123", "phone"],
    "regex": ["no idea", "12", "ABC"],
}


def invalid_answer(step: AskStep, rng: random.Random) -> UserMessage:
    """A message that ``step`` rejects, of the kinds real users send."""
    spec = step.input
    typical = _INVALID.get(spec.type)
    if typical is not None:
        return UserMessage(text=rng.choice(typical))
    if spec.min_length and spec.min_length > 1:
        return UserMessage(text="x" * (spec.min_length - 1))
    if spec.max_length:
        return UserMessage(text="y" * (spec.max_length + 1))
    # A blank message: the one typed answer a plain text question rejects. (A sticker or an
    # unsupported message is other content: re-prompted, but it does not use up a retry.)
    return UserMessage(text=" ")


def service_value(slot: SlotSpec | None, rng: random.Random, call_id: str) -> Any:
    """A plausible successful result for a simulated service saving into ``slot``."""
    if slot is None or slot.type in ("any",):
        return {"id": call_id[-8:], "amount": round(rng.uniform(5, 200), 2), "ok": True}
    t = slot.type
    if t == "int":
        lo = int(slot.min) if slot.min is not None else 0
        return rng.randint(lo, int(slot.max) if slot.max is not None else lo + 100)
    if t == "number":
        return round(rng.uniform(slot.min or 0, slot.max or 100), 2)
    if t == "bool":
        return rng.random() < 0.5
    if t == "choice" and slot.options:
        return rng.choice(slot.options)
    return f"REF-{rng.randrange(16**6):06X}"
