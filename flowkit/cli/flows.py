"""``flowkit lint``, ``flowkit render`` and ``flowkit graph``: work on flow files, no Redis."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flowkit.errors import FlowError
from flowkit.flow import Flow, flow_files, graph_json, load_flow, load_flows
from flowkit.flow.validate import flow_warnings


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


def step_map(pairs: list[str] | None) -> dict[str, str]:
    """``--map OLD_STEP=NEW_STEP`` options (migrate, whatif, bulk migrate) as a dict; exit 2 on a malformed one."""
    out = {}
    for m in pairs or []:
        old, sep, new = m.partition("=")
        if not sep or not old.strip() or not new.strip():
            typer.echo(f"error: --map {m!r} must look like OLD_STEP=NEW_STEP", err=True)
            raise typer.Exit(2)
        out[old.strip()] = new.strip()
    return out


def lint(
    files: Annotated[list[Path], typer.Argument(help="Flow files or folders of flow files.")],
    format: FormatOption = OutputFormat.text,
) -> None:
    """Check flow files; report every problem as file:line:column. Exit 1 if any."""
    paths = flow_files(files)
    missing = [p for p in paths if not p.exists()]
    if missing or not paths:
        typer.echo(f"error: no such file: {', '.join(map(str, missing))}" if missing else "error: no flow files found", err=True)
        raise typer.Exit(2)
    problems = []
    try:
        flows = load_flows(paths)
    except FlowError as exc:
        problems = exc.problems
        flows = {}
    # Warnings (texts that may outgrow WhatsApp's limits once filled in) never fail lint.
    warnings = [w for name in sorted(flows) for w in flow_warnings(flows[name])]
    if format is OutputFormat.json:
        typer.echo(json.dumps({"ok": not problems, "files": [str(p) for p in paths], "flows": sorted(flows),
                               "problems": [p.to_dict() for p in problems],
                               "warnings": [w.to_dict() for w in warnings]}, indent=2))
    else:
        for p in problems:
            typer.echo(str(p))
        for w in warnings:
            typer.echo(f"{w.file}:{w.line}:{w.column}: warning: {w.message} [{w.code}]", err=True)
        n = len(problems)
        summary = f"{len(paths)} file(s): " + ("all valid" if not n else f"{n} problem{'s' if n != 1 else ''}")
        if warnings:
            summary += f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})"
        Console(stderr=True).print(("[green]" if not n else "[red]") + summary)
    raise typer.Exit(1 if problems else 0)


def render(
    file: Annotated[Path, typer.Argument(help="A flow file.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output file: .svg, .png, .pdf or .dot.")],
) -> None:
    """Draw a flow with graphviz."""
    flow = _load_or_exit(file)
    if out.suffix.lower() not in (".svg", ".png", ".pdf", ".dot", ".gv"):
        typer.echo(f"error: unsupported output type {out.suffix!r}; use .svg, .png, .pdf or .dot", err=True)
        raise typer.Exit(2)
    from flowkit.flow.render import render_to_file  # graphviz: the `render` extra

    path = render_to_file(flow, out)
    typer.echo(f"wrote {path}")


def graph(
    file: Annotated[Path, typer.Argument(help="A flow file.")],
    format: FormatOption = OutputFormat.json,
) -> None:
    """Print a flow's nodes and edges."""
    flow = _load_or_exit(file)
    data = graph_json(flow)
    if format is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2))
        return
    for n in data["nodes"]:
        typer.echo(f"{n['id']:<24} {n['kind']}")
    for e in data["edges"]:
        typer.echo(f"{e['source']} -> {e['target']}  [{e['label']}]")


def _load_or_exit(file: Path) -> Flow:
    if not file.exists():
        typer.echo(f"error: no such file: {file}", err=True)
        raise typer.Exit(2)
    try:
        return load_flow(file)
    except FlowError as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.command()(lint)
    app.command()(render)
    app.command()(graph)
