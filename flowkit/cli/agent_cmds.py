"""``flowkit agent list | show SID | reply SID TEXT | release SID [--to STEP]``: people answering
sessions in hand-off from a terminal (the same actions as the /agent HTTP endpoints)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.cli.store_cmds import RedisOption, _errors

agent_app = typer.Typer(help="Sessions held by people (hand-off): list, show, reply, release.", no_args_is_help=True)

FlowsOption = Annotated[list[Path] | None, typer.Option(
    "--flows", help="Flow files or folders (default: $FLOWKIT_FLOWS).", show_default=False)]
SidArg = Annotated[str, typer.Argument(help="The session id: the user's WhatsApp id.")]


def sync_runtime(flows: list[Path] | None, redis: str | None, numbers: Path | None = None) -> Any:
    """A blocking runtime that sends through WhatsApp (configured from the environment, like
    ``flowkit worker``; each session from its own number: ``numbers`` / ``FLOWKIT_NUMBERS``);
    exit 2 naming what is missing."""
    from flowkit.channels.whatsapp import WhatsAppSender
    from flowkit.cli.numbers_opt import numbers_option, sending_number
    from flowkit.cli.runtime_cmds import _registry
    from flowkit.errors import ConfigError
    from flowkit.runtime import Runtime, WhatsAppChannel
    from flowkit.store import Store, connect
    from flowkit.store.retention import terminal_ttl_ms

    client = connect(redis)
    registry = _registry(flows, client)
    ours = numbers_option(numbers, registry.names())
    try:
        channel = WhatsAppChannel(WhatsAppSender(phone_number_id=sending_number(ours)), numbers=ours)
    except ConfigError as exc:
        typer.echo(f"error: {exc}. An agent's message is sent to WhatsApp from here", err=True)
        raise typer.Exit(2) from None
    rt = Runtime(Store(client, terminal_ttl_ms=terminal_ttl_ms()), registry, channel=channel)
    rt.numbers = ours
    return rt


def _store(redis: str | None) -> Any:
    from flowkit.cli.store_cmds import _store as store

    return store(redis)


@agent_app.command("list")
def agent_list(redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """The sessions waiting for a person, longest wait first."""
    from flowkit.runtime.handoff import waiting_sync

    with _errors():
        now = int(time.time() * 1000)
        rows = [w.to_dict(now) for w in waiting_sync(_store(redis))]
    if format == OutputFormat.json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("nobody is waiting for a person")
        return
    table = Table("session", "flow", "waiting", "since", "reason", "last message")
    for r in rows:
        table.add_row(r["session_id"], r["flow"], _ago(r["waiting_s"]), r["since"], r["reason"] or "",
                      (r["last_message"] or "")[:60])
    Console().print(table)


def _ago(seconds: int) -> str:
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@agent_app.command("show")
def agent_show(sid: SidArg, redis: RedisOption = None, format: FormatOption = OutputFormat.text,
               last: Annotated[int, typer.Option(help="How many history records to show.")] = 20) -> None:
    """One session: its state and its latest history (messages, agent replies)."""
    from flowkit.errors import SessionNotFound

    with _errors():
        store = _store(redis)
        state = store.load(sid)
        if state is None:
            raise SessionNotFound(f"no session {sid!r}; `flowkit agent list` shows who waits")
        history = store.history(sid)[-last:]
    if format == OutputFormat.json:
        typer.echo(json.dumps({"state": state, "history": history}, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{sid}: flow {state['flow']} step {state['step']} status {state['status']}")
    for h in history:
        said = ""
        try:
            got = json.loads(h.get("input") or "null")
            if isinstance(got, dict):
                said = got.get("text") or (got.get("args") or {}).get("text") or ""
        except ValueError:
            pass
        typer.echo(f"  v{h['version']} {h['actor']:>8} {h['event']:<8} {h['status']:<14} {said}")


@agent_app.command("reply")
def agent_reply(sid: SidArg, text: Annotated[str, typer.Argument(help="What to send the user.")],
                agent: Annotated[str | None, typer.Option(help="Who answers (kept in the history).")] = None,
                flows: FlowsOption = None, redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """Send TEXT to the user of a session in hand-off (through the outbox and the window rules)."""
    agent = agent or os.environ.get("USER")
    rt = sync_runtime(flows, redis)
    with _errors():
        out = rt.agent_reply(sid, text, agent=agent)
        rt.drain()
    _done(format, {"ok": True, "session_id": sid, "version": out.version}, f"sent to {sid} (v{out.version})")


@agent_app.command("release")
def agent_release(sid: SidArg,
                  to: Annotated[str | None, typer.Option("--to", help="The step the bot resumes at (default: end "
                                                                      "the session as completed).")] = None,
                  flows: FlowsOption = None, redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """Give a session in hand-off back to the bot at a step, or end it."""
    rt = sync_runtime(flows, redis)
    with _errors():
        out = rt.release(sid, to)
        rt.drain()
        state = rt.store.load(sid) or {}
    _done(format, {"ok": True, "session_id": sid, "version": out.version, "status": state.get("status"),
                   "step": state.get("step")}, f"released {sid}: {state.get('status')} at {state.get('step')}")


def _done(format: OutputFormat, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False) if format == OutputFormat.json else text)


def register(app: typer.Typer) -> None:
    from flowkit.cli import start_cmds

    app.add_typer(agent_app, name="agent")
    app.command("start")(start_cmds.start)
