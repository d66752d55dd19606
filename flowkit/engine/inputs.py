"""Validate and normalise a user's answer for an ``ask`` step.

Rules are locale-independent and documented here so users and analysts can predict them:

- any typed answer: at most 4,096 characters (WhatsApp's text limit), checked before any
  parsing (``too_long``); a text with lone surrogates has no UTF-8 form (``unreadable``).
  No rule uses a backtracking regular expression: each is a few linear string operations,
  and a flow's own ``pattern:`` runs in RE2.
- text: trimmed; must not be empty (a tapped button answers with its title).
- int: optional sign, digits, thousands grouped by ``,`` ``.`` ``'`` ``_`` or spaces in groups
  of three (``1,000``; ``12 34`` is refused), or a number word from zero to twenty (``three``).
  Digits of any script count (``١٢`` is 12); at most 30 digits.
- number: as int, plus one decimal separator. With both ``.`` and ``,`` the last one is the
  decimal separator and the other must group by three (``1.234,5`` and ``1,234.5`` are both
  1234.5); a single ``,`` followed by exactly three digits groups thousands (``1,500``),
  otherwise it is the decimal separator (``12,50``); a single ``.`` is always decimal
  (``1.500`` is 1.5). Whole numbers stay exact ints. Currency signs and codes around the
  number are ignored.
- choice: the option itself (case-insensitive), a tapped button/list row id, the option's
  number (``2`` or ``2)``), its button/row title, or an unambiguous prefix of 3+ letters.
- yes_no: yes/no in several languages, y/n, ok, true/false, 1/0, thumbs up/down (any skin tone),
  or the ``yes``/``no`` id of a tapped button.
- email: ``local@domain.tld``, domain lower-cased.
- phone: 6 to 15 digits after removing spaces, dashes, dots and brackets; ``+``/``00`` kept as ``+``.
- date: ``YYYY-MM-DD``, day-first ``DD/MM/YYYY`` (also ``.`` and ``-``), ``25 Dec 2026``,
  ``Dec 25 2026`` (English month names or their 3+ letter prefixes), ``today``, ``tomorrow`` (relative to the engine's ``now``, UTC).
  Stored as ``YYYY-MM-DD``.
- location and media: only the matching WhatsApp message type is accepted; a location needs
  latitude -90..90 and longitude -180..180, media an id.
- a tapped button or list row answers only if its id is one the question offers (its
  buttons and rows, its options, ``yes``/``no``); a tap on an older message (``stale_reply``)
  is never read as an answer, not even by its title.

Other content (a sticker at a text question, a photo at a location question, a stale tap:
see :func:`is_other_content`) gets a re-prompt that says what is expected but does not
use up one of the question's retries (docs/decisions.md).
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowkit.engine.events import UserMessage
from flowkit.engine.state import slot_problem
from flowkit.flow import patterns
from flowkit.flow.model import InputSpec, SlotSpec


@dataclass(frozen=True)
class InvalidInput(Exception):
    """The answer does not fit; ``code`` is recorded in history (``error`` column)."""

    code: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


# Messages used when an ask step gives no `invalid:` text of its own.
DEFAULT_INVALID: Mapping[str, str] = {
    "empty": "Please type an answer.",
    "wrong_type": "Please answer with a text message.",
    "not_a_number": "Please send a number.",
    "not_an_integer": "Please send a whole number.",
    "too_small": "That number is too small.",
    "too_large": "That number is too large.",
    "too_short": "That answer is too short.",
    "too_long": "That answer is too long.",
    "not_an_option": "Please choose one of the options.",
    "not_yes_no": "Please answer yes or no.",
    "pattern_mismatch": "That doesn't look right, please check the format.",
    "bad_email": "Please send a valid e-mail address.",
    "bad_phone": "Please send a valid phone number.",
    "bad_date": "Please send a date like 2026-12-31.",
    "date_out_of_range": "That date is not available.",
    "need_location": "Please share a location (tap + and choose Location).",
    "need_media": "Please send a photo or a file.",
    "wrong_media": "That kind of file is not accepted here.",
    "slot_constraint": "That answer is not accepted here.",
    "unreadable": "Sorry, I could not read that message. Please send it again.",
    "stale_reply": "That button belongs to an earlier message. Please answer this question:",
}

# What a question of each input type expects, said when something else arrives.
EXPECTED: Mapping[str, str] = {
    "int": DEFAULT_INVALID["not_an_integer"], "number": DEFAULT_INVALID["not_a_number"],
    "choice": DEFAULT_INVALID["not_an_option"], "yes_no": DEFAULT_INVALID["not_yes_no"],
    "email": DEFAULT_INVALID["bad_email"], "phone": DEFAULT_INVALID["bad_phone"], "date": DEFAULT_INVALID["bad_date"],
    "location": DEFAULT_INVALID["need_location"], "media": DEFAULT_INVALID["need_media"],
}
_TAPS = ("button_reply", "list_reply")


def is_other_content(msg: UserMessage, exc: InvalidInput) -> bool:
    """Whether ``msg`` was not an attempt at this question at all (another kind of message, or
    a tap on an earlier message), rather than a wrong answer. Typed text is always an attempt."""
    return exc.code in ("wrong_type", "stale_reply") or (
        msg.type != "text" and exc.code in ("need_location", "need_media"))

_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split()
)}
_YES = {"yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "true", "1", "si", "sí", "oui", "ja", "sim",
        "correct", "right", "affirmative", "👍", "✅"}
_NO = {"no", "n", "nope", "nah", "false", "0", "non", "nein", "não", "nao", "wrong", "incorrect", "👎", "❌"}
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december")


def _month(word: str) -> int | None:
    """``dec``, ``Dec.``, ``sept``, ``december`` -> 12; not ``decxyz``."""
    w = word.rstrip(".")
    if len(w) < 3:
        return None
    for i, name in enumerate(_MONTH_NAMES):
        if name.startswith(w):
            return i + 1
    return None


#: The longest answer the engine parses. WhatsApp text messages hold at most 4,096
#: characters; anything longer did not come from WhatsApp and is refused as ``too_long``
#: before any parsing, so no parser ever sees more than this.
MAX_ANSWER_CHARS = 4096

_CURRENCIES = ("$", "€", "£", "¥", "₹", "eur", "usd", "gbp", "brl", "inr")
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.!#$%&'*+/=?^_`{|}~-")
_LABEL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ORDINALS = ("st", "nd", "rd", "th")
# No regular expressions on answers: each rule below is a few linear string operations, so
# the cost of any answer is bounded by its length (tests/engine/test_no_re.py keeps it so).


def is_utf8(text: str) -> bool:
    """False for a text with lone surrogates (``"\\ud800"`` in a JSON payload parses to one):
    no UTF-8 form, so neither RE2 nor the session store could take it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field(value: Any, code: str, name: str) -> str:
    """A text field of a location or media message, as bounded as a typed answer."""
    text = str(value)
    if len(text) > MAX_ANSWER_CHARS or not is_utf8(text):
        raise InvalidInput(code, f"the {name} is not a readable text of at most {MAX_ANSWER_CHARS} characters")
    return text


