"""Business-initiated conversations: start a flow for a user who did not write first.

WhatsApp delivers a free-form message only inside the user's 24-hour customer-service
window; outside it the first message must be an approved template. So a start:

1. claims its idempotency key (``fk:start:<key>``, kept :data:`KEY_TTL_MS`): a key that
   started once never starts again (the answer is ``skipped``);
2. is refused (:class:`~flowkit.errors.TemplateRequired`, HTTP 409, CLI exit 2) outside
   the window without a template, and refused (:class:`AlreadyLive`) while the user is in
   a live session; a refused start releases its key, so it can be retried;
3. commits a ``Start`` (actor ``agent``) with the slots as arguments. With a template, the
   template is the opening message in place of what the flow says before its first wait
   (engine: ``Start.template``), so the flow should begin by waiting for the answer to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flowkit.engine import Start, State
from flowkit.errors import AlreadyLive, FlowNotOnNumber, HandoffError, TemplateRequired
from flowkit.runtime.sender import outside_window

if TYPE_CHECKING:
    from flowkit.engine import Event
    from flowkit.runtime.handler import Outcome
    from flowkit.runtime.registry import FlowRegistry
    from flowkit.types import AsyncStoreProtocol, StoreProtocol

KEY_TTL_MS = 30 * 86_400_000
ACTOR = "agent"
TEMPLATE_NEEDED = ("outside the user's 24-hour window WhatsApp only delivers an approved template: "
                   "a template is needed to start this conversation (give --template NAME --lang CODE, "
                   "or \"template\": {\"name\": ..., \"language\": ...})")


class _Runtime(Protocol):
    """What a start needs of a runtime (both :class:`~flowkit.runtime.Runtime` and the async one)."""

    registry: FlowRegistry

    def clock(self) -> int: ...

    def window_ms(self) -> int | None: ...

    def allowed_flows(self, sid: str | None) -> frozenset[str] | None: ...


class _SyncRuntime(_Runtime, Protocol):
    @property
    def store(self) -> StoreProtocol: ...

    def handle(self, session_id: str, event: Event) -> Outcome: ...


class _AsyncRuntime(_Runtime, Protocol):
    @property
    def store(self) -> AsyncStoreProtocol: ...

    async def handle(self, session_id: str, event: Event, *, wait_services: bool = True) -> Outcome: ...


def key_name(key: str) -> str:
    return f"fk:start:{key}"


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    language: str
    params: tuple[tuple[str, str], ...] = ()

    def as_reply(self) -> tuple[str, str, tuple[str, ...]]:
        """(name, language, body params in order): numbered keys by number, named ones as given."""
        ordered = sorted(self.params, key=lambda kv: int(kv[0])) if all(k.isdigit() for k, _ in self.params) \
            else list(self.params)
        return self.name, self.language, tuple(v for _, v in ordered)


@dataclass(frozen=True)
class StartRequest:
    """One start: ``session_id`` is the user's WhatsApp id."""

    session_id: str
    flow: str
    template: TemplateSpec | None = None
    slots: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None

    @classmethod
    def from_json(cls, sid: str, body: Mapping[str, Any]) -> StartRequest:
        """From the HTTP body ``{"flow", "template": {"name", "language", "params"}, "slots", "key"}``."""
        flow = body.get("flow")
        if not isinstance(flow, str) or not flow:
            raise HandoffError("'flow' must name the flow to start")
        slots = body.get("slots") or {}
        if not isinstance(slots, dict):
            raise HandoffError("'slots' must be a JSON object of slot values")
        key = body.get("key")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
            raise HandoffError("'key' must be text of 1 to 200 characters")
        raw = body.get("template")
        template = None
        if raw is not None:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
                raise HandoffError("'template' must be {\"name\": ..., \"language\": ..., \"params\": {...}}")
            lang = raw.get("language", "en_US")
            params = raw.get("params") or {}
            if not isinstance(lang, str) or not isinstance(params, dict) or not all(
                    isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in params.values()):
                raise HandoffError("'template.language' must be text and 'template.params' an object of texts")
            template = TemplateSpec(raw["name"], lang, tuple((str(k), str(v)) for k, v in params.items()))
        return cls(sid, flow, template, slots, key)


