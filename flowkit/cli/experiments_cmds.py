"""``flowkit analytics -t experiments``: the experiments table of an export, with its
warnings on stderr so a reader of the table alone cannot miss them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from flowkit.errors import FlowkitError
from flowkit.history.flowset import FlowSet


def experiments_table(export_dir: Path, flows: FlowSet | None, *, goal: str | None, flow: str | None) -> pd.DataFrame:
    from flowkit.history.columns import read_history
    from flowkit.history.experiments import experiment_results

    try:
        if flows is None:
            raise FlowkitError("-t experiments needs the flow files: add --flows FILES (every version the sessions ran on)")
        if goal is not None and not any(goal in flows.graph(f.name, f.version_id).steps for f in flows.all()):
            raise FlowkitError(f"--goal {goal!r} is not a step of any flow given with --flows; name a step "
                               "(qualified inside sub-flows, e.g. contact/ask_email)")
        df = experiment_results(read_history(export_dir), flows, goal=goal, flow=flow)
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for _, r in df[df["warning"].astype(bool)].iterrows():
        typer.echo(f"warning: {r['flow']} {r['split']} {r['variant']}: {r['warning']}", err=True)
    if df.empty:
        typer.echo("warning: no journey went through a split step of the given flows", err=True)
    return df
