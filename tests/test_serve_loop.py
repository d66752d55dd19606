"""`flowkit serve` runs on uvloop (a dependency; docs/scaling.md) with h11 as its parser
(its limits are built on h11: flowkit/webserver.py)."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from flowkit.webserver import ServerLimits, uvicorn_config


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
    raise AssertionError("not served")


def test_serve_config_picks_uvloop_and_keeps_h11() -> None:
    config = uvicorn_config(_app, "127.0.0.1", 0, ServerLimits())
    assert config.get_loop_factory() is not None
    assert config.get_loop_factory().__module__.split(".")[0] == "uvloop"  # type: ignore[union-attr]
    assert isinstance(config.http, type) and issubclass(config.http, H11Protocol)
