"""The Lua scripts, read once from the package and addressed by SHA1.

Nothing is loaded up front: the store sends EVALSHA and, if the server answers NOSCRIPT
(first use, a restart, a new cluster node, SCRIPT FLUSH), sends the source once with EVAL,
which also caches it. The sources are sent as they are in the package: values shared with
Python (the terminal statuses) travel as ARGV (flowkit/store/contract.py), never by string
replacement into the source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


def _load(name: str) -> Script:
    text = resources.files("flowkit.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, text, hashlib.sha1(text.encode()).hexdigest())


COMMIT = _load("commit")
RECOVER = _load("recover")
QUARANTINE = _load("quarantine")
TIMEOUT = _load("timeout")
DUMP = _load("dump")
RESTORE = _load("restore")
NOOP = _load("noop")
MIGRATE = _load("migrate")
REPACK = _load("repack")
REHIST = _load("rehist")
