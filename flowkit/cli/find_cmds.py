"""``flowkit session find`` and ``flowkit session bulk``: search sessions with the safe
expression language and repair the ones found in bulk (rollback, migrate, fail, expire)."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowkit.cli.flows import step_map
from flowkit.cli.store_cmds import RedisOption, _errors, _store, session_app

QueryArg = Annotated[str, typer.Argument(
    help="A query in the flow expression language over flow, flow_version, step, status, version, updated_at, "
         "idle (seconds), slots.NAME; e.g. \"status == 'waiting_input' and idle > 2 * hours\".")]
COLUMNS = ("session_id", "flow", "flow_version", "step", "status", "version", "updated_at", "idle_s")


class FindFormat(StrEnum):
    text = "text"
    json = "json"
    csv = "csv"


def _bar(enabled: bool, label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=not enabled)


def _find(store: Any, query: str, limit: int | None, show_progress: bool) -> tuple[list[dict[str, Any]], Any]:
    from flowkit.store.find import FindStats, compile_query, find_sessions

    q = compile_query(query)
    stats = FindStats()
    with _bar(show_progress, f"find ({q.plan})") as bar:
        task = bar.add_task("find", total=None)
        rows = list(find_sessions(store, q, limit=limit, stats=stats,
                                  progress=lambda n: bar.update(task, completed=n)))
    if stats.errors:
        typer.echo(f"warning: the query could not be evaluated on {stats.errors} session(s); first: {stats.first_error}",
                   err=True)
    for sid in stats.unreadable:
        typer.echo(f"warning: session {sid} skipped: unreadable state (run `flowkit session show {sid}`)", err=True)
    return rows, q


@session_app.command("find")
def session_find(query: QueryArg, redis: RedisOption = None,
                 limit: Annotated[int | None, typer.Option(help="Stop after this many matches.")] = None,
                 format: Annotated[FindFormat, typer.Option("--format", "-f", help="Output format.")] = FindFormat.text,
                 ) -> None:
    """Find sessions by flow, step, status, slot values, idle time or flow version.

    Live-status queries read only the active index (and an `idle > N` term one range of it);
    other queries scan every session. Exit 0 with matches, 1 with none, 2 on a bad query.
    """
    with _errors():
        rows, q = _find(_store(redis), query, limit, format is FindFormat.text and sys.stderr.isatty())
    if format is FindFormat.json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
    elif format is FindFormat.csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        typer.echo(buf.getvalue(), nl=False)
    else:
        table = Table(title=f"{len(rows)} session(s) where {query} ({q.plan})")
        for c in COLUMNS:
            table.add_column(c, justify="right" if c in ("version", "idle_s") else "left")
        for r in rows:
            table.add_row(*(str(r[c]) if r[c] is not None else "" for c in COLUMNS))
        Console().print(table)
    raise typer.Exit(0 if rows else 1)


class BulkAction(StrEnum):
    rollback = "rollback"
    migrate = "migrate"
    fail = "fail"
    expire = "expire"


@session_app.command("bulk")
def session_bulk(
    action: Annotated[BulkAction, typer.Argument(help="What to do to every session found.")],
    query: QueryArg,
    redis: RedisOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    back: Annotated[int, typer.Option(help="rollback: how many versions back.")] = 1,
    to: Annotated[str | None, typer.Option("--to", help="rollback: the version to return to; migrate: the target flow version.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="migrate: OLD_STEP=NEW_STEP; repeatable.")] = None,
    reason: Annotated[str, typer.Option(help="fail/expire: recorded as the record's error.")] = "",
    flows: Annotated[list[Path] | None, typer.Option("--flows", help="Flow files to register first (migrate to a new version).")] = None,
    format: Annotated[FindFormat, typer.Option("--format", "-f", help="Output format (the per-session report).")] = FindFormat.text,
) -> None:
    """Apply one action to every session QUERY finds, each as an admin commit with its own history record.

    Asks for confirmation unless --yes (or --dry-run). Exit 0 when every session was handled,
    1 when some failed, 2 on bad input or when not confirmed.
    """
    from flowkit.runtime import FlowRegistry, Runtime
    from flowkit.runtime.bulk import bulk

    mapping = step_map(map_)
    show = format is FindFormat.text
    with _errors():
        store = _store(redis)
        if flows:
            from flowkit.cli.runtime_cmds import _registry

            registry = _registry(flows, store.client)
        else:
            registry = FlowRegistry(client=store.client)
        rows, q = _find(store, query, None, show and sys.stderr.isatty())
        sids = [r["session_id"] for r in rows]
        if not sids:
            typer.echo(f"no session matches {query!r}", err=True)
            raise typer.Exit(0)
        if not dry_run and not yes:
            if not sys.stdin.isatty():
                typer.echo(f"error: {len(sids)} session(s) would be changed; confirm with --yes (or look first with "
                           "--dry-run)", err=True)
                raise typer.Exit(2)
            typer.confirm(f"{action.value} {len(sids)} session(s) matching {query!r}?", abort=True, err=True)
        rt = Runtime(store, registry)
        to_version: Any = to
        if action is BulkAction.rollback and to is not None:
            if not to.isdigit():
                typer.echo(f"error: --to {to!r}: rollback takes a version number", err=True)
                raise typer.Exit(2)
            to_version = int(to)
        with _bar(show, action.value) as bar:
            task = bar.add_task(action.value, total=len(sids))
            report = bulk(rt, action.value, sids, query=q, dry_run=dry_run, back=back, to_version=to_version,
                          mapping=mapping, reason=reason, progress=lambda n: bar.update(task, completed=n))
        rt.drain()
    data = report.to_dict()
    if format is FindFormat.json:
        typer.echo(json.dumps(data, ensure_ascii=False))
    elif format is FindFormat.csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=("session_id", "result", "detail", "version"), lineterminator="\n")
        w.writeheader()
        w.writerows(o.to_dict() for o in report.outcomes)
        typer.echo(buf.getvalue(), nl=False)
    else:
        for o in report.outcomes:
            typer.echo(f"{o.result:8} {o.session_id}  {o.detail}")
        verb = "would change" if dry_run else "changed"
        typer.echo(f"{action.value}: {verb} {data['would'] if dry_run else data['done']} of {data['sessions']} "
                   f"session(s); {data['skipped']} skipped, {data['failed']} failed")
    raise typer.Exit(1 if data["failed"] else 0)


def register(app: typer.Typer) -> None:
    """The commands attach to ``flowkit session`` (the group itself is registered by store_cmds)."""
