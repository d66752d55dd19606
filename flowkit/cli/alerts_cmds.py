"""``flowkit alerts``: evaluate alert rules once or continuously, or export them for Prometheus."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.errors import FlowkitError

RulesOption = Annotated[Path, typer.Option("--rules", help="Alert rules YAML (see examples/alerts.yaml).")]


def alerts(
    rules: RulesOption = Path("examples/alerts.yaml"),
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL (default: $FLOWKIT_REDIS_URL, else the embedded server).")] = None,
    watch: Annotated[float, typer.Option(help="Evaluate every this many seconds until Ctrl-C (0: once).")] = 0.0,
    prometheus_rules: Annotated[Path | None, typer.Option("--prometheus-rules", help="Write the rules as a Prometheus alerting-rules file and exit.")] = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Evaluate alert rules on the live metrics; store, log and POST what fires or resolves.

    Exit 0 when nothing is firing, 1 when alerts are active, 2 on a bad rules file.
    """
    from flowkit import alerts as al

    try:
        loaded, webhook = al.load_rules(rules)
    except (FlowkitError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if prometheus_rules is not None:
        prometheus_rules.write_text(al.prometheus_rules(loaded), encoding="utf-8")
        typer.echo(f"wrote {prometheus_rules}")
        return
    from flowkit.store import connect

    manager = al.AlertManager(connect(redis), loaded, webhook_url=webhook)
    while True:
        result = manager.run()
        if format is OutputFormat.json:
            typer.echo(json.dumps(result.to_dict()))
        else:
            for a in result.fired:
                typer.echo(f"FIRED    [{a.severity}] {a.name}: {a.message}")
            for a in result.resolved:
                typer.echo(f"RESOLVED {a.name}: {a.message}")
            for a in result.active:
                since = datetime.fromtimestamp(a.since_ms / 1000, UTC).isoformat(timespec="seconds")
                typer.echo(f"active   [{a.severity}] {a.name} since {since}: {a.message}")
            if not result.active:
                typer.echo("no alerts firing")
        if not watch:
            raise typer.Exit(1 if result.active else 0)
        time.sleep(watch)


def register(app: typer.Typer) -> None:
    app.command()(alerts)
