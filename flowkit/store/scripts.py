"""The Lua scripts, read once from the package and addressed by SHA1.

Nothing is loaded up front: the store sends EVALSHA and, if the server answers NOSCRIPT
(first use, a restart, a new cluster node, SCRIPT FLUSH), sends the source once with EVAL,
which also caches it. Constants shared with Python (the stream entry fields, the terminal
statuses) are filled into the sources from :mod:`flowkit.store.codec`, so they exist once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from flowkit.store.codec import DELTA_INDEX, ENTRY_FIELDS, TERMINAL_STATUSES


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


#: commit.lua's ARGV index of the first history entry value (ENTRY_FIELDS order from there)
ENTRY_ARG0 = 25


def _entry_args() -> str:
    """commit.lua's XADD field/value list: 'event', ARGV[25], ..., 'delta', delta, ..."""
    return ", ".join(f"'{name}', " + ("delta" if i == DELTA_INDEX else f"ARGV[{ENTRY_ARG0 + i}]")
                     for i, name in enumerate(ENTRY_FIELDS))


def _load(name: str) -> Script:
    text = resources.files("flowkit.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")
    text = (text.replace("--[[ENTRY_ARGS]]", _entry_args())
                .replace("--[[DELTA_ARG]]", str(ENTRY_ARG0 + DELTA_INDEX))
                .replace("--[[TERMINAL]]", ", ".join(f"{s} = true" for s in sorted(TERMINAL_STATUSES))))
    return Script(name, text, hashlib.sha1(text.encode()).hexdigest())


COMMIT = _load("commit")
TIMEOUT = _load("timeout")
DUMP = _load("dump")
RESTORE = _load("restore")
NOOP = _load("noop")
