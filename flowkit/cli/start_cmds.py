"""``flowkit start FLOW --to WA_ID | --to-file users.csv``: business-initiated conversations.

One user: the start is refused (exit 2) outside the 24-hour window without ``--template``.
Many users (``--to-file``): a CSV with a ``wa_id`` column and optional ``key``,
``param.NAME`` (template parameters) and ``slot.NAME`` (slot values) columns. Each row has
an idempotency key (its ``key``, else ``--key`` or the file's name, joined with the flow and
the user), so running the same file again after an interruption skips the users already
started and continues. Starts are paced (``--rate`` per second); the report counts started,
skipped and failed (with each failure's reason). Exit 1 if any failed.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowkit.cli.agent_cmds import FlowsOption, sync_runtime
from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.cli.store_cmds import RedisOption
from flowkit.errors import FlowkitError, TemplateRequired

if TYPE_CHECKING:
    from flowkit.runtime import Runtime
    from flowkit.runtime.starts import StartRequest, TemplateSpec

MAX_ROWS = 1_000_000


@dataclass
class Report:
    started: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"started": self.started, "skipped": self.skipped, "failed": self.failed,
                "failures": self.failures[:100]}


def _params(pairs: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            typer.echo(f"error: --param {p!r} must be KEY=VALUE", err=True)
            raise typer.Exit(2)
        out.append((k.strip(), v))
    return tuple(out)


def _slots(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        got = json.loads(text)
    except ValueError:
        got = None
    if not isinstance(got, dict):
        typer.echo("error: --slots must be a JSON object, e.g. '{\"order_ref\": \"AB123456\"}'", err=True)
        raise typer.Exit(2)
    return got


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "wa_id" not in reader.fieldnames:
                raise ValueError("it needs a header row with a wa_id column")
            rows = []
            for i, row in enumerate(reader):
                if i >= MAX_ROWS:
                    raise ValueError(f"it has over {MAX_ROWS} rows; split it")
                rows.append({k: (v or "").strip() for k, v in row.items() if k is not None})
            return rows
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        raise typer.Exit(2) from None


def start(
    flow: Annotated[str, typer.Argument(help="The flow to start.")],
    to: Annotated[str | None, typer.Option("--to", help="The user's WhatsApp id.")] = None,
    to_file: Annotated[Path | None, typer.Option("--to-file", help="A CSV of users (wa_id, optional key, "
                                                                   "param.NAME and slot.NAME columns).")] = None,
    template: Annotated[str | None, typer.Option("--template", help="An approved template to open with "
                                                                    "(required outside the 24-hour window).")] = None,
    lang: Annotated[str, typer.Option("--lang", help="The template's language code.")] = "en_US",
    param: Annotated[list[str] | None, typer.Option("--param", help="A template parameter KEY=VALUE "
                                                                    "(numbered keys go in number order).")] = None,
    slots: Annotated[str | None, typer.Option("--slots", help="Slot values as a JSON object.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key: a key that started once never "
                                                          "starts again (with --to-file: the run's name).")] = None,
    rate: Annotated[float, typer.Option("--rate", min=0.01, help="Starts per second at most (--to-file).")] = 10.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr (--to-file).")] = True,
    flows: FlowsOption = None,
    redis: RedisOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Start FLOW for a user (or each user of a CSV): a business-initiated conversation."""
    from flowkit.runtime.starts import StartRequest, TemplateSpec

    if (to is None) == (to_file is None):
        typer.echo("error: give either --to WA_ID or --to-file users.csv", err=True)
        raise typer.Exit(2)
    base_params = _params(param)
    base_slots = _slots(slots)
    rows = _rows(to_file) if to_file is not None else []
    rt = sync_runtime(flows, redis)

    def request(wa_id: str, row: dict[str, str] | None) -> StartRequest:
        params = list(base_params)
        row_slots = dict(base_slots)
        row_key = key
        if row is not None:
            params += [(k[len("param."):], v) for k, v in row.items() if k.startswith("param.")]
            row_slots.update({k[len("slot."):]: v for k, v in row.items() if k.startswith("slot.") and v})
            run = key or (to_file.name if to_file is not None else "bulk")
            row_key = row.get("key") or f"{run}:{flow}:{wa_id}"
        spec = TemplateSpec(template, lang, tuple(params)) if template else None
        return StartRequest(wa_id, flow, spec, row_slots, row_key)

    if to is not None:
        _start_one(rt, to, flow, request(to, None).template, base_slots, key, format)
        return
    report = _start_many(rt, flow, [(row.get("wa_id", ""), row) for row in rows], request, rate, progress)
    rt.drain()
    _print_report(report, format)
    if report.failed:
        raise typer.Exit(1)


def _start_one(rt: Runtime, to: str, flow: str, template: TemplateSpec | None, slots: dict[str, Any], key: str | None,
               format: OutputFormat) -> None:
    """One user: a refusal (outside the window without a template, ...) is exit 2 with its reason."""
    try:
        result = rt.start(to, flow, template=template, slots=slots, key=key)
        rt.drain()
    except TemplateRequired as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if format == OutputFormat.json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        typer.echo(f"{result.status}: {flow} for {to}" + (f" ({result.detail})" if result.detail else ""))


def _start_many(rt: Runtime, flow: str, users: list[tuple[str, dict[str, str]]],
                request: Callable[[str, dict[str, str] | None], StartRequest],
                rate: float, progress: bool) -> Report:
    """Start ``flow`` for each (wa_id, CSV row), paced at ``rate`` starts per second."""
    report = Report()
    gap = 1.0 / rate
    bar = Progress(TextColumn(f"start {flow}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True, disable=not progress)
    with bar:
        task = bar.add_task("start", total=len(users))
        next_at = time.monotonic()
        for wa_id, row in users:
            if not wa_id:
                report.failed += 1
                report.failures.append({"wa_id": "", "error": "empty wa_id"})
                bar.advance(task)
                continue
            time.sleep(max(0.0, next_at - time.monotonic()))  # pacing: the number's send rate is shared
            try:
                result = rt.start(wa_id, flow, **_kw(request(wa_id, row)))
            except FlowkitError as exc:
                report.failed += 1
                report.failures.append({"wa_id": wa_id, "error": str(exc)})
            else:
                if result.status == "started":
                    report.started += 1
                    next_at = time.monotonic() + gap
                else:
                    report.skipped += 1
            bar.advance(task)
    return report


def _print_report(report: Report, format: OutputFormat) -> None:
    if format == OutputFormat.json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        typer.echo(f"started {report.started}, skipped {report.skipped} (already started), failed {report.failed}")
        for f in report.failures[:20]:
            typer.echo(f"  {f['wa_id']}: {f['error']}")


def _kw(req: Any) -> dict[str, Any]:
    return {"template": req.template, "slots": req.slots, "key": req.key}
