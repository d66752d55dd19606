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
