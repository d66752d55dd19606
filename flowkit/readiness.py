"""Is Redis able to take the webhook's writes? The answers behind ``/readyz`` and the 503s.

A PING is not enough: a Redis out of memory (``maxmemory`` with ``noeviction``), a
read-only replica after a failover, or one that cannot persist (``MISCONF``) answers PING
but refuses every commit. A load balancer that keeps sending traffic there only collects
503s, so readiness writes a small expiring key, which all three refuse.
"""

from __future__ import annotations

import os
import re
from typing import Any

from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

from flowkit.errors import ConflictError, CorruptStateError, StoreError, StoreUnavailable
from flowkit.store.driver import UNAVAILABLE

#: error replies of a Redis that is up but not serving writes now (retrying later helps)
REFUSING = ("OOM", "READONLY", "MISCONF", "LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN")
_REFUSING = re.compile(r"\b(" + "|".join(REFUSING) + r")\b")
PROBE_KEY = "fk:readyz"
# redis-py turns these codes into classes and strips the code from the message
_BY_CLASS = ((OutOfMemoryError, "OOM"), (ReadOnlyError, "READONLY"), (BusyLoadingError, "LOADING"))


def refusal(exc: BaseException) -> str | None:
    """The Redis error code if ``exc`` (or what caused it) says Redis refuses writes for now."""
    seen: BaseException | None = exc
    for _ in range(5):  # the store wraps redis-py's error; a script wraps Redis' reply
        if seen is None:
            return None
        for cls, code in _BY_CLASS:
            if isinstance(seen, cls):
                return code
        if getattr(seen, "status_code", None) in REFUSING:
            return str(seen.status_code)  # type: ignore[attr-defined]  # (an HTTPException here)
        m = _REFUSING.search(str(seen))
        if m and isinstance(seen, (ResponseError, StoreError)):
            return m.group(1)
        seen = seen.__cause__ or seen.__context__
    return None


def is_unavailable(exc: BaseException) -> bool:
    """True when the store could not serve a request now and a redelivery later will work:
    Redis down, slow, out of memory, read-only, failing over, or a commit race lost too often."""
    if isinstance(exc, CorruptStateError):
        return False
    if isinstance(exc, (StoreUnavailable, ConflictError)):
        return True
    if isinstance(exc, UNAVAILABLE) or (isinstance(exc, RedisError) and not isinstance(exc, ResponseError)):
        return True
    return refusal(exc) is not None


async def write_probe(client: Any) -> str | None:
    """None if Redis takes a write now, else why not (for ``/readyz``)."""
    try:
        await client.set(PROBE_KEY, os.getpid(), px=10_000)
    except (RedisError, OSError) as exc:
        code = refusal(exc)
        return f"Redis refuses writes ({code}): {exc}" if code else f"Redis is unavailable: {exc}"
    return None