@dataclass(frozen=True)
class StartResult:
    session_id: str
    status: Literal["started", "skipped"]
    flow: str
    version: int | None = None
    template: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _event(req: StartRequest) -> Start:
    return Start(flow=req.flow, args=dict(req.slots), actor=ACTOR,
                 template=req.template.as_reply() if req.template is not None else None,
                 message_id=f"start:{req.key}" if req.key else None)


def _check(rt: _Runtime, req: StartRequest, raw: Mapping[str, Any] | None, closed: bool) -> None:
    """Refuse a start of a flow the session's number does not run, into a live session, or
    outside the window without a template (the flow was looked up first: UnknownFlowError
    names the flows there are)."""
    allowed = rt.allowed_flows(req.session_id)  # several numbers: the one the session writes from
    if allowed is not None and req.flow not in allowed:
        raise FlowNotOnNumber(f"{req.session_id}: its number does not run flow {req.flow!r} (it runs: "
                              f"{', '.join(sorted(allowed))}); start it from a number that does (flowkit start "
                              "--from, or the session id <user>@<phone_number_id>), or add the flow to the "
                              "number in the numbers file")
    if raw is not None and not State.from_dict(raw).terminal:
        raise AlreadyLive(f"{req.session_id} is in a live session of flow {raw.get('flow')!r} ({raw.get('status')}); "
                          "wait until it ends, or cancel or release it first")
    if closed and req.template is None:
        raise TemplateRequired(f"{req.session_id}: {TEMPLATE_NEEDED}")


def _closed(rt: _Runtime, last: int | None) -> bool:
    window = rt.window_ms()
    return window is not None and window > 0 and outside_window(last, rt.clock(), window)


def _skipped(req: StartRequest, previous: str | bytes | None) -> StartResult:
    detail = f"key {req.key!r} already started this conversation"
    try:
        got = json.loads(previous) if previous else {}
        if isinstance(got, dict) and got.get("version") is not None:
            detail += f" (session version {got['version']})"
    except ValueError:
        pass
    return StartResult(req.session_id, "skipped", req.flow, detail=detail)


def start_sync(rt: _SyncRuntime, req: StartRequest) -> StartResult:
    """Start ``req`` on a blocking :class:`~flowkit.runtime.Runtime`."""
    client = rt.store.client
    if req.key is not None and not client.set(key_name(req.key), "{}", nx=True, px=KEY_TTL_MS):
        return _skipped(req, client.get(key_name(req.key)))
    try:
        rt.registry.latest(req.flow)
        _check(rt, req, rt.store.load(req.session_id), _closed(rt, rt.store.last_inbound(req.session_id)))
        out = rt.handle(req.session_id, _event(req))
    except BaseException:
        if req.key is not None:
            client.delete(key_name(req.key))
        raise
    if req.key is not None:
        client.set(key_name(req.key), json.dumps({"version": out.version}), px=KEY_TTL_MS)
    return StartResult(req.session_id, "started", req.flow, out.version, req.template.name if req.template else None)


async def start_async(rt: _AsyncRuntime, req: StartRequest) -> StartResult:
    """Start ``req`` on :class:`~flowkit.runtime.AsyncRuntime`."""
    client = rt.store.client
    if req.key is not None and not await client.set(key_name(req.key), "{}", nx=True, px=KEY_TTL_MS):
        return _skipped(req, await client.get(key_name(req.key)))
    try:
        await rt.registry.get_async(req.flow, None, rt.store)  # never the registry's blocking client
        _check(rt, req, await rt.store.load(req.session_id), _closed(rt, await rt.store.last_inbound(req.session_id)))
        out = await rt.handle(req.session_id, _event(req), wait_services=False)
    except BaseException:
        if req.key is not None:
            await client.delete(key_name(req.key))
        raise
    if req.key is not None:
        await client.set(key_name(req.key), json.dumps({"version": out.version}), px=KEY_TTL_MS)
    return StartResult(req.session_id, "started", req.flow, out.version, req.template.name if req.template else None)


__all__ = ["StartRequest", "StartResult", "TemplateSpec", "start_async", "start_sync"]
