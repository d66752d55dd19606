"""Services used by the example flows: small, deterministic stand-ins for real systems.

Run with ``flowkit serve --services examples.services:services`` (or pass ``services``
to a Runtime). Each takes the call's ``idempotency_key`` so a retried or recovered call
returns the same result instead of doing the work twice.
"""

from __future__ import annotations

import hashlib
import threading

from flowkit.runtime import ServiceRegistry

services = ServiceRegistry()
_done: dict[str, object] = {}
_lock = threading.Lock()


def _once(key: str, make: object) -> object:
    # An idempotency key seen before returns the first answer: the call is not repeated.
    with _lock:
        if key not in _done:
            _done[key] = make() if callable(make) else make
        return _done[key]


def _ref(prefix: str, key: str) -> str:
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:8].upper()


@services.register("orders.create")
def create_order(size: str, qty: int, drink: bool, address: str, idempotency_key: str) -> str:
    return str(_once(idempotency_key, lambda: _ref("ORD-", idempotency_key)))


@services.register("calendar.reserve")
def reserve(service: str, day: str, time: str, email: str, idempotency_key: str) -> str:
    # One slot in four is taken (it depends on the day and the hour), so the "slot taken"
    # branch is exercised and picking another time on the same day can still succeed.
    if (int(day[-2:]) + int(time[:2])) % 4 == 0:
        raise RuntimeError(f"no free {time} slot on {day}")
    return str(_once(idempotency_key, lambda: _ref("BK-", idempotency_key)))


@services.register("tickets.open")
def open_ticket(topic: str, order: str | None, urgency: int, details: str, idempotency_key: str) -> str:
    return str(_once(idempotency_key, lambda: _ref("T-", idempotency_key)))


@services.register("payments.lookup")
def lookup(order: str, idempotency_key: str) -> dict[str, object]:
    if order.upper().startswith("X"):
        raise LookupError(f"no payment for order {order}")
    cents = int(hashlib.sha256(order.encode()).hexdigest()[:6], 16) % 20000 + 500
    return {"order": order, "amount": cents / 100, "currency": "EUR"}


@services.register("payments.refund")
def refund(order: str, amount: float, attempt: int, idempotency_key: str) -> str:
    return str(_once(idempotency_key, lambda: _ref("RF-", idempotency_key)))
