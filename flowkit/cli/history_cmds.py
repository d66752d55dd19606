"""``flowkit export``, ``analyze``, ``analytics``, ``whatif`` and ``impact``: history for analysts.

Exit codes follow the CLI's convention: 0 nothing found, 1 findings (anomalies,
divergences, affected sessions), 2 bad input (unreadable export, missing or ill-typed
columns, bad flow files, bad options).

``--flows`` takes several files or folders after it (``--flows a.yaml b.yaml flows/``),
so the export folder comes first: ``flowkit analyze out/ --flows flows/``.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flowkit.cli.flows import step_map
from flowkit.errors import FlowError, FlowkitError


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    csv = "csv"


class ExportFormat(StrEnum):
    parquet = "parquet"
    jsonl = "jsonl"
    csv = "csv"


class Engine(StrEnum):
    auto = "auto"
    pandas = "pandas"
    duckdb = "duckdb"
    dask = "dask"


class Table(StrEnum):
    funnel = "funnel"
    drop_off = "drop_off"
    dwell = "dwell"
    rates = "rates"
    retries = "retries"
    variants = "variants"
    dfg = "dfg"
    delivery = "delivery"  # from the messages table (flowkit/history/delivery.py)

    experiments = "experiments"


FlowsOption = Annotated[list[Path] | None, typer.Option(
    "--flows", help="Flow files or folders (several may follow --flows; give every version the sessions ran on).")]
ReportFormatOption = Annotated[ReportFormat, typer.Option("--format", "-f", help="Output format.")]
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": False}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _flow_paths(ctx: typer.Context, flows: list[Path] | None) -> list[Path]:
    """--flows values plus the paths that followed them (click hands those over as extra args)."""
    extra = [Path(a) for a in ctx.args]
    if extra and not flows:
        raise _fail(f"unexpected argument(s) {' '.join(ctx.args)}; flow files go after --flows")
    paths = list(flows or []) + extra
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise _fail(f"no such flow file or folder: {', '.join(missing)}")
    return paths


def _load_flows(paths: list[Path]) -> Any:
    from flowkit.history.flowset import FlowSet

    if not paths:
        return None
    try:
        return FlowSet.load(paths)
    except FlowError as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(2) from None


def _load_flow(path: Path) -> Any:
    from flowkit.flow import load_flow

    if not path.exists():
        raise _fail(f"no such flow file: {path}")
    try:
        return load_flow(path)
    except FlowError as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(2) from None


def _emit_frame(df: Any, fmt: ReportFormat, title: str = "") -> None:
    if fmt is ReportFormat.json:
        clean = df.astype(object).where(df.notna(), None)
        typer.echo(json.dumps(clean.to_dict(orient="records"), indent=2, default=str))
    elif fmt is ReportFormat.csv:
        sys.stdout.write(df.to_csv(index=False))
    else:
        # Plain aligned text: wide tables (rates has 18 columns) stay readable in a terminal
        # and in a log, where a boxed table would wrap its headers.
        if title:
            typer.echo(title)
        with pd_options():
            typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.3f}") if len(df) else "(no rows)")


def pd_options() -> Any:
    import pandas as pd

    return pd.option_context("display.width", 10_000, "display.max_columns", None, "display.max_colwidth", 80)


# ---------------------------------------------------------------- export


def export(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the export into.")],
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.")] = ExportFormat.parquet,
    since: Annotated[str | None, typer.Option(help="Only records at or after this time (ISO-8601 or epoch ms).")] = None,
    flow: Annotated[str | None, typer.Option(help="Only sessions of this flow.")] = None,
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL (default: $FLOWKIT_REDIS_URL, else the embedded server).")] = None,
    batch: Annotated[int, typer.Option(help="Sessions per pipelined round trip.")] = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    partition_by: Annotated[str | None, typer.Option(
        "--partition-by", help="Parquet history as hive folders, e.g. flow,day (history/flow=NAME/day=YYYY-MM-DD/).")] = None,
) -> None:
    """Stream every session's history and a sessions snapshot from Redis into OUT_DIR."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flowkit.history.columns import to_ms
    from flowkit.history.export import export_store
    from flowkit.history.partitioned import parse_partition_by
    from flowkit.store import Store, connect

    try:
        partition = parse_partition_by(partition_by)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    if partition and format.value != "parquet":
        raise _fail(f"--partition-by needs --format parquet, not {format.value} (hive folders hold Parquet files)")
    try:
        since_ms = to_ms(int(since) if since is not None and since.isdigit() else since) if since is not None else None
    except FlowkitError as exc:
        raise _fail(f"--since: {exc}") from None
    try:
        store = Store(connect(redis))
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    columns = [TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TextColumn("sessions"), TimeElapsedColumn()]
    with Progress(*columns, transient=True, disable=quiet, console=Console(stderr=True)) as bar:
        task = bar.add_task("export", total=None)
        try:
            meta = export_store(store, out_dir, fmt=format.value, since=since_ms, flow=flow, batch=batch,
                                progress=lambda done, total: bar.update(task, completed=done, total=total),
                                partition_by=partition)
        except FlowkitError as exc:
            raise _fail(str(exc)) from None
    typer.echo(f"exported {meta['sessions']['rows']} sessions, {meta['history']['rows']} records, "
               f"{meta['messages']['rows']} messages to {out_dir} "
               f"({format.value})", err=True)


