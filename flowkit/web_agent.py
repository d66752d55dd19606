"""The agent endpoints of the webhook app (hand-off to a person and business-initiated starts).

Mounted only when ``FLOWKIT_AGENT_TOKEN`` is set (else every ``/agent/...`` path is 404).
Every request needs ``Authorization: Bearer <token>``, compared in constant time (401
without it or with a wrong one). A session id is the user's WhatsApp id.

- ``GET /agent/sessions``: the sessions waiting for a person, longest wait first.
- ``POST /agent/sessions/{sid}/reply`` ``{"text": ..., "agent": ...}``: send as an agent.
- ``POST /agent/sessions/{sid}/release`` ``{"to_step": ...}`` (or ``{}``: end the session).
- ``POST /agent/sessions/{sid}/start`` ``{"flow", "template": {"name", "language", "params"},
  "slots", "key"}``: start a flow for a user (flowkit/runtime/starts.py).

Errors are JSON ``{"error": <kind>, "detail": <what to do>}``: 400 a bad body, 404 no such
session or flow, 409 the session is in the wrong state (not in hand-off; a start outside
the 24-hour window without a template), 503 Redis is unavailable.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowkit.errors import (
    AgentRequestError,
    AlreadyLive,
    FlowkitError,
    NotHeldError,
    SessionNotFound,
    TemplateRequired,
    UnknownFlowError,
)
from flowkit.log import get_logger
from flowkit.readiness import is_unavailable
from flowkit.runtime import starts

if TYPE_CHECKING:
    from flowkit.runtime.async_runtime import AsyncRuntime

log = get_logger("flowkit.agent")

ENV_TOKEN = "FLOWKIT_AGENT_TOKEN"  # noqa: S105 - the variable's name
MAX_BODY = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def _error(kind: str, detail: str, status: int) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status)


def _status_of(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, SessionNotFound):
        return "not_found", 404
    if isinstance(exc, UnknownFlowError):
        return "unknown_flow", 404
    if isinstance(exc, (NotHeldError, TemplateRequired, AlreadyLive)):
        return "conflict", 409
    return "bad_request", 400


def agent_routes(runtime: AsyncRuntime, token: str | None = None) -> list[Route]:
    """The routes, or none when no token is configured (``token`` defaults to the env)."""
    token = token if token is not None else os.environ.get(ENV_TOKEN, "")
    if not token:
        return []
    expected = f"Bearer {token}".encode()
    api = _AgentAPI(runtime)
    return [
        Route("/agent/sessions", _guarded(api.sessions, expected), methods=["GET"]),
        Route("/agent/sessions/{sid}/reply", _guarded(api.reply, expected), methods=["POST"]),
        Route("/agent/sessions/{sid}/release", _guarded(api.release, expected), methods=["POST"]),
        Route("/agent/sessions/{sid}/start", _guarded(api.start, expected), methods=["POST"]),
    ]


def _unavailable(exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "unavailable", "detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def _guarded(fn: Handler, expected: bytes) -> Handler:
    """``fn`` behind the bearer token (constant-time compare), its errors as JSON answers."""
    async def run(request: Request) -> Response:
        got = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(got, expected):
            return JSONResponse({"error": "unauthorized", "detail": "send Authorization: Bearer <FLOWKIT_AGENT_TOKEN>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            return await fn(request)
        except FlowkitError as exc:
            if is_unavailable(exc):
                return _unavailable(exc)
            kind, status = _status_of(exc)
            return _error(kind, str(exc), status)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            return _unavailable(exc)
    return run


async def _body_of(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise AgentRequestError(f"the body is over {MAX_BODY} bytes")
    try:
        got = json.loads(raw or b"{}")
    except ValueError:
        raise AgentRequestError("the body is not JSON; send a JSON object") from None
    if not isinstance(got, dict):
        raise AgentRequestError("the body must be a JSON object")
    return got


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise AgentRequestError(f"{key!r} must be text")
    return value


class _AgentAPI:
    """The endpoints' handlers, on one runtime (the token is checked before any runs)."""

    def __init__(self, runtime: AsyncRuntime) -> None:
        self.runtime = runtime

    async def sessions(self, request: Request) -> Response:
        now = self.runtime.clock()
        return JSONResponse([w.to_dict(now) for w in await self.runtime.waiting()])

    async def reply(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        body = await _body_of(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise AgentRequestError("'text' must be non-empty text")
        out = await self.runtime.agent_reply(sid, text, agent=_optional_text(body, "agent"))
        log.info("agent replied", extra={"session_id": sid, "agent": body.get("agent"), "version": out.version})
        return JSONResponse({"ok": True, "session_id": sid, "version": out.version})

    async def release(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        body = await _body_of(request)
        to_step = _optional_text(body, "to_step")
        out = await self.runtime.release(sid, to_step)
        state = await self.runtime.store.load(sid)
        log.info("session released", extra={"session_id": sid, "to_step": to_step, "version": out.version})
        return JSONResponse({"ok": True, "session_id": sid, "version": out.version,
                             "status": (state or {}).get("status"), "step": (state or {}).get("step")})

    async def start(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        req = starts.StartRequest.from_json(sid, await _body_of(request))
        result = await starts.start_async(self.runtime, req)
        return JSONResponse(result.to_dict())


__all__ = ["ENV_TOKEN", "agent_routes"]
