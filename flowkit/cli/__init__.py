"""The ``flowkit`` command line (Typer).

Each command group lives in its own module and is registered here, so this file is the
one place that lists every command. Exit codes: 0 success, 1 findings (lint errors,
anomalies, violations), 2 usage or input errors.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from flowkit.cli import agent_cmds as _agent
from flowkit.cli import alerts_cmds as _alerts
from flowkit.cli import dashboard_cmds as _dashboard
from flowkit.cli import find_cmds as _find
from flowkit.cli import flows as _flows
from flowkit.cli import history_cmds as _history
from flowkit.cli import runtime_cmds as _runtime
from flowkit.cli import sim_cmds as _sim
from flowkit.cli import store_cmds as _store
from flowkit.cli import transcript_cmds as _transcript

app = typer.Typer(
    name="flowkit",
    help="Design, run, simulate and debug WhatsApp conversation flows with Redis state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class LogFormat(StrEnum):
    json = "json"
    text = "text"


@app.callback()
def _logging(
    ctx: typer.Context,
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", envvar="FLOWKIT_LOG_FORMAT",
        help="Logs on stderr as JSON lines (for collectors) or text (for people).")] = LogFormat.json,
    log_level: Annotated[str, typer.Option(
        "--log-level", envvar="FLOWKIT_LOG_LEVEL",
        help="Least severe level logged: debug, info, warning, error or critical.")] = "info",
) -> None:
    """Design, run, simulate and debug WhatsApp conversation flows with Redis state."""
    # One place for every command: long-running ones (serve, worker, simulate, backup, ...)
    # log what they handle; the others log only what goes wrong.
    from flowkit import log
    from flowkit.errors import ConfigError

    try:
        restore = log.configure(log_level, fmt=log_format.value)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    ctx.call_on_close(restore)  # in-process callers (tests, notebooks) get their logging back


_flows.register(app)
_runtime.register(app)
_sim.register(app)
_store.register(app)
_find.register(app)
_transcript.register(app)
_history.register(app)
_alerts.register(app)
_dashboard.register(app)
_agent.register(app)


def main() -> None:
    try:
        app()
    except ModuleNotFoundError as exc:
        # an optional package a command needs (pandas, graphviz, ...): say which extra brings it
        from flowkit.extras import missing_extra

        err = missing_extra(exc)
        if err is None:
            raise
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
