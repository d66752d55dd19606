"""The webhook runner: a Starlette app for the WhatsApp Cloud API.

- ``GET /webhook``: the subscription handshake (hub.mode, hub.verify_token, hub.challenge).
- ``POST /webhook``: signed deliveries. A request that is too big (413), unsigned or
  wrongly signed (401/403), not JSON or not a WhatsApp delivery at all (400) is rejected
  before anything is stored. Inside a delivery, a malformed message or status is logged
  with its reason and skipped, the rest is processed (200); updates that are not answers
  (reactions, edits, revokes, system messages, unsupported types, statuses) and messages
  to other phone number ids never reach a session (docs/whatsapp.md). If
  Redis is down the answer is 503 so WhatsApp redelivers; messages already applied from
  that delivery are deduplicated on redelivery, so nothing is lost or applied twice.
  Out of memory, read-only or MISCONF Redis is "down" too (:mod:`flowkit.readiness`).
- ``GET /healthz`` (process up), ``GET /readyz`` (Redis takes writes), ``GET /metrics``
  (never waits on Redis: its series are read in a thread with a deadline).
- With ``startup`` (e.g. Redis unreachable when the process starts) the app serves at
  once, answers 503 until ``startup`` succeeded, and retries it in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Literal

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flowkit.channels.whatsapp import (
    InboundMessage,
    parse_webhook_body,
    verify_signature,
    verify_subscription,
)
from flowkit.channels.whatsapp.numbers import Numbers, numbers_from_env
from flowkit.channels.whatsapp.transcript import non_answer_commands
from flowkit.channels.whatsapp.webhook import WebhookBatch
from flowkit.engine import Command, State, UserMessage
from flowkit.errors import StoreUnavailable, WebhookError
from flowkit.log import error_fields, get_logger
from flowkit.readiness import is_unavailable, write_probe
from flowkit.runtime import agent_outbox
from flowkit.web_agent import agent_routes

if TYPE_CHECKING:
    from flowkit.runtime.async_runtime import AsyncRuntime
    from flowkit.runtime.registry import FlowRegistry
    from flowkit.types import AsyncStoreProtocol, WebMetrics

log = get_logger("flowkit.web")

DEFAULT_MAX_BODY = 1024 * 1024  # WhatsApp deliveries are a few KB; 1 MiB is generous
#: bodies above this are parsed in a worker thread: a hostile 1 MiB body takes ~0.25 s of
#: CPU to parse, which would stall every other request on the loop
PARSE_INLINE_MAX = 64 * 1024


def to_event(m: InboundMessage) -> UserMessage:
    """A parsed WhatsApp message as an engine event."""
    profile = {"name": m.profile_name, "wa_id": m.wa_id} if m.profile_name else {"wa_id": m.wa_id}
    kind: str = m.kind
    if kind == "button":  # a template's quick-reply button answers like a button reply
        kind = "button_reply"
    location = None
    if m.location is not None:
        location = {k: getattr(m.location, k) for k in ("latitude", "longitude", "name", "address") if getattr(m.location, k, None) is not None}
    media = None
    if m.media is not None:
        media = {"id": m.media.id, "kind": m.raw_type, "mime_type": getattr(m.media, "mime_type", None)}
        for extra in ("caption", "filename", "sha256"):
            if getattr(m.media, extra, None):
                media[extra] = getattr(m.media, extra)
    if kind == "request_welcome":  # the user opened the chat: greet, never answer a question
        kind = "welcome"
    text = m.text if m.text is not None else m.reply_title
    return UserMessage(text=text, type=kind, reply_id=m.reply_id, location=location, media=media,  # type: ignore[arg-type]  # (kind is one of the parser's kinds, which are UserMessage types)
                   message_id=m.message_id, profile=profile)


_NUMBER_CHANGES = frozenset({"customer_changed_number", "user_changed_number"})


def phone_number_ids_from_env(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """``WHATSAPP_PHONE_NUMBER_ID`` as a set: one id or several, comma-separated (empty: any)."""
    raw = (os.environ if environ is None else environ).get("WHATSAPP_PHONE_NUMBER_ID", "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


async def _number_changed(runtime: AsyncRuntime, m: InboundMessage, sid: str | None = None) -> None:
    """The user moved to another number (or, without a phone number, another business-scoped
    id): end the session on the old one, silently.

    Its history keeps why (``number_changed``); no reply, timeout or expiry notice can go
    to the old number afterwards. The user's next message comes from the new number (and
    a new business-scoped id) and starts afresh (docs/whatsapp.md).
    """
    sid = sid or m.wa_id
    raw = await runtime.store.load(sid)
    live = raw is not None and not State.from_dict(raw).terminal
    log.info("user changed number", extra={"session_id": sid, "message_id": m.message_id,
                                           "new_wa_id": m.system.new_wa_id if m.system else None,
                                           "ended_session": live})
    if live:
        await runtime.handle(sid, Command(name="fail", args={"reason": "number_changed"}, message_id=m.message_id),
                             wait_services=False)


async def _scheduler(runtime: AsyncRuntime, interval: float) -> None:
    """Fire due timeouts and flush metrics forever; a Redis outage only delays them."""
    while True:
        try:
            await runtime.fire_due_timeouts()
            flush = getattr(runtime.metrics, "flush", None)
            if flush is not None:  # counts of a quiet last second reach Redis too
                await asyncio.to_thread(flush)
        except (StoreUnavailable, RedisError, OSError) as exc:
            log.warning("timeouts not fired: Redis is unavailable", extra=error_fields(exc))
        await asyncio.sleep(interval)


async def _flush_metrics(flush: Callable[[], object], interval: float) -> None:
    """Write the Redis counters (``flush``: the sink's) from a worker thread: counting in the loop never does I/O."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(flush)
        except Exception as exc:  # noqa: BLE001 - counts stay pending for the next flush
            log.warning("metrics not flushed: Redis is unavailable", extra={"error": str(exc)})


async def _refresh_flows(registry: FlowRegistry, interval: float, store: AsyncStoreProtocol | None = None) -> None:
    """Pick up newly deployed flow versions from a worker thread (FlowRegistry's own refresh
    is a blocking Redis read inside a lookup, which would stall the loop on a slow Redis)."""
    while True:
        await asyncio.sleep(interval)
        if registry.client is None:
            continue  # not attached to Redis yet (see create_app's startup)
        try:
            if store is not None and hasattr(store, "flow_latest_versions"):
                from flowkit.runtime.resolve import refresh_async  # async store: no thread, no sync client
                await refresh_async(registry, store)
            else:
                await asyncio.to_thread(registry.refresh)
        except Exception as exc:  # noqa: BLE001 - the versions known so far keep serving
            log.warning("flow versions not refreshed", extra={"error": str(exc)})


class _Startup:
    """Retries the app's start-up work (``startup``) until it succeeds; the app is not ready before."""

    def __init__(self, work: Callable[[], Awaitable[None]] | None, retry: float) -> None:
        self.work = work
        self.retry = retry
        self.done = asyncio.Event()
        self.error = "starting"
        if work is None:
            self.done.set()

    async def run(self) -> None:
        assert self.work is not None
        while True:
            try:
                await self.work()
            except Exception as exc:  # noqa: BLE001 - logged and retried: the process must stay up
                self.error = str(exc)
                log.error("not ready: start-up failed, retrying", extra={"error": self.error, "retry_s": self.retry})
                await asyncio.sleep(self.retry)
                continue
            self.done.set()
            log.warning("ready: start-up done")
            return


def create_app(runtime: AsyncRuntime, *, verify_token: str | None = None, app_secret: str | None = None,
               max_body: int = DEFAULT_MAX_BODY, metrics: WebMetrics | None = None,
               scheduler_interval: float | None = None, phone_number_ids: Iterable[str] | None = None,
               startup: Callable[[], Awaitable[None]] | None = None, startup_retry: float = 1.0,
               metrics_flush_interval: float = 1.0, numbers: Numbers | None = None) -> Starlette:
    """The webhook app around an :class:`~flowkit.runtime.AsyncRuntime`.

    Secrets default to ``WHATSAPP_VERIFY_TOKEN`` and ``WHATSAPP_APP_SECRET``; the phone
    number ids whose messages are this deployment's to ``WHATSAPP_PHONE_NUMBER_ID`` (one
    or several, comma-separated; none: every number). With
    ``scheduler_interval`` the app also fires due timeouts every that many seconds (else
    run ``flowkit worker``); on shutdown it waits for service calls still running.
    ``startup`` is awaited (and retried every ``startup_retry`` s while it fails) before
    the app is ready; until then ``/readyz`` and ``/webhook`` answer 503.
    ``numbers`` (default: the runtime's, else ``phone_number_ids`` in order, the first being
    the primary, else ``FLOWKIT_NUMBERS`` or ``WHATSAPP_PHONE_NUMBER_ID``) also says which
    flows each number runs and keys the sessions of each number apart
    (flowkit/channels/whatsapp/numbers.py).
    """
    verify_token = verify_token if verify_token is not None else os.environ.get("WHATSAPP_VERIFY_TOKEN", "")
    app_secret = app_secret if app_secret is not None else os.environ.get("WHATSAPP_APP_SECRET", "")
    if not app_secret:
        raise ValueError("WHATSAPP_APP_SECRET is not set; the webhook cannot check signatures without it")

    if numbers is None:
        numbers = runtime.numbers or (
            Numbers.from_ids(phone_number_ids) if phone_number_ids is not None else numbers_from_env())
    if runtime.numbers is None:
        runtime.numbers = numbers  # routing (each number's flows) and pacing follow the same numbers

    if metrics is not None and getattr(runtime, "metrics", None) is None:
        runtime.metrics = metrics
    target = agent_outbox.Target.from_env()  # a URL without its signing secret stops here
    forwarder = agent_outbox.Forwarder(runtime.store.client, target, metrics=metrics) if target is not None else None
    hooks = _Webhook(runtime, verify_token=verify_token, app_secret=app_secret, max_body=max_body, metrics=metrics,
                     numbers=numbers, startup=startup)
    background = _Background(runtime, hooks, metrics=metrics, scheduler_interval=scheduler_interval,
                             startup_retry=startup_retry, metrics_flush_interval=metrics_flush_interval,
                             forwarder=forwarder)
    return Starlette(lifespan=background.lifespan, routes=[
        Route("/webhook", hooks.verify, methods=["GET"]),
        Route("/webhook", hooks.receive, methods=["POST"]),
        Route("/healthz", hooks.healthz),
        Route("/readyz", hooks.readyz),
        Route("/metrics", hooks.metrics_endpoint),
        *agent_routes(runtime),  # /agent/...: only with FLOWKIT_AGENT_TOKEN (web_agent.py)
    ])


def _changes_number(m: InboundMessage) -> bool:
    """Does this system message move the user to another number (or business-scoped id)?"""
    return m.kind == "system" and m.system is not None and (
        m.system.type in _NUMBER_CHANGES
        # a new business-scoped id only orphans sessions keyed on the old one
        or (m.system.type == "user_changed_user_id" and m.wa_id == m.user_id))


_Handled = Literal["applied", "ignored", "done"]


class _Webhook:
    """The app's request handlers and what they share (one per app, made by :func:`create_app`)."""

    def __init__(self, runtime: AsyncRuntime, *, verify_token: str, app_secret: str, max_body: int,
                 metrics: WebMetrics | None, numbers: Numbers, startup: Callable[[], Awaitable[None]] | None) -> None:
        self.runtime = runtime
        self.verify_token = verify_token
        self.app_secret = app_secret
        self.max_body = max_body
        self.metrics = metrics
        self.numbers = numbers
        self.startup = startup
        self.gate: list[_Startup] = []  # made in the lifespan: an asyncio.Event belongs to the serving loop

    def not_ready(self) -> str | None:
        if self.startup is None:
            return None
        if not self.gate:
            return "starting"
        return None if self.gate[0].done.is_set() else self.gate[0].error

    def unavailable(self, detail: str) -> Response:
        if self.metrics is not None:
            self.metrics.webhook_unavailable()
        return JSONResponse({"error": "unavailable", "detail": detail}, status_code=503, headers={"Retry-After": "5"})

    def reject(self, exc: WebhookError, request: Request) -> Response:
        log.warning("webhook rejected", extra={"status": exc.status, "reason": exc.reason, "detail": str(exc),
                                               "client": request.client.host if request.client else None})
        if self.metrics is not None:
            self.metrics.webhook_rejected(exc.reason)
        return JSONResponse({"error": exc.reason, "detail": str(exc)}, status_code=exc.status)

    async def verify(self, request: Request) -> Response:
        try:
            challenge = verify_subscription(dict(request.query_params), self.verify_token)
        except WebhookError as exc:
            return self.reject(exc, request)
        return PlainTextResponse(challenge)

    async def receive(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, WebhookError):
            return self.reject(body, request)
        try:
            verify_signature(body, request.headers.get("x-hub-signature-256"), self.app_secret)
            batch = parse_webhook_body(body) if len(body) <= PARSE_INLINE_MAX else \
                await asyncio.to_thread(parse_webhook_body, body)
        except WebhookError as exc:
            return self.reject(exc, request)
        if (why := self.not_ready()) is not None:
            return self.unavailable(f"not ready: {why}")
        self._log_problems(batch)
        counted = await self._messages(batch)
        if isinstance(counted, Response):
            return counted
        applied, ignored = counted
        self._log_statuses(batch)
        try:  # statuses close the loop: matched to their session, a failure recorded on it
            for s in batch.statuses:
                await self.runtime.delivery_status(s)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.error("statuses not recorded; asking WhatsApp to redeliver", extra=error_fields(exc))
            return self.unavailable(str(exc))
        return JSONResponse({"ok": True, "messages": len(batch.messages), "applied": applied, "ignored": ignored,
                             "skipped": len(batch.skipped), "statuses": len(batch.statuses)})

    async def _body(self, request: Request) -> bytes | WebhookError:
        """The body, read up to ``max_body`` bytes (a bigger one is refused before it is all read)."""
        max_body = self.max_body
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return WebhookError(f"body of {length} bytes is over the {max_body} byte limit", 413, "too_large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return WebhookError(f"body is over the {max_body} byte limit", 413, "too_large")
        return body

    def _log_problems(self, batch: WebhookBatch) -> None:
        for item in batch.skipped:  # the rest of the delivery is processed; answering 4xx would lose it
            # the reason is in the message too: it must reach the operator without a JSON log setup
            log.warning("webhook item skipped: %s", item.reason, extra={"path": item.path, "reason": item.reason,
                                                                         "message_id": item.message_id})
            if self.metrics is not None:
                self.metrics.webhook_rejected("bad_item")
        for err in batch.errors:
            log.warning("whatsapp reported an error: %s %s", err.code, err.details or err.message or err.title,
                        extra={"code": err.code, "title": err.title, "detail": err.details or err.message})

    async def _messages(self, batch: WebhookBatch) -> tuple[int, int] | Response:
        """(applied, ignored) of the delivery's messages, or 503 when Redis cannot take them."""
        applied = ignored = 0
        m = None
        try:
            for m in batch.messages:
                handled = await self._message(m)
                applied += handled == "applied"
                ignored += handled == "ignored"
        except Exception as exc:
            if not is_unavailable(exc):  # e.g. StoreUnavailable, ConflictError, Redis OOM/READONLY/MISCONF
                raise
            log.error("webhook not processed; asking WhatsApp to redeliver",
                      extra={"session_id": m.wa_id if m else None, "message_id": m.message_id if m else None,
                             "messages": len(batch.messages), **error_fields(exc)})
            return self.unavailable(str(exc))
        return applied, ignored

    async def _message(self, m: InboundMessage) -> _Handled:
        runtime = self.runtime
        if not self.numbers.accepts(m.phone_number_id):
            log.warning("message for phone number id %s skipped: not one of WHATSAPP_PHONE_NUMBER_ID "
                        "or the numbers file", m.phone_number_id,
                        extra={"phone_number_id": m.phone_number_id, "message_id": m.message_id})
            return "ignored"
        sid = self.numbers.session_id(m.phone_number_id, m.wa_id)
        if _changes_number(m):
            await _number_changed(runtime, m, sid)
            return "done"
        if not m.is_answer:
            # reactions, edits, revokes, system messages, unsupported types: never an
            # answer, a session start or a reason to reply
            log.info("non-answer ignored", extra={"session_id": sid, "message_id": m.message_id,
                                                  "kind": m.kind, "raw_type": m.raw_type,
                                                  "errors": [e.code for e in m.errors]})
            await runtime.store.defer(non_answer_commands(runtime.store, m, runtime.clock(), sid))
            return "ignored"
        out = await runtime.handle(sid, to_event(m), wait_services=False)
        return "applied" if out.status == "applied" else "done"

    def _log_statuses(self, batch: WebhookBatch) -> None:
        if self.metrics is not None:
            for s in batch.statuses:
                self.metrics.delivery_status(s.status)
        for s in batch.statuses:
            if s.status == "failed":  # WhatsApp accepted a reply, then could not deliver it
                e = s.errors[0] if s.errors else None
                log.warning("reply delivery failed", extra={
                    "session_id": s.recipient_id, "wa_message_id": s.message_id, "graph_code": e.code if e else None,
                    "reason": " - ".join(x for x in (e.title, e.details or e.message) if x) if e else None})

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        if (why := self.not_ready()) is not None:
            return JSONResponse({"ready": False, "redis": why}, status_code=503)
        try:
            await self.runtime.store.ping()
        except StoreUnavailable as exc:
            return JSONResponse({"ready": False, "redis": str(exc)}, status_code=503)
        refused = await write_probe(self.runtime.store.client)  # PING passes on an OOM or read-only Redis
        if refused is not None:
            return JSONResponse({"ready": False, "redis": refused}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics_endpoint(self, request: Request) -> Response:
        if self.metrics is None:
            return PlainTextResponse("# metrics are not configured\n", media_type="text/plain; version=0.0.4")
        body, content_type = await self.metrics.exposition()
        return Response(body, media_type=content_type)


class _Background:
    """The app's lifespan: start-up retries, flow refresh, metrics flush, the scheduler and the
    agent forwarder run beside the requests; on shutdown they stop and the runtime drains."""

    def __init__(self, runtime: AsyncRuntime, hooks: _Webhook, *, metrics: WebMetrics | None,
                 scheduler_interval: float | None, startup_retry: float, metrics_flush_interval: float,
                 forwarder: agent_outbox.Forwarder | None) -> None:
        self.runtime = runtime
        self.hooks = hooks
        self.metrics = metrics
        self.scheduler_interval = scheduler_interval
        self.startup_retry = startup_retry
        self.metrics_flush_interval = metrics_flush_interval
        self.forwarder = forwarder

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        hooks = self.hooks
        hooks.gate[:] = [_Startup(hooks.startup, self.startup_retry)]
        # A request that allocates many objects (a hostile 1 MiB delivery: ~75k) triggers a
        # full collection, which walks every object of the process with the loop stopped:
        # ~0.5 s for a big process. Objects alive after start-up (modules, flows, clients)
        # are frozen out of it, so a full collection walks only what requests allocated.
        gc.collect()
        gc.freeze()
        background = self._start()
        task = asyncio.create_task(_scheduler(self.runtime, self.scheduler_interval)) \
            if self.scheduler_interval else None
        try:
            yield
        finally:
            for t in [*background, *([task] if task is not None else [])]:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self.runtime.drain(self.runtime.drain_timeout)
            if self.forwarder is not None:
                await self.forwarder.close()

    def _start(self) -> list[asyncio.Task[None]]:
        background = []
        if self.hooks.startup is not None:
            background.append(asyncio.create_task(self.hooks.gate[0].run()))
        registry = getattr(self.runtime, "registry", None)
        if registry is not None and hasattr(registry, "refresh_every"):
            interval, registry.refresh_every = registry.refresh_every, float("inf")
            background.append(asyncio.create_task(_refresh_flows(registry, interval,
                                                                 getattr(self.runtime, "store", None))))
        if (flush := getattr(self.metrics, "flush", None)) is not None:
            background.append(asyncio.create_task(_flush_metrics(flush, self.metrics_flush_interval)))
        if self.forwarder is not None:  # hand-off events to FLOWKIT_AGENT_WEBHOOK (runtime/agent_outbox.py)
            background.append(asyncio.create_task(self.forwarder.run()))
        return background