# ---------------------------------------------------------------- analyze


def analyze(
    ctx: typer.Context,
    export_dir: Annotated[Path, typer.Argument(help="An export folder, or a history file (.parquet, .jsonl, .csv).")],
    flows: FlowsOption = None,
    stuck_after: Annotated[str, typer.Option(help="Idle time after which a running session is STUCK.")] = "30m",
    retry_threshold: Annotated[int, typer.Option(help="RETRY_LOOP: re-entries of an ask step in a row allowed.")] = 5,
    as_of: Annotated[str | None, typer.Option(help="Judge staleness at this time (default: exported_at).")] = None,
    code: Annotated[list[str] | None, typer.Option("--code", help="Only these anomaly codes (repeatable).")] = None,
    format: ReportFormatOption = ReportFormat.text,
    engine: Annotated[Engine, typer.Option(
        "--engine", help="pandas, duckdb (same report; checks in SQL), dask (same report; on a Dask cluster, "
        "see --scheduler) or auto (duckdb when installed).")] = Engine.pandas,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler",
        help="--engine dask: address of a running Dask scheduler (tcp://host:8786); default: a local cluster.")] = None,
) -> None:
    """Find stuck, looping and inconsistent sessions. Exit 1 when there are anomalies."""
    from flowkit.history.anomalies import CODES
    from flowkit.history.anomalies import analyze as run_analysis

    paths = _flow_paths(ctx, flows)
    fs = _load_flows(paths)
    if code:
        bad = [c for c in code if c not in CODES]
        if bad:
            raise _fail(f"unknown code(s) {', '.join(bad)}; known: {', '.join(CODES)}")
    try:
        report = run_analysis(export_dir, fs, stuck_after=stuck_after, retry_threshold=retry_threshold,
                              as_of=int(as_of) if as_of is not None and as_of.isdigit() else as_of, codes=code or None,
                              engine=engine.value, scheduler=scheduler)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    if format is ReportFormat.json:
        typer.echo(report.to_json())
    elif format is ReportFormat.csv:
        sys.stdout.write(report.to_frame().to_csv(index=False))
    else:
        for a in report.anomalies:
            typer.echo(str(a))
        err = Console(stderr=True)
        s = report.summary
        counts = ", ".join(f"{c} {n}" for c, n in s["counts"].items() if n)
        err.print(f"{s['rows']} records, {s['sessions']} sessions, as of {s['as_of']} ({s['as_of_source']}): "
                  + (f"[red]{s['anomalies']} anomalies[/red] ({counts})" if s["anomalies"] else "[green]no anomalies"))
        if fs is None:
            err.print("[yellow]no --flows given: ILLEGAL_TRANSITION and UNKNOWN_STEP were not checked")
        for u in s["unchecked"]:
            err.print(f"[yellow]flow {u['flow']} version {u['flow_version']} is not loaded: {u['rows']} records "
                      "not checked against its graph (give its file with --flows)")
        if not s["checks"]["snapshot"]:
            err.print("[yellow]no sessions snapshot: STATE_MISMATCH was not checked")
    raise typer.Exit(1 if report.anomalies else 0)


