"""Services for crash tests: ``orders.create`` logs every call (pid and idempotency key) to
``$FK_CALL_LOG`` and, in a process started with ``FK_SLOW_SERVICE=1``, takes long enough
to be killed in the middle (it blocks until its process dies; its timeout ends it)."""

from __future__ import annotations

import hashlib
import os
import threading

from flowkit.runtime import ServiceRegistry

services = ServiceRegistry()
_forever = threading.Event()


@services.register("orders.create")
def create_order(size: str, qty: int, drink: bool, address: str, idempotency_key: str) -> str:
    with open(os.environ["FK_CALL_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {idempotency_key}\n")
    if os.environ.get("FK_SLOW_SERVICE") == "1":
        _forever.wait(60)  # killed before this returns
    return "ORD-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:8].upper()