def _digits(s: str) -> bool:
    """Only ASCII digits, at least one."""
    return s.isascii() and s.isdigit()


def _grouped(s: str, seps: str) -> bool:
    """``1,234,567``: 1 to 3 digits, then groups of exactly 3 after any of ``seps`` (at least one)."""
    if not s or s[0] in seps:
        return False
    for c in seps[1:]:
        s = s.replace(c, seps[0])
    groups = s.split(seps[0])
    return (len(groups) >= 2 and 1 <= len(groups[0]) <= 3 and _digits(groups[0])
            and all(len(g) == 3 and _digits(g) for g in groups[1:]))


def _strip_currency(t: str) -> str:
    """Without one currency sign or code at the start and one at the end (lower-case ``t``)."""
    for c in _CURRENCIES:
        if t.startswith(c):
            t = t[len(c):].lstrip()
            break
    for c in _CURRENCIES:
        if t.endswith(c):
            t = t[: len(t) - len(c)].rstrip()
            break
    return t


_MAX_DIGITS = 30  # longer "numbers" are not answers (and Python refuses int() of 4300+ digits)


def _text(msg: UserMessage) -> str:
    if msg.type not in ("text", "button_reply", "list_reply"):
        raise InvalidInput("wrong_type", f"got a {msg.type} message")
    raw = msg.text or ""
    if len(raw) > MAX_ANSWER_CHARS:  # before any parsing (and before NFC, which can lengthen it)
        raise InvalidInput("too_long", f"{len(raw)} characters; answers hold at most {MAX_ANSWER_CHARS}")
    if not is_utf8(raw):
        raise InvalidInput("unreadable", "the text has lone surrogates (no UTF-8 form)")
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        raise InvalidInput("empty")
    return text


