"""The ``flowkit`` command line (Typer).

Each command group lives in its own module and is registered here, so this file is the
one place that lists every command. Exit codes: 0 success, 1 findings (lint errors,
anomalies, violations), 2 usage or input errors.
"""

from __future__ import annotations

import typer

from flowkit.cli import alerts_cmds as _alerts
from flowkit.cli import dashboard_cmds as _dashboard
from flowkit.cli import find_cmds as _find
from flowkit.cli import flows as _flows
from flowkit.cli import history_cmds as _history
from flowkit.cli import runtime_cmds as _runtime
from flowkit.cli import sim_cmds as _sim
from flowkit.cli import store_cmds as _store

app = typer.Typer(
    name="flowkit",
    help="Design, run, simulate and debug WhatsApp conversation flows with Redis state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_flows.register(app)
_runtime.register(app)
_sim.register(app)
_store.register(app)
_find.register(app)
_history.register(app)
_alerts.register(app)
_dashboard.register(app)


def main() -> None:
    app()
