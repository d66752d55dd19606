"""``flowkit redis migrate-layout``: convert sessions stored in history layout 1 (a stream
per session) to the compact layout (docs/decisions.md, "Compact history layout"), and state hashes
holding the JSON in one field to the packed layout (flowkit/store/statefield.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.cli.store_cmds import RedisOption, _errors, _json, _progress, _store


def migrate_layout_cmd(redis: RedisOption = None,
                       dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the sessions to convert.")] = False,
                       batch: Annotated[int, typer.Option(min=1, help="Sessions read per progress step.")] = 200,
                       format: FormatOption = OutputFormat.text) -> None:
    """Convert every session still in the old history layout, pack every state hash still in
    the old layout, and repack history lists holding JSON elements as binary ones (idempotent;
    safe to interrupt and rerun). Stop processes of older flowkit versions first: they write
    the old layout and cannot read the new one."""
    from flowkit.store.migrate import migrate_store

    with _errors(), _progress(format is OutputFormat.text, "migrate-layout") as bar:
        store = _store(redis)
        total = sum(c["sessions"] for c in store.counters().values()) or None  # the counters' estimate
        task = bar.add_task("migrate-layout", total=total)
        report = migrate_store(store, dry_run=dry_run, batch=batch, progress=lambda n: bar.advance(task, n))
    if format is OutputFormat.json:
        _json(report.to_dict())
    else:
        verb = "would convert" if dry_run else "converted"
        typer.echo(f"{report.sessions} sessions scanned; {verb} {report.migrated} from the old history layout; "
                   f"{'would pack' if dry_run else 'packed'} {report.states_packed} state hashes and "
                   f"{report.histories_packed} histories")


def register(redis_app: typer.Typer) -> None:
    redis_app.command("migrate-layout")(migrate_layout_cmd)
