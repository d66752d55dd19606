"""``flowkit serve``, ``worker``, ``recover`` and ``migrate``: the commands that run flows
(``simulate``, ``check`` and ``test`` are in :mod:`flowkit.cli.sim_cmds`)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flowkit.cli.flows import FormatOption, OutputFormat, step_map
from flowkit.cli.numbers_opt import NumbersOption, numbers_option, sending_number
from flowkit.errors import FlowError, FlowkitError

if TYPE_CHECKING:
    from flowkit.runtime import AsyncRuntime
    from flowkit.types import RedisClient

FlowsArg = Annotated[list[Path] | None, typer.Argument(help="Flow files or folders (default: $FLOWKIT_FLOWS).")]
RedisOption = Annotated[str | None, typer.Option("--redis", help="Redis URL (default: $FLOWKIT_REDIS_URL, else the embedded server).")]
ServicesOption = Annotated[str | None, typer.Option("--services", help="module:attribute of a ServiceRegistry, e.g. examples.services:services.")]
RateOption = Annotated[float, typer.Option("--rate", min=0.1, help="Messages per second this process sends at most: "
                                           "the phone number's throughput tier divided by the processes that send "
                                           "(default: $FLOWKIT_SEND_RATE, else 80).", envvar="FLOWKIT_SEND_RATE")]
NoSendOption = Annotated[bool, typer.Option("--no-send", help="Send nothing: fire timeouts and run calls, but "
                                            "leave every reply in the outbox (and skip outbox redelivery) for a "
                                            "process that sends. For operators without WhatsApp credentials here.")]


def _sync_channel(no_send: bool, numbers: Any = None) -> Any:
    """The WhatsApp channel from the environment, or one that holds every reply (``--no-send``);
    with ``numbers``, each session's replies leave from its own number."""
    from flowkit.channels.whatsapp import WhatsAppSender
    from flowkit.errors import ConfigError
    from flowkit.runtime import WhatsAppChannel
    from flowkit.runtime.channel import HeldChannel

    if no_send:
        return HeldChannel()
    try:
        if numbers is None:
            return WhatsAppChannel(WhatsAppSender())
        return WhatsAppChannel(WhatsAppSender(phone_number_id=sending_number(numbers)), numbers=numbers)
    except ConfigError as exc:
        typer.echo(f"error: {exc}. Replies of timeouts and recovered outbox entries are sent from here; "
                   "pass --no-send to only fire timeouts and leave the replies to a process that sends", err=True)
        raise typer.Exit(2) from None


TerminalTtlOption = Annotated[str | None, typer.Option(
    "--terminal-ttl", help="How long an ended session stays in Redis, e.g. 30d, 12h; off keeps it "
                           "(default: $FLOWKIT_TERMINAL_TTL, else 30d).", show_default=False)]


def _terminal_ttl(option: str | None, client: Any = None, command: str | None = None) -> int | None:
    """The retention of ended sessions (bad input: exit 2); a runtime process also records it in Redis."""
    from flowkit.errors import ConfigError
    from flowkit.store import retention

    try:
        ttl = retention.terminal_ttl_ms(option)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if client is not None and command is not None:
        retention.record(client, ttl, command)
    return ttl


def _registry(flows: list[Path] | None, client: Any = None) -> Any:
    from flowkit.flow import load_flows
    from flowkit.runtime import FlowRegistry

    paths = flows or [Path(p) for p in os.environ.get("FLOWKIT_FLOWS", "").split(os.pathsep) if p]
    if not paths:
        typer.echo("error: give flow files or folders, or set FLOWKIT_FLOWS", err=True)
        raise typer.Exit(2)
    try:
        loaded = load_flows(paths)
    except FlowError as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(2) from None
    return FlowRegistry(loaded.values(), client=client)


