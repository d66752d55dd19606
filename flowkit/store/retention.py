"""How long an ended session's keys stay in Redis (``terminal_ttl_ms`` of the store).

The commands that commit (``serve``, ``worker``, ``simulate``, ``recover``, ``migrate``,
``session rollback``) take it from ``--terminal-ttl``, else ``$FLOWKIT_TERMINAL_TTL``, else
:data:`DEFAULT` (docs/decisions.md, "Retention"). ``0``, ``off`` or ``never`` keep ended
sessions until deleted. Each runtime process records the value it runs with in
:data:`SETTINGS_KEY`, so ``flowkit redis status`` shows what the deployment really does.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from flowkit.errors import ConfigError

ENV = "FLOWKIT_TERMINAL_TTL"
DEFAULT = "30d"
KEEP = ("0", "off", "never", "keep", "none")
SETTINGS_KEY = "fk:settings"  # hash: terminal_ttl_ms ("0": kept), terminal_ttl_by (which process said so)


def parse_ttl(text: str, source: str = "--terminal-ttl") -> int | None:
    """``"30d"`` -> 2592000000 ms; ``"off"`` (or 0, never, keep) -> None."""
    from flowkit.flow.model import parse_duration

    value = text.strip().lower()
    if value in KEEP:
        return None
    try:
        return int(parse_duration(value) * 1000)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}; or 'off' to keep ended sessions until deleted") from None


def terminal_ttl_ms(option: str | None = None) -> int | None:
    """The retention of ended sessions: ``option`` if given, else ``$FLOWKIT_TERMINAL_TTL``, else 30 days."""
    if option is not None:
        return parse_ttl(option)
    env = os.environ.get(ENV, "").strip()
    return parse_ttl(env, ENV) if env else parse_ttl(DEFAULT)


def describe(ttl_ms: int | None) -> str:
    from flowkit.flow.model import format_duration

    return "off (kept until deleted)" if ttl_ms is None else format_duration(ttl_ms / 1000)


def record(client: Any, ttl_ms: int | None, command: str) -> None:
    """Note in Redis the retention this runtime process commits with (last started wins)."""
    by = f"flowkit {command} (pid {os.getpid()} on {socket.gethostname()}, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})"
    client.hset(SETTINGS_KEY, mapping={"terminal_ttl_ms": ttl_ms or 0, "terminal_ttl_by": by})


def status(client: Any) -> dict[str, Any]:
    """What ``flowkit redis status`` shows: the retention recorded by the last runtime process
    started, else this environment's setting (``$FLOWKIT_TERMINAL_TTL`` or the default)."""
    got = client.hgetall(SETTINGS_KEY)
    got = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in got.items()}
    if "terminal_ttl_ms" in got:
        ms = int(got["terminal_ttl_ms"]) or None
        return {"terminal_ttl": describe(ms), "terminal_ttl_ms": ms, "terminal_ttl_source": got.get("terminal_ttl_by", "")}
    ms = terminal_ttl_ms()
    source = ENV if os.environ.get(ENV, "").strip() else "default (no runtime process has recorded one yet)"
    return {"terminal_ttl": describe(ms), "terminal_ttl_ms": ms, "terminal_ttl_source": source}
