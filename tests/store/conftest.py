"""Helpers for the store tests: engine-free states and records, and a connection that counts
what the client sends (one ``send`` of packed commands = one network round trip)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

T0 = 1_700_000_000_000


def make_state(sid: str = "u1", version: int = 0, step: str | None = "ask_size", status: str = "waiting_input",
               slots: dict[str, Any] | None = None, flow: str = "order_pizza", **kw: Any) -> dict[str, Any]:
    state = {"session_id": sid, "flow": flow, "flow_version": "3", "step": step, "status": status,
             "slots": dict(slots or {}), "attempts": {}, "stack": [],
             "pending": None if status in ("completed", "failed", "cancelled", "handoff", "expired")
             else {"wait": "input", "step": step},
             "version": version, "started_at": T0, "updated_at": T0 + version * 1000}
    state.update(kw)
    return state


def make_record(state: dict[str, Any], from_step: str | None, *, event: str = "message", message_id: str | None = None,
                ts: int | None = None, **kw: Any) -> dict[str, Any]:
    rec = {"ts": state["updated_at"] if ts is None else ts, "event": event, "from_step": from_step,
           "to_step": state["step"], "path": [state["step"]] if state["step"] and state["step"] != from_step else [],
           "status": state["status"], "message_id": message_id,
           "input": json.dumps({"text": "hi"}) if event == "message" else None, "error": None, "actor": "runtime"}
    rec.update(kw)
    return rec


def advance(store: Any, sid: str, prev: dict[str, Any] | None, step: str, *, message_id: str | None = None,
            status: str = "waiting_input", previous: bool = True, **slots: Any) -> dict[str, Any]:
    """Commit the next version of ``sid`` (asserting it applies) and return the new state."""
    version = prev["version"] if prev else 0
    new = make_state(sid, version + 1, step, status, {**(prev["slots"] if prev else {}), **slots})
    new["started_at"] = prev["started_at"] if prev else new["started_at"]
    rec = make_record(new, prev["step"] if prev else None, event="message" if prev else "start", message_id=message_id)
    res = store.commit(sid, version, new, rec, previous=prev if previous else None, message_id=message_id,
                       timeout_at_ms=None if status in ("completed", "expired") else new["updated_at"] + 60_000)
    assert res.outcome == "ok", res
    return new


class CountingConnection(redis.Connection):
    """Counts packed sends: a pipeline is one send, a single command is one send."""

    sends = 0
    commands: list[str] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        data = b"".join(command) if isinstance(command, list) else command
        type(self).commands += command_names(data if isinstance(data, bytes) else data.encode())
        super().send_packed_command(command, check_health)


def command_names(data: bytes) -> list[str]:
    """The command names in a buffer of RESP-encoded commands (what went over the wire)."""
    names, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        argc = int(data[pos + 1:end])
        pos = end + 2
        for i in range(argc):
            end = data.index(b"\r\n", pos)
            size = int(data[pos + 1:end])
            if i == 0:
                names.append(data[end + 2:end + 2 + size].decode().upper())
            pos = end + 2 + size + 2
    return names


@pytest.fixture
def counting_client(redis_server: Any, redis_client: Any) -> Any:
    CountingConnection.sends = 0
    CountingConnection.commands = []
    pool = redis.ConnectionPool(host=redis_server.host, port=redis_server.port, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    yield client
    client.close()