def _started(command: str, registry: Any, ttl: int | None, **fields: Any) -> None:
    """One INFO line when a long-running command starts: what it runs, against which Redis (no password)."""
    from flowkit.log import get_logger
    from flowkit.store.connection import settings
    from flowkit.store.retention import describe

    redis_url = fields.pop("redis", None)
    get_logger("flowkit.cli").info(f"{command} started", extra={
        "flows": {f.name: f.version_id for f in registry.flows()}, "terminal_ttl": describe(ttl),
        "redis": settings(redis_url).redacted, **fields})


def _services(spec: str | None) -> Any:
    from flowkit.runtime import ServiceRegistry

    if not spec:
        return ServiceRegistry()
    module, _, attr = spec.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m` and uvicorn: the project's own modules import
    try:
        obj = getattr(importlib.import_module(module), attr or "services")
    except (ImportError, AttributeError) as exc:
        typer.echo(f"error: cannot import services {spec!r}: {exc}", err=True)
        raise typer.Exit(2) from None
    return obj


def serve(
    flows: FlowsArg = None,
    redis: RedisOption = None,
    services: ServicesOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    default_flow: Annotated[str | None, typer.Option(help="Flow for messages that match no trigger.")] = None,
    scheduler: Annotated[float, typer.Option(help="Seconds between firing due timeouts in this process (0: leave it to `flowkit worker`).")] = 1.0,
    rate: RateOption = 80.0,
    terminal_ttl: TerminalTtlOption = None,
    request_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a whole request (headers and body) from the moment its connection opens; slower connections (slowloris) are closed, trickled bytes do not extend it (0: off).")] = 10.0,
    keep_alive: Annotated[float, typer.Option(help="Seconds an idle keep-alive connection stays open.")] = 5.0,
    limit_concurrency: Annotated[int, typer.Option(help="Open connections plus running requests beyond which requests get 503.")] = 1000,
    max_header_bytes: Annotated[int, typer.Option(help="Largest request line plus headers accepted.")] = 16 * 1024,
    shutdown_timeout: Annotated[float, typer.Option(help="Seconds SIGTERM waits for open requests before cancelling them; then service calls and replies get --drain-timeout more.")] = 15.0,
    drain_timeout: Annotated[float, typer.Option(help="Seconds the shutdown waits for service calls and queued replies; what is left stays in the outbox for recovery.")] = 10.0,
    numbers: NumbersOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the port (one per core); the first process supervises them and restarts one that dies.")] = 1,
) -> None:
    """Run the WhatsApp webhook runner (Starlette + uvicorn).

    Secrets come from the environment: WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN,
    WHATSAPP_TOKEN, WHATSAPP_PHONE_NUMBER_ID (and WHATSAPP_API_URL for a local Graph API).
    If Redis is unreachable at start the server still starts, answers 503, and becomes
    ready when Redis answers. Reverse-proxy settings: docs/operations.md.
    """
    from flowkit.log import adopt
    from flowkit.webserver import ServerLimits, run, run_workers

    settings = ServeSettings(flows=[str(f) for f in flows] if flows else None, redis=redis, services=services,
                             default_flow=default_flow, scheduler=scheduler, rate=rate, terminal_ttl=terminal_ttl,
                             drain_timeout=drain_timeout, numbers=str(numbers) if numbers else None,
                             request_timeout=request_timeout)
    # built here even with workers: every error is said once, before any worker starts
    app, registry, ttl, ours = serve_app(settings)
    _started("serve", registry, ttl, redis=redis, host=host, port=port, scheduler_s=scheduler, workers=workers,
             numbers={n.label: list(n.flows) if n.flows is not None else "all" for n in ours.numbers})
    adopt("uvicorn")  # uvicorn's own warnings (bad requests, shutdown) as flowkit's log lines too
    limits = ServerLimits(request_timeout=request_timeout, timeout_keep_alive=keep_alive,
                          limit_concurrency=limit_concurrency, max_header_bytes=max_header_bytes,
                          shutdown_timeout=shutdown_timeout)
    if workers == 1:
        run(app, host, port, limits, log_config=None)
        return
    from flowkit import log as _log

    del app  # each worker builds its own (clients and event loop belong to one process)
    os.environ.update(_log.current())
    os.environ[WORKER_SETTINGS] = json.dumps(dataclasses.asdict(settings))
    run_workers("flowkit.cli.runtime_cmds:worker_app", host, port, limits, workers, log_config=None)


#: the environment variable that carries ``serve``'s settings to its worker processes
WORKER_SETTINGS = "FLOWKIT_SERVE_WORKER"


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """What ``flowkit serve`` builds its app from, as plain values (a worker process gets them
    as JSON in ``FLOWKIT_SERVE_WORKER``; secrets stay in the environment as they were)."""

    flows: list[str] | None
    redis: str | None
    services: str | None
    default_flow: str | None
    scheduler: float
    rate: float
    terminal_ttl: str | None
    drain_timeout: float
    numbers: str | None
    request_timeout: float


def worker_app() -> Any:
    """The app of one ``serve --workers`` process (uvicorn calls it in each worker)."""
    from flowkit import log as _log
    from flowkit.webserver import FlowkitH11Protocol

    _log.configure_from_env()
    _log.adopt("uvicorn")
    settings = ServeSettings(**json.loads(os.environ[WORKER_SETTINGS]))
    FlowkitH11Protocol.request_timeout = settings.request_timeout
    return serve_app(settings)[0]


def serve_app(s: ServeSettings) -> tuple[Any, Any, int | None, Any]:
    """``serve``'s app, with the flow registry, terminal TTL and numbers it was built with."""
    from flowkit.channels.whatsapp import AsyncWhatsAppSender
    from flowkit.errors import ConfigError
    from flowkit.metrics import Metrics, RedisCollector, RedisMetrics, Tee
    from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel
    from flowkit.store import AsyncStore, Store, connect, connect_async
    from flowkit.web import create_app

    registry = _registry([Path(f) for f in s.flows] if s.flows else None)  # flows first; Redis comes next
    ours = numbers_option(Path(s.numbers) if s.numbers else None, registry.names())
    redis = s.redis
    client = connect(redis)
    startup = None
    try:
        _attach_registry(registry, client)
    except FlowkitError as exc:
        if not _redis_down(exc):
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        startup = _redis_down_at_start(registry, client, redis, exc)
    except Exception as exc:
        if not _redis_down(exc):
            raise
        startup = _redis_down_at_start(registry, client, redis, exc)
    # with Redis down at start, the retention is recorded by the next process that can reach it
    ttl = _terminal_ttl(s.terminal_ttl, client if startup is None else None, "serve")
    try:
        # one attempt per call: the background sender retries, pacing the whole number
        channel = AsyncWhatsAppChannel(AsyncWhatsAppSender(max_attempts=1, phone_number_id=sending_number(ours)),
                                       numbers=ours)
        runtime = AsyncRuntime(AsyncStore(connect_async(redis), terminal_ttl_ms=ttl), registry,
                               services=_services(s.services), channel=channel, default_flow=s.default_flow,
                               background=True, rate=s.rate)
        sync_client = connect(redis)
        prom = Metrics(remote=[RedisCollector(Store(sync_client))])  # deployment-wide totals, read off the loop
        runtime.metrics = Tee(prom, RedisMetrics(sync_client, autoflush=False))  # the app flushes from a thread
        runtime.numbers = ours
        runtime.drain_timeout = s.drain_timeout
        app = create_app(runtime, metrics=runtime.metrics, scheduler_interval=s.scheduler or None, numbers=ours,
                         startup=_attach_async(runtime, client) if startup else None)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return app, registry, ttl, ours


def _attach_registry(registry: Any, client: Any) -> None:
    """Back an in-memory FlowRegistry with Redis: publish its flows, pick up newer versions."""
    flows = registry.flows()
    registry.client = client
    for flow in flows:
        registry.register(flow)
    registry.refresh()


def _attach_async(runtime: AsyncRuntime, client: RedisClient) -> Callable[[], Awaitable[None]]:
    """Serve's start-up retry, on its event loop: :func:`_attach_registry` through the async
    store's client (FlowRegistry.register_async, refresh_async), not the blocking one."""
    async def attach() -> None:
        registry = runtime.registry
        for flow in registry.flows():
            await registry.register_async(flow, runtime.store.client)
        await registry.refresh_async(runtime.store)
        registry.client = client  # attached: the app's flow refresh runs from now on (web.py)

    return attach


def _redis_down(exc: BaseException) -> bool:
    from flowkit.readiness import is_unavailable

    return is_unavailable(exc)


def _redis_down_at_start(registry: Any, client: Any, url: str | None, exc: BaseException) -> Any:
    """Say why serving starts unready, and return the start-up work the app retries."""
    from flowkit.store import settings

    registry.client = None  # in memory until Redis answers
    where = settings(url).redacted  # never the password
    typer.echo(f"warning: Redis at {where} is unreachable ({exc}); serving anyway: /readyz and /webhook answer 503 "
               "until Redis answers (retried every second)", err=True)
    return lambda: _attach_registry(registry, client)


def worker(
    flows: FlowsArg = None,
    redis: RedisOption = None,
    services: ServicesOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between rounds.")] = 1.0,
    outbox_age: Annotated[float, typer.Option(help="Seconds before an unacknowledged outbox entry is redelivered.")] = 30.0,
    once: Annotated[bool, typer.Option(help="Run one round and exit.")] = False,
    alerts: Annotated[Path | None, typer.Option("--alerts", help="Alert rules YAML to evaluate every round.")] = None,
    rate: RateOption = 80.0,
    no_send: NoSendOption = False,
    format: FormatOption = OutputFormat.text,
    terminal_ttl: TerminalTtlOption = None,
    numbers: NumbersOption = None,
) -> None:
    """Fire due timeouts, run recovery (outbox, cut-short calls, expiry) and alert rules, forever (or --once).

    Replies (of timeouts, and unsent ones left in the outbox) go out through WhatsApp, configured
    like `serve` (WHATSAPP_TOKEN, WHATSAPP_PHONE_NUMBER_ID); see --no-send."""
    from flowkit.metrics import RedisMetrics
    from flowkit.runtime import Runtime
    from flowkit.store import Store, connect

    registry = _registry(flows)
    ours = numbers_option(numbers, registry.names())
    channel = _sync_channel(no_send, ours)
    client = connect(redis)
    _attach_registry(registry, client)
    metrics = RedisMetrics(client)
    ttl = _terminal_ttl(terminal_ttl, client, "worker")
    rt = Runtime(Store(client, terminal_ttl_ms=ttl), registry, services=_services(services),
                 metrics=metrics, channel=channel, rate=rate)
    rt.numbers = ours
    manager = None
    if alerts is not None:
        from flowkit.alerts import AlertManager, load_rules

        try:
            rules, webhook = load_rules(alerts)
        except (FlowkitError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        manager = AlertManager(client, rules, webhook_url=webhook)
    if not once:
        _started("worker", rt.registry, ttl, redis=redis, interval_s=interval, alert_rules=str(alerts) if alerts else None)
    while True:
        report = rt.recover(outbox_age_ms=int(outbox_age * 1000), redeliver=not no_send)
        metrics.flush()
        firing = len(manager.run().active) if manager is not None else None
        if once:
            _print_report(report.to_dict() | ({"alerts_firing": firing} if firing is not None else {}), format,
                          "recovery round")
            return
        time.sleep(interval)


def recover(
    flows: FlowsArg = None,
    redis: RedisOption = None,
    services: ServicesOption = None,
    outbox_age: Annotated[float, typer.Option(help="Seconds before an unacknowledged outbox entry is redelivered.")] = 30.0,
    scan: Annotated[bool, typer.Option(help="Also load every session, so corrupt states are quarantined and restored.")] = False,
    rate: RateOption = 80.0,
    no_send: NoSendOption = False,
    format: FormatOption = OutputFormat.text,
    numbers: NumbersOption = None,
) -> None:
    """Repair what crashes left: due timeouts, unsent replies, cut-short service calls, expired and corrupt sessions.

    Replies go out through WhatsApp (WHATSAPP_TOKEN, WHATSAPP_PHONE_NUMBER_ID); see --no-send."""
    from flowkit.metrics import RedisMetrics
    from flowkit.runtime import Runtime
    from flowkit.store import Store, connect

    registry = _registry(flows)
    ours = numbers_option(numbers, registry.names())
    channel = _sync_channel(no_send, ours)
    client = connect(redis)
    _attach_registry(registry, client)
    metrics = RedisMetrics(client)
    rt = Runtime(Store(client, terminal_ttl_ms=_terminal_ttl(None)), registry,
                 services=_services(services), metrics=metrics, channel=channel, rate=rate)
    rt.numbers = ours
    try:
        report = rt.recover(outbox_age_ms=int(outbox_age * 1000), scan=scan, redeliver=not no_send)
        metrics.flush()
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _print_report(report.to_dict(), format, "recovery")


def migrate(
    flow: Annotated[str, typer.Argument(help="Name of the flow whose running sessions move.")],
    to: Annotated[str, typer.Option("--to", help="Target version id (its `version:` label, or content hash prefix).")],
    flows: Annotated[list[Path] | None, typer.Option("--flows", help="Flow files or folders to register first (the new version).")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="OLD_STEP=NEW_STEP for steps the new version renamed or removed; repeatable.")] = None,
    partial: Annotated[bool, typer.Option(help="Move the sessions that can move even if others are refused.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Show the plan; change nothing.")] = False,
    redis: RedisOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Move in-flight sessions of FLOW to version --to. Refuses (and lists) sessions whose step is gone unless mapped.

    Also refuses a move that skips a question whose answer a later step reads (naming the
    slot, the step that reads it and a safe step to map to instead).

    Exit 0 when every running session moved (or would move), 1 when some were refused or failed, 2 on bad input.
    """
    from flowkit.runtime import FlowRegistry, Runtime, apply_migration, plan_migration
    from flowkit.store import Store, connect

    mapping = step_map(map_)
    client = connect(redis)
    registry = _registry(flows, client) if flows else FlowRegistry(client=client)
    store = Store(client, terminal_ttl_ms=_terminal_ttl(None))
    try:
        target = registry.get(flow, to)
        plan = plan_migration(store.iter_sessions(), target, mapping)
        result = apply_migration(Runtime(store, registry), plan, partial=partial) if not dry_run else None
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from flowkit.runtime.migrate import MigrationResult

    data = (result or MigrationResult(plan)).to_dict() | {"dry_run": dry_run}
    if format is OutputFormat.json:
        typer.echo(json.dumps(data))
    else:
        for r in plan.refused:
            typer.echo(f"refused {r.session_id} at {r.step}: {r.reason}", err=True)
        for sid, err in (result.failed if result else ()):
            typer.echo(f"failed {sid}: {err}", err=True)
        verb = "would move" if dry_run else ("moved" if result and (plan.ok or partial) else "moved nothing of")
        n = len(plan.moves) if dry_run or not result else len(result.migrated)
        typer.echo(f"{verb} {n} session(s) of {flow} to version {plan.to_version}; {len(plan.refused)} refused, "
                   f"{plan.already} already there" + ("" if plan.ok or partial or dry_run else " (use --map or --partial)"))
    failed = bool(result and result.failed)
    raise typer.Exit(1 if plan.refused or failed else 0)


def _print_report(data: dict[str, Any], format: OutputFormat, title: str) -> None:
    if format is OutputFormat.json:
        typer.echo(json.dumps(data))
        return
    table = Table(title=title)
    table.add_column("repair")
    table.add_column("count", justify="right")
    for k, v in data.items():
        table.add_row(k.replace("_", " "), str(v))
    Console().print(table)


def register(app: typer.Typer) -> None:
    for fn in (serve, worker, recover):
        app.command()(fn)
    app.command("migrate")(migrate)
