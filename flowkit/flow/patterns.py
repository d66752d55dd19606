"""Regular expressions written in flow files, matched in linear time (RE2).

A flow author's pattern (an input's ``pattern:``, ``matches(text, pattern)`` in an
expression) runs against whatever users send. Python's backtracking ``re`` can take
exponential time on a pattern like ``(a+)+$`` and a long enough message (ReDoS); RE2
guarantees time linear in the input and refuses what would need backtracking
(backreferences, lookaround), so such a pattern is a lint error instead of an outage.
RE2's ``\\d``, ``\\w`` and ``\\s`` are ASCII classes.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

from flowkit.errors import PatternError

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"{why} (patterns are matched with RE2, in linear time: no backreferences or "
                           "lookaround)") from None


def fullmatch(pattern: str, text: str) -> bool:
    """Does all of ``text`` match ``pattern``? Raises PatternError for a pattern RE2 refuses."""
    return compile_pattern(pattern).fullmatch(text) is not None


#: A pattern computed while a session runs (``matches(text, some_slot)``) may be a user's
#: text. RE2 matches it in linear time, but compiling one can cost ~15 ms and ~250 KB
#: (``[^a]{1000}[^b]{1000}...``), so such patterns are bounded in length and cached apart,
#: a few at a time, instead of filling the cache of the patterns written in flow files.
MAX_VALUE_PATTERN = 1000


@functools.lru_cache(maxsize=32)
def _compile_value(pattern: str) -> Any:
    return compile_pattern.__wrapped__(pattern)


def fullmatch_value(pattern: str, text: str) -> bool:
    """:func:`fullmatch` for a pattern that is not written in the flow file."""
    if len(pattern) > MAX_VALUE_PATTERN:
        raise PatternError(f"a pattern computed at run time may have at most {MAX_VALUE_PATTERN} characters, "
                           f"this one has {len(pattern)}")
    return _compile_value(pattern).fullmatch(text) is not None
