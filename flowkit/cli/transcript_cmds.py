"""``flowkit session transcript``: a session's chat both ways, as a person reads it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.cli.store_cmds import RedisOption, _errors, _store, session_app


@session_app.command("transcript")
def session_transcript(session_id: Annotated[str, typer.Argument(help="Session id.")],
                       redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """Print a session's messages both ways (user, bot, agent) with the options offered and
    WhatsApp's delivery statuses. Redis keeps the recent ones (as many as the history);
    `flowkit export` writes them all to the messages table."""
    from flowkit.errors import SessionNotFound
    from flowkit.history.chat import chat_lines

    with _errors():
        if not session_id:
            raise SessionNotFound("no session ''; give a session id (list them with `flowkit session find`)")
        store = _store(redis)
        messages = store.transcript(session_id)
        if not messages and store.load_raw(session_id) is None:
            raise SessionNotFound(f"no session {session_id!r}; list sessions with `flowkit session find`")
    if format is OutputFormat.json:
        # ASCII JSON: a lone surrogate in a user's text stays (escaped) instead of failing the print
        typer.echo(json.dumps(messages, indent=2, ensure_ascii=True))
        return
    typer.echo(f"session {session_id}: {len(messages)} messages")
    for line in chat_lines(messages):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """The command is on ``flowkit session`` (registered by importing this module)."""
