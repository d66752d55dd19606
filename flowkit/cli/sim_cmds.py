"""``flowkit simulate``, ``check`` and ``test``: drive simulated users through the runtime,
prove from the stored history that nothing was lost or doubled, and cover every edge of
the flow graphs with generated conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.cli.runtime_cmds import (
    FlowsArg,
    RedisOption,
    ServicesOption,
    TerminalTtlOption,
    _registry,
    _services,
    _terminal_ttl,
)
from flowkit.errors import ConfigError, FlowkitError

# The summary's headline rows, in the order a reader wants them.
HEADLINE = (
    ("sessions started", "started"),
    ("sessions completed", "completed"),
    ("sessions abandoned", "abandoned"),
    ("sessions failed", "failed"),
    ("sessions ended otherwise", "other_end"),
    ("sessions still active", "still_active"),
    ("messages", "messages"),
    ("conflicts retried", "conflicts"),
    ("duplicates sent", "duplicates_sent"),
    ("duplicates absorbed", "duplicates_absorbed"),
    ("out of order", "out_of_order"),
    ("crashes recovered", "crashes"),
    ("redeliveries", "redeliveries"),
    ("timeouts fired", "timeouts_fired"),
    ("service calls", "service_calls"),
    ("service errors", "service_errors"),
    ("engine errors", "engine_errors"),
    ("seconds", "seconds"),
    ("virtual seconds", "virtual_seconds"),
    ("msgs/s", "messages_per_second"),
    ("users/s", "users_per_second"),
)


def simulate(
    flows: FlowsArg = None,
    users: Annotated[int, typer.Option(min=0, help="Simulated users.")] = 100,
    concurrency: Annotated[int, typer.Option(min=1, help="Events handled at once.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same histories).")] = 0,
    duplicate_rate: Annotated[float, typer.Option(help="Share of messages WhatsApp delivers twice.")] = 0.0,
    invalid_rate: Annotated[float, typer.Option(help="Chance an answer is invalid.")] = 0.1,
    abandon_rate: Annotated[float, typer.Option(help="Chance a user leaves at each question.")] = 0.03,
    out_of_order_rate: Annotated[float, typer.Option(help="Share of answers overtaken by a quick second message.")] = 0.0,
    crash_rate: Annotated[float, typer.Option(help="Chance the runtime 'crashes' between a commit and its effects.")] = 0.0,
    realtime: Annotated[bool, typer.Option(help="Run on the wall clock (for the live dashboard).")] = False,
    speed: Annotated[float, typer.Option(help="Realtime only: divide think times and latencies by this.")] = 1.0,
    redis: RedisOption = None,
    services: ServicesOption = None,
    log: Annotated[Path | None, typer.Option(help="Write the sent-message log (JSON lines) for `flowkit check --sent`.")] = None,
    format: FormatOption = OutputFormat.text,
    terminal_ttl: TerminalTtlOption = None,
    flow: Annotated[list[str] | None, typer.Option(
        "--flow", help="Only start this flow (repeatable; default: every flow with triggers).")] = None,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", help="Users behave differently in an experiment's variant: VARIANT:RATE=VALUE[,RATE=VALUE] "
        "(e.g. long:abandon_rate=0.3; repeatable).")] = None,
) -> None:
    """Drive simulated users through the real runtime (virtual clock unless --realtime) and print a summary."""
    # In process the simulator answers the flows' service calls itself (a few errors, slow
    # and silent calls), so flows run without their real integrations; --services only
    # imports the registry, as `serve` would. (docs/cli.md is generated from the docstring.)
    from flowkit.runtime import Runtime
    from flowkit.sim import Persona, SimConfig, Simulator
    from flowkit.sim.variants import parse_variant_options
    from flowkit.store import Store, connect

    client = connect(redis)
    ttl = _terminal_ttl(terminal_ttl, client, "simulate")
    rt = Runtime(Store(client, terminal_ttl_ms=ttl), _registry(flows, client), services=_services(services))
    try:
        cfg = SimConfig(users=users, concurrency=concurrency, seed=seed, duplicate_rate=duplicate_rate,
                        out_of_order_rate=out_of_order_rate, crash_rate=crash_rate, realtime=realtime, speed=speed,
                        flows=flow or None,
                        personas=(Persona(invalid_rate=invalid_rate, abandon_rate=abandon_rate,
                                          variants=parse_variant_options(variant or [])),))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("users"), TimeElapsedColumn())
    try:
        with Progress(*columns, transient=True, disable=format is OutputFormat.json, console=Console(stderr=True)) as bar:
            task = bar.add_task("simulating", total=users)
            result = Simulator(rt, cfg, progress=lambda done, total: bar.update(task, completed=done)).run()
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if log:
        result.write_log(log)
    summary = result.summary()
    if format is OutputFormat.json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"simulation: {users} users, concurrency {concurrency}, seed {seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    shown = set()
    for label, key in HEADLINE:
        table.add_row(label, str(summary[key]))
        shown.add(key)
    for key, value in summary.items():
        if key not in shown and key != "users":
            table.add_row(key.replace("_", " "), str(value))
    Console().print(table)
    if log:
        typer.echo(f"sent log: {log} (check it with `flowkit check --sent {log}`)", err=True)


def check(
    flows: FlowsArg = None,
    redis: RedisOption = None,
    sent: Annotated[Path | None, typer.Option(help="Sent-message log from `flowkit simulate --log`.")] = None,
    export: Annotated[Path | None, typer.Option(help="Check a history export folder (`flowkit export`) instead of Redis.")] = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Prove from the stored history that no message was lost or applied twice. Exit 1 on violations, 2 on bad input."""
    from flowkit.check import check_export, check_store, load_sent_log

    try:
        log = load_sent_log(sent) if sent else ()
        if export is not None:
            report = check_export(export, _registry(flows), sent=log)
        else:
            from flowkit.store import Store, connect

            client = connect(redis)
            report = check_store(Store(client), _registry(flows, client), sent=log)
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if format is OutputFormat.json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for v in report.violations:
            typer.echo(str(v))
        typer.echo(f"{report.sessions} sessions, {report.records} records, {report.messages_checked} messages and "
                   f"{report.replies_checked} reply counts checked, {report.replayed} records replayed: "
                   + ("no violations" if report.ok else f"{len(report.violations)} violations"), err=True)
    raise typer.Exit(0 if report.ok else 1)