def _ascii_digits(t: str) -> str:
    """Any script's decimal digits (``١٢``, ``１２``) as ASCII digits."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in t)


def parse_int(text: str) -> int:
    t = _ascii_digits(_strip_currency(text.strip().lower()))
    if t in _WORDS:
        return _WORDS[t]
    sign = ""
    if t and t[0] in "+-":
        sign, t = t[0], t[1:].lstrip()  # "- 5"
    if _grouped(t, ",.' _"):
        t = t.replace(",", "").replace(".", "").replace("'", "").replace(" ", "").replace("_", "")
    if _digits(t) and len(sign) + len(t) <= _MAX_DIGITS:
        return int(sign + t)
    if len(sign) + len(t) <= _MAX_DIGITS:  # "3.0" is a whole number
        cut = min((i for i in (t.find("."), t.find(",")) if i >= 0), default=-1)
        if cut > 0 and _digits(t[:cut]) and len(t) > cut + 1 and t[cut + 1:] == "0" * (len(t) - cut - 1):
            return int(sign + t[:cut])
    raise InvalidInput("not_an_integer", f"{text!r} is not a whole number")


def parse_number(text: str) -> int | float:  # noqa: C901 -- one branch per accepted spelling (sign, grouping, decimal comma)
    t = _ascii_digits(_strip_currency(text.strip().lower()))
    if t in _WORDS:
        return _WORDS[t]
    sign = ""
    if t and t[0] in "+-":
        sign, t = t[0], t[1:].lstrip()
    # Spaces, `_` and `'` only group thousands: "1 234,5" yes, "12 34" no.
    if " " in t or "_" in t or "'" in t:
        cut = min((i for i in (t.find("."), t.find(",")) if i >= 0), default=len(t))
        whole, frac = t[:cut], t[cut + 1:]
        if not _grouped(whole, " _'") or (cut < len(t) and not _digits(frac)):
            raise InvalidInput("not_a_number", f"{text!r} is not a number")
        t = t.replace(" ", "").replace("_", "").replace("'", "")
    if (not t or len(t) > _MAX_DIGITS or not t.isascii() or t.strip("0123456789.,")
            or not any(c.isdigit() for c in t)):
        raise InvalidInput("not_a_number", f"{text!r} is not a number")
    if "." in t and "," in t:
        dec = "." if t.rfind(".") > t.rfind(",") else ","
        grp = "," if dec == "." else "."
        whole = t[: t.rfind(dec)]
        if not _grouped(whole, grp):
            raise InvalidInput("not_a_number", f"{text!r} is not a number")
        t = t.replace(grp, "").replace(dec, ".")
    elif "," in t:
        parts = t.split(",")
        if len(parts) > 2 or (len(parts) == 2 and len(parts[1]) == 3):
            if not all(len(p) == 3 for p in parts[1:]):
                raise InvalidInput("not_a_number", f"{text!r} is not a number")
            t = t.replace(",", "")
        else:
            t = t.replace(",", ".")
    elif t.count(".") > 1:
        parts = t.split(".")
        if not all(len(p) == 3 for p in parts[1:]):
            raise InvalidInput("not_a_number", f"{text!r} is not a number")
        t = t.replace(".", "")
    if _digits(t):
        return int(sign + t)  # exact, however many digits (a float would round 2**53 + 1)
    try:
        value = float(sign + t)
    except ValueError:
        raise InvalidInput("not_a_number", f"{text!r} is not a number") from None
    if not math.isfinite(value):  # not reachable in 30 characters, but never let one through
        raise InvalidInput("not_a_number", f"{text!r} is not a finite number")
    return value


# variation selector-16 and the five skin tones: "👍🏽" is "👍"
_EMOJI_MODIFIERS = {0xFE0F: None, **{c: None for c in range(0x1F3FB, 0x1F400)}}


def parse_yes_no(text: str) -> bool:
    t = text.translate(_EMOJI_MODIFIERS).strip().lower().rstrip("!.").strip()
    if t in _YES:
        return True
    if t in _NO:
        return False
    raise InvalidInput("not_yes_no", f"{text!r} is not yes or no")


def _squash_spaces(t: str) -> str:
    """Each run of whitespace as one space (the ends too, as a space)."""
    words = t.split()
    if not words:
        return " " if t else ""
    return (" " if t[0].isspace() else "") + " ".join(words) + (" " if t[-1].isspace() else "")


def _day(word: str) -> str | None:
    """``25``, ``25th`` -> ``25``; else None."""
    if word[-2:] in _ORDINALS:
        word = word[:-2]
    return word if 1 <= len(word) <= 2 and _digits(word) else None


def _month_word(word: str) -> int | None:
    """``dec``, ``dec.`` (ASCII letters, an optional final dot) -> 12."""
    letters = word[:-1] if word.endswith(".") else word
    if not (letters.isascii() and letters.isalpha() and letters.islower()):
        return None
    return _month(word)


def parse_date(text: str, today: dt.date) -> str:
    t = _squash_spaces(_ascii_digits(text.strip().lower().replace(",", " ")))
    if t == "today":
        return today.isoformat()
    if t == "tomorrow":
        return (today + dt.timedelta(days=1)).isoformat()
    try:
        parts = t.split("-")
        if len(parts) == 3 and len(parts[0]) == 4 and all(1 <= len(p) <= 2 for p in parts[1:]) and all(map(_digits, parts)):
            return dt.date(int(parts[0]), int(parts[1]), int(parts[2])).isoformat()
        parts = t.replace("/", "-").replace(".", "-").split("-")
        if len(parts) == 3 and all(1 <= len(p) <= 2 for p in parts[:2]) and len(parts[2]) == 4 and all(map(_digits, parts)):
            return dt.date(int(parts[2]), int(parts[1]), int(parts[0])).isoformat()
        words = t.split(" ")
        if len(words) == 3 and len(words[2]) == 4 and _digits(words[2]):
            if (day := _day(words[0])) is not None and (month := _month_word(words[1])):
                return dt.date(int(words[2]), month, int(day)).isoformat()
            if (day := _day(words[1])) is not None and (month := _month_word(words[0])):
                return dt.date(int(words[2]), month, int(day)).isoformat()
    except ValueError:
        raise InvalidInput("bad_date", f"{text!r} is not a real date") from None
    raise InvalidInput("bad_date", f"{text!r} is not a date")


def parse_phone(text: str) -> str:
    t = _ascii_digits("".join(c for c in text.strip() if not (c.isspace() or c in "-.()/")))
    plus = t.startswith("+") or t.startswith("00")
    digits = t[1:] if t.startswith("+") else (t[2:] if t.startswith("00") else t)
    if not (6 <= len(digits) <= 15 and _digits(digits)):
        raise InvalidInput("bad_phone", f"{text!r} is not a phone number")
    return ("+" if plus else "") + digits


def is_email(text: str) -> bool:
    """``local@domain.tld``: the local part in RFC 5322's atom characters, dot-separated
    domain labels of letters, digits and ``-``, a top-level domain of 2+ letters."""
    local, at, domain = text.partition("@")
    if not at or not local or not _LOCAL_CHARS.issuperset(local):
        return False
    labels = domain.split(".")
    return (len(labels) >= 2 and all(label and _LABEL_CHARS.issuperset(label) for label in labels)
            and len(labels[-1]) >= 2 and labels[-1].isascii() and labels[-1].isalpha())


def parse_choice(text: str, reply_id: str | None, options: Sequence[str], labels: Mapping[str, str]) -> str:
    """``labels`` maps button/row titles (lower-case) to option values."""
    if reply_id is not None and reply_id in options:
        return reply_id
    t = text.strip().lower()
    by_lower = {o.lower(): o for o in options}
    if t in by_lower:
        return by_lower[t]
    if t in labels:
        return labels[t]
    num = t[:-1] if t.endswith((")", ".")) else t
    if 1 <= len(num) <= 2 and num.isdecimal():  # "2", "2)", "2."
        i = int(num)
        if 1 <= i <= len(options):
            return options[i - 1]
    if len(t) >= 3:
        hits = [o for o in options if o.lower().startswith(t)]
        if len(hits) == 1:
            return hits[0]
    raise InvalidInput("not_an_option", f"{text!r} is not one of {', '.join(options)}")


def parse_input(spec: InputSpec, msg: UserMessage, *, slot: SlotSpec | None = None,
                labels: Mapping[str, str] | None = None, today: dt.date | None = None,
                offered: Collection[str] | None = None) -> Any:
    """The normalised value of ``msg`` for ``spec`` (and the slot it is saved into).

    ``offered``: the button and row ids the question offers; a tap on another id is a
    ``stale_reply`` (None: taps are not checked). Raises :class:`InvalidInput` with a
    stable code when the answer does not fit.
    """
    t = spec.type
    value: Any
    if offered is not None and msg.type in _TAPS and msg.reply_id not in offered:
        raise InvalidInput("stale_reply", f"{msg.reply_id!r} is not a button or row of this question")
    if t == "location":
        value = _location(msg)
    elif t == "media":
        value = _media(spec, msg)
    elif t == "choice" and msg.reply_id is not None and msg.reply_id in (spec.options or ()):
        value = msg.reply_id  # a tapped button or list row
    elif t == "yes_no" and msg.reply_id in ("yes", "no"):
        value = msg.reply_id == "yes"
    else:
        value = _typed(spec, _text(msg), msg.reply_id, labels, today)
    _check_bounds(spec, value)
    if slot is not None:
        why = slot_problem(slot, value)
        if why is not None:
            raise InvalidInput("slot_constraint", why)
    return value


def _location(msg: UserMessage) -> dict[str, Any]:
    if msg.type != "location" or not msg.location:
        raise InvalidInput("need_location")
    loc = msg.location
    for k, limit in (("latitude", 90), ("longitude", 180)):
        v = loc.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -limit <= v <= limit:
            raise InvalidInput("need_location", f"{k} {v!r} is not a number from -{limit} to {limit}")
    value = {k: loc[k] for k in ("latitude", "longitude") if loc.get(k) is not None}
    value.update({k: _field(loc[k], "need_location", k) for k in ("name", "address") if loc.get(k) is not None})
    return value


def _media(spec: InputSpec, msg: UserMessage) -> dict[str, Any]:
    if msg.type != "media" or not msg.media:
        raise InvalidInput("need_media")
    media = dict(msg.media)
    if not isinstance(media.get("id"), str) or not media["id"]:
        raise InvalidInput("need_media", "the media has no id")
    if spec.media and media.get("kind") not in spec.media:
        raise InvalidInput("wrong_media", f"{media.get('kind')} is not one of {', '.join(spec.media)}")
    return {k: _field(media[k], "need_media", k) for k in ("id", "kind", "mime_type", "sha256", "caption",
                                                            "filename") if media.get(k) is not None}


def _typed(spec: InputSpec, text: str, reply_id: str | None, labels: Mapping[str, str] | None,
           today: dt.date | None) -> Any:
    """The value of a typed answer (or a tap's title) for the question's input type."""
    t = spec.type
    simple = _TEXT_PARSERS.get(t)
    if simple is not None:
        return simple(text)
    if t == "text" or t == "regex":
        if t == "regex" and spec.pattern and not patterns.fullmatch(spec.pattern, text):
            raise InvalidInput("pattern_mismatch", f"{text!r} does not match")
        return text
    if t == "choice":
        return parse_choice(text, reply_id, spec.options or (), labels or {})
    if t == "email":
        if not is_email(text):
            raise InvalidInput("bad_email", f"{text!r} is not an e-mail address")
        local, domain = text.rsplit("@", 1)
        return f"{local}@{domain.lower()}"
    if t == "date":
        return parse_date(text, today or dt.date(1970, 1, 1))
    raise InvalidInput("wrong_type", f"unsupported input type {t}")  # pragma: no cover - the loader admits INPUT_TYPES


_TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": parse_int, "number": parse_number, "yes_no": parse_yes_no, "phone": parse_phone}


def _check_bounds(spec: InputSpec, value: Any) -> None:
    if spec.type in ("int", "number"):
        if spec.min is not None and value < float(spec.min):
            raise InvalidInput("too_small", f"{value} < {spec.min}")
        if spec.max is not None and value > float(spec.max):
            raise InvalidInput("too_large", f"{value} > {spec.max}")
    if spec.type == "date":
        if (spec.min is not None and value < str(spec.min)) or (spec.max is not None and value > str(spec.max)):
            raise InvalidInput("date_out_of_range", f"{value} is outside {spec.min}..{spec.max}")
    if isinstance(value, str) and spec.type in ("text", "regex", "email", "phone"):
        if spec.min_length is not None and len(value) < spec.min_length:
            raise InvalidInput("too_short", f"{len(value)} < {spec.min_length} characters")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise InvalidInput("too_long", f"{len(value)} > {spec.max_length} characters")