# ---------------------------------------------------------------- analytics


def analytics(
    ctx: typer.Context,
    export_dir: Annotated[Path, typer.Argument(help="An export folder, or a history file.")],
    flows: FlowsOption = None,
    table: Annotated[Table, typer.Option("--table", "-t", help="Which table.")] = Table.funnel,
    flow: Annotated[str | None, typer.Option(help="Only this flow.")] = None,
    heatmap: Annotated[Path | None, typer.Option(help="Also draw --flow as a traffic/drop-off heatmap (.svg, .png, .pdf, .dot).")] = None,
    format: ReportFormatOption = ReportFormat.text,
    engine: Annotated[Engine, typer.Option(
        "--engine", help="pandas (every table) or dask (funnel, drop_off, rates, retries: the same tables, "
        "computed on a Dask cluster).")] = Engine.pandas,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="--engine dask: address of a running Dask scheduler (tcp://host:8786); "
        "default: a local cluster.")] = None,
    goal: Annotated[str | None, typer.Option(
        "--goal", help="-t experiments: the step whose reach counts as a conversion (default: completion).")] = None,
) -> None:
    """Funnels, drop-off, dwell time, rates, retries, path variants, the directly-follows graph, or experiments."""
    from flowkit.history import analytics as an
    from flowkit.history._prep import prepare
    from flowkit.history.columns import read_history

    fs = _load_flows(_flow_paths(ctx, flows))
    _check_analytics_options(table, engine, scheduler, goal, heatmap)
    title = f"{table.value}{' of ' + flow if flow else ''}"
    if table is Table.experiments:
        from flowkit.cli.experiments_cmds import experiments_table

        _emit_frame(experiments_table(export_dir, fs, goal=goal, flow=flow), format, title="experiments")
        return
    if engine is Engine.dask:
        _emit_frame(_dask_table(export_dir, table, fs, flow, scheduler), format, title=title)
        return
    try:
        history = read_history(export_dir)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    if table is Table.delivery:
        _emit_frame(_delivery_table(export_dir, history, flow), format, title=title)
        return
    p = prepare(history)
    fn = getattr(an, table.value)
    kwargs: dict[str, Any] = {}
    if table.value in ("funnel", "drop_off", "retries"):
        kwargs["flows"] = fs
    if table.value != "rates":
        kwargs["flow"] = flow
    df = fn(p, **kwargs)
    if table.value == "rates" and flow is not None:
        df = df[df["flow"] == flow]
    _emit_frame(df, format, title=title)
    if heatmap is not None:
        _write_heatmap(p, flow, fs, heatmap)


def _check_analytics_options(table: Table, engine: Engine, scheduler: str | None, goal: str | None,
                             heatmap: Path | None) -> None:
    """Refuse option combinations `flowkit analytics` cannot honour, before reading anything."""
    if engine not in (Engine.pandas, Engine.dask):
        raise _fail(f"analytics runs on --engine pandas or dask, not {engine.value}")
    if scheduler is not None and engine is not Engine.dask:
        raise _fail("--scheduler is for --engine dask")
    if goal is not None and table is not Table.experiments:
        raise _fail("--goal is for -t experiments")
    if table is Table.experiments and (engine is not Engine.pandas or heatmap is not None):
        raise _fail("-t experiments runs on --engine pandas, without --heatmap")
    if engine is Engine.dask and heatmap is not None:
        raise _fail("--heatmap draws from the whole history in this process: use --engine pandas for it")
    if engine is Engine.dask and table is Table.delivery:
        raise _fail("-t delivery reads the messages table with pandas: use --engine pandas for it")


def _dask_table(export_dir: Path, table: Table, fs: Any, flow: str | None, scheduler: str | None) -> Any:
    from flowkit.history import dask_analytics

    try:
        df = dask_analytics.table(export_dir, table.value, fs, flow=flow, scheduler=scheduler)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    if table.value == "rates" and flow is not None:
        df = df[df["flow"] == flow]
    return df