def test(
    flows: FlowsArg = None,
    redis: RedisOption = None,
    values: Annotated[Path | None, typer.Option(help="JSON file: service name -> list of sample results for `call` steps.")] = None,
    max_states: Annotated[int, typer.Option(help="Engine states the conversation search may explore.")] = 20_000,
    keep: Annotated[bool, typer.Option(help="Keep the test sessions in Redis (default: deleted after the run).")] = False,
    stories: Annotated[list[Path] | None, typer.Option("--stories", help="Run the conversation stories in this YAML file instead (repeatable).")] = None,
    services: ServicesOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Generate conversations covering every edge of the flow graphs and run them through the runtime.

    Exit 0 at 100% edge coverage with every conversation passing, 1 otherwise, 2 on bad input.
    With --stories: run the hand-written conversation stories instead; exit 0 when every story
    passes, 1 when one fails (edges no story takes are reported, not failed), 2 on bad input.
    """
    from flowkit.store import Store, connect
    from flowkit.testing import run_edge_coverage

    if stories:
        _run_stories(flows, stories, redis, services, keep, format)
        return

    samples: dict[str, Any] = {}
    if values is not None:
        try:
            samples = json.loads(values.read_text(encoding="utf-8"))
            if not isinstance(samples, dict) or not all(isinstance(v, list) for v in samples.values()):
                raise ValueError("expected an object of lists")
        except (OSError, ValueError) as exc:
            typer.echo(f"error: --values {values}: {exc}", err=True)
            raise typer.Exit(2) from None
    registry = _registry(flows)
    try:
        report = run_edge_coverage(registry, Store(connect(redis)), values=samples, max_states=max_states, keep=keep)
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if format is OutputFormat.json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        table = Table(title=f"edge coverage {len(report.covered)}/{report.total} ({report.ratio:.0%})")
        table.add_column("flow")
        table.add_column("edges covered", justify="right")
        for flow, (c, t) in sorted(report.by_flow().items()):
            table.add_row(flow, f"{c}/{t}")
        Console().print(table)
        for line in report.findings():
            typer.echo(line)
        typer.echo(f"{len(report.results) - len(report.failed)}/{len(report.results)} conversations passed", err=True)
    raise typer.Exit(0 if report.ok else 1)

def _run_stories(flows: list[Path] | None, files: list[Path], redis: str | None, services: str | None, keep: bool,
                 format: OutputFormat) -> None:
    from flowkit.errors import StoryError
    from flowkit.store import Store, connect
    from flowkit.testing import load_stories, run_stories

    collected = []
    for f in files:
        try:
            found, settings = load_stories(f)
        except StoryError as exc:
            for p in exc.problems:
                typer.echo(str(p), err=True)
            raise typer.Exit(2) from None
        collected += found
        if not flows and settings.get("flows"):  # the file says where its flows are, relative to itself
            flows = [f.parent / p for p in settings["flows"]]
    registry = _registry(flows)
    try:
        report = run_stories(registry, Store(connect(redis)), collected, services=_services(services) if services else None,
                             keep=keep)
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if format is OutputFormat.json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        typer.echo(report.text())
    raise typer.Exit(0 if report.ok else 1)



def register(app: typer.Typer) -> None:
    for fn in (simulate, check):
        app.command()(fn)
    app.command("test")(test)