def _delivery_table(export_dir: Path, history: Any, flow: str | None) -> Any:
    from flowkit.history.delivery import delivery_rates
    from flowkit.history.messages import read_messages

    try:
        return delivery_rates(read_messages(export_dir), history, flow=flow)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None


def _write_heatmap(p: Any, flow: str | None, fs: Any, heatmap: Path) -> None:
    from flowkit.history.plots import heatmap as draw

    if flow is None or fs is None or not fs.has(flow):
        raise _fail("--heatmap needs --flow NAME and that flow's file in --flows")
    dot = draw(p, fs.get(flow), fs)
    fmt = heatmap.suffix.lstrip(".").lower() or "svg"
    heatmap.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        heatmap.write_text(dot.source, encoding="utf-8")
    else:
        heatmap.write_bytes(dot.pipe(format=fmt))
    typer.echo(f"wrote {heatmap}", err=True)


# ---------------------------------------------------------------- what-if and impact


def whatif(
    ctx: typer.Context,
    export_dir: Annotated[Path, typer.Argument(help="An export folder, or a history file.")],
    new: Annotated[Path, typer.Option("--new", help="The new version of the flow (a flow file).")],
    flows: FlowsOption = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="OLD_STEP=NEW_STEP for a step the new version renamed, as for `flowkit migrate`; repeatable.")] = None,
    format: ReportFormatOption = ReportFormat.text,
) -> None:
    """Replay recorded journeys against a new flow version; report where they diverge. Exit 1 if any does.

    With --map, a renamed step is not a divergence: the replay carries on past it.
    """
    from flowkit.history.columns import read_history
    from flowkit.history.replay import whatif as run

    mapping = step_map(map_)
    fs = _load_flows(_flow_paths(ctx, flows))
    flow = _load_flow(new)
    try:
        report = run(read_history(export_dir), flow, fs, mapping=mapping)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    if format is ReportFormat.json:
        from flowkit.history.replay import whatif_json

        typer.echo(whatif_json(report))
    elif format is ReportFormat.csv:
        sys.stdout.write(report.journeys.to_csv(index=False))
    else:
        _emit_frame(report.counts(), format, title=f"{flow.name}: replay against version {flow.version_id}")
        if not report.diverged.empty:
            _emit_frame(report.by_step(), format, title="where journeys diverge")
    raise typer.Exit(1 if report.summary["diverged"] else 0)


def impact(
    ctx: typer.Context,
    export_dir: Annotated[Path, typer.Argument(help="An export folder (its sessions snapshot is used).")],
    new: Annotated[Path, typer.Option("--new", help="The new version of the flow (a flow file).")],
    flows: FlowsOption = None,
    format: ReportFormatOption = ReportFormat.text,
) -> None:
    """Running sessions a new flow version affects, and the step mapping for `flowkit migrate`. Exit 1 if any."""
    from flowkit.history.columns import read_history, read_sessions
    from flowkit.history.impact import change_impact

    fs = _load_flows(_flow_paths(ctx, flows))
    flow = _load_flow(new)
    try:
        sessions = read_sessions(export_dir)
        report = change_impact(sessions if sessions is not None else read_history(export_dir), flow, fs)
    except FlowkitError as exc:
        raise _fail(str(exc)) from None
    if format is ReportFormat.json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif format is ReportFormat.csv:
        sys.stdout.write(report.sessions.to_csv(index=False))
    else:
        _emit_frame(report.steps, format, title=f"{flow.name}: running sessions vs version {flow.version_id}")
        args = report.migrate_args()
        if args:
            typer.echo("proposed mapping: " + " ".join(f"--map {a}" for a in args))
    raise typer.Exit(1 if report.summary["affected"] else 0)


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command(context_settings=EXTRA)(analyze)
    app.command(context_settings=EXTRA)(analytics)
    app.command(context_settings=EXTRA)(whatif)
    app.command(context_settings=EXTRA)(impact)
