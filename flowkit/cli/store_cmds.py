"""``flowkit redis …``, ``flowkit session …``, ``backup``, ``restore`` and ``reconcile``.

Every command that talks to Redis takes ``--redis URL`` (default ``$FLOWKIT_REDIS_URL``,
else the embedded server of ``$FLOWKIT_DATA_DIR``). Exit codes: 0 success, 1 findings
(``reconcile --check`` found drift), 2 usage, input or Redis errors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flowkit.cli.flows import FormatOption, OutputFormat
from flowkit.errors import FlowkitError

RedisOption = Annotated[str | None, typer.Option(
    "--redis", help="Redis URL (default: $FLOWKIT_REDIS_URL, else the embedded server).", show_default=False)]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="Embedded server's data dir (default: $FLOWKIT_DATA_DIR, else ./.flowkit).", show_default=False)]

redis_app = typer.Typer(help="Run and inspect the embedded Redis (or any Redis given with --redis).",
                        no_args_is_help=True)
session_app = typer.Typer(help="Inspect, time-travel and roll back one session.", no_args_is_help=True)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """flowkit errors become a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except FlowkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _store(redis: str | None) -> Any:
    from flowkit.store import Store, connect
    from flowkit.store.retention import terminal_ttl_ms

    # a rollback can end a session (or revive one): it commits under the deployment's retention
    return Store(connect(redis), terminal_ttl_ms=terminal_ttl_ms())


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False))


# ---------------------------------------------------------------- flowkit redis …


@redis_app.command("start")
def redis_start(data_dir: DataDirOption = None,
                port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
                format: FormatOption = OutputFormat.text) -> None:
    """Start the embedded redis-server (AOF on) and leave it running until `flowkit redis stop`."""
    from flowkit.store import embedded_server, embedded_status

    with _errors():
        embedded_server(data_dir, persistent=True, port=port)
        status = embedded_status(data_dir)
    if format is OutputFormat.json:
        _json(status)
    else:
        typer.echo(f"redis-server running at {status['url']} (pid {status['pid']}, data in {status['data_dir']})")


@redis_app.command("stop")
def redis_stop(data_dir: DataDirOption = None, format: FormatOption = OutputFormat.text) -> None:
    """Stop the embedded redis-server cleanly (its AOF is flushed; data stays in the data dir)."""
    from flowkit.store import stop_embedded

    with _errors():
        stopped = stop_embedded(data_dir)
    if format is OutputFormat.json:
        _json({"stopped": stopped})
    else:
        typer.echo("stopped" if stopped else "not running")


@redis_app.command("status")
def redis_status(redis: RedisOption = None, data_dir: DataDirOption = None,
                 format: FormatOption = OutputFormat.text) -> None:
    """Is Redis up? Version, memory, sessions, quarantined states. Exit 1 if it is not reachable."""
    from redis import exceptions as redis_errors

    from flowkit.store import Store, embedded_status, redis_url_from_env, retention
    from flowkit.store.connection import settings
    from flowkit.store.server import embedded_url

    with _errors():  # an unreadable $FLOWKIT_REDIS_URL_FILE is bad input (exit 2)
        url = redis or redis_url_from_env()
    out: dict[str, Any] = {}
    cfg = None
    if url is None:
        out["embedded"] = embedded_status(data_dir)
        if out["embedded"]["running"]:  # its real URL (with the password from the data dir), never shown
            cfg = settings(embedded_url(data_dir))
    else:
        with _errors():  # a malformed URL is bad input (exit 2), not an unreachable server
            cfg = settings(url)
    if cfg is not None:
        out["url"] = cfg.redacted
        try:
            client = cfg.client()
            store = Store(client)
            info = client.info()  # a plain redis-py call: raises redis.RedisError, not a FlowkitError
            out.update({"reachable": True, "redis_version": info.get("redis_version"),
                        "used_memory_human": info.get("used_memory_human"),
                        "aof_enabled": bool(info.get("aof_enabled")), "active_sessions": store.active_count(),
                        "flows": {f: c["sessions"] for f, c in store.counters().items()},
                        "quarantined": store.quarantine_count(), **retention.status(client)})
            if hasattr(client, "get_primaries"):  # a cluster: INFO above came from one node only
                out.update(_cluster_info(client))
        except (FlowkitError, redis_errors.RedisError) as exc:
            typer.echo(f"error: {exc}", err=True)
            out["reachable"] = False
    else:
        out["reachable"] = False
    if format is OutputFormat.json:
        _json(out)
    else:
        for k, v in out.items():
            typer.echo(f"{k}: {json.dumps(v) if isinstance(v, dict) else v}")
    raise typer.Exit(0 if out.get("reachable") else 1)


def _cluster_info(client: Any) -> dict[str, Any]:
    """Memory and persistence summed over a cluster's masters (plain INFO answers for one node)."""
    nodes = client.info(target_nodes=client.PRIMARIES)
    used = sum(int(info.get("used_memory", 0)) for info in nodes.values())
    return {"masters": len(nodes), "used_memory_human": f"{used / 2**20:.2f}M",
            "aof_enabled": all(bool(info.get("aof_enabled")) for info in nodes.values())}


@redis_app.command("cli", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def redis_cli(args: Annotated[list[str] | None, typer.Argument(help="Arguments for redis-cli, e.g. INFO memory.")] = None,
              redis: RedisOption = None) -> None:
    """Open redis-cli on the flowkit Redis (the password goes through the environment, not argv)."""
    from flowkit.store import find_redis_cli, find_redis_server
    from flowkit.store.connection import settings

    with _errors():
        cfg = settings(redis)
        try:
            cli = find_redis_cli(find_redis_server())
        except FlowkitError:
            cli = find_redis_cli()
    cmd = [cli]
    env = dict(os.environ)
    if cfg.unix_socket:
        cmd += ["-s", cfg.unix_socket]
    else:
        host, port = cfg.nodes[0]
        cmd += ["-h", host, "-p", str(port)]
    if cfg.db:
        cmd += ["-n", str(cfg.db)]
    if cfg.cluster:
        cmd.append("-c")
    if cfg.ssl:
        cmd.append("--tls")
    if cfg.username:
        cmd += ["--user", cfg.username]
    if cfg.password:
        env["REDISCLI_AUTH"] = cfg.password
    raise typer.Exit(subprocess.run([*cmd, *(args or [])], env=env, check=False).returncode)


# ---------------------------------------------------------------- flowkit session …


@session_app.command("show")
def session_show(session_id: Annotated[str, typer.Argument(help="Session id.")],
                 version: Annotated[int | None, typer.Option("--version", "-v", help="Show this version instead of the current one.")] = None,
                 redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """Show a session's state (verified), now or at any version."""
    from flowkit.errors import SessionNotFound

    with _errors():
        store = _store(redis)
        state = store.load(session_id) if version is None else store.state_at(session_id, version)
        if state is None:
            raise SessionNotFound(f"no session {session_id!r}")
    if format is OutputFormat.json:
        _json(state)
        return
    table = Table(title=f"session {session_id} v{state['version']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for k, v in state.items():
        text = _iso(v) if k in ("started_at", "updated_at") else json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else str(v)
        table.add_row(k, text)
    Console().print(table)


@session_app.command("history")
def session_history(session_id: Annotated[str, typer.Argument(help="Session id.")],
                    start: Annotated[int, typer.Option(help="First version.")] = 1,
                    end: Annotated[int | None, typer.Option(help="Last version (default: the current one).")] = None,
                    limit: Annotated[int | None, typer.Option(help="At most this many records.")] = None,
                    redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """List a session's history records (one per commit)."""
    from flowkit.errors import SessionNotFound

    with _errors():
        store = _store(redis)
        records = store.history(session_id, start, end, limit=limit)
        if not records and store.load_raw(session_id) is None:
            raise SessionNotFound(f"no session {session_id!r}")
    if format is OutputFormat.json:
        _json(records)
        return
    from flowkit.history.chat import why_text

    table = Table(title=f"session {session_id}: {len(records)} records")
    for col in ("v", "ts", "event", "from → to", "status", "message_id", "error", "actor", "why"):
        table.add_column(col)
    for r in records:
        table.add_row(str(r["version"]), _iso(r["ts"]), r["event"], f"{r['from_step'] or '∅'} → {r['to_step'] or '∅'}",
                      r["status"], r["message_id"] or "", r["error"] or "", r["actor"], why_text(r.get("why")))
    Console().print(table)


@session_app.command("diff")
def session_diff(session_id: Annotated[str, typer.Argument(help="Session id.")],
                 a: Annotated[int, typer.Argument(help="From version.")],
                 b: Annotated[int, typer.Argument(help="To version.")],
                 redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """What changed in a session between two versions."""
    with _errors():
        d = _store(redis).diff(session_id, a, b)
    if format is OutputFormat.json:
        _json(d)
        return
    typer.echo(f"session {session_id}: v{a} → v{b}, {len(d['changes'])} change(s), {len(d['events'])} commit(s) between")
    for c in d["changes"]:
        path = ".".join(c["path"])
        if c["op"] == "added":
            typer.echo(f"+ {path} = {json.dumps(c['to'], ensure_ascii=False)}")
        elif c["op"] == "removed":
            typer.echo(f"- {path} (was {json.dumps(c['from'], ensure_ascii=False)})")
        else:
            typer.echo(f"~ {path}: {json.dumps(c['from'], ensure_ascii=False)} → {json.dumps(c['to'], ensure_ascii=False)}")


@session_app.command("rollback")
def session_rollback(session_id: Annotated[str, typer.Argument(help="Session id.")],
                     version: Annotated[int, typer.Argument(help="Version to return to.")],
                     actor: Annotated[str, typer.Option(help="Recorded as the record's actor.")] = "admin",
                     redis: RedisOption = None, format: FormatOption = OutputFormat.text) -> None:
    """Make an old version current again, as a new version (history is kept)."""
    with _errors():
        result = _store(redis).rollback(session_id, version, actor=actor)
    if format is OutputFormat.json:
        _json({"session_id": session_id, "rolled_back_to": version, **result.to_dict()})
    else:
        typer.echo(f"session {session_id}: version {result.version} now equals version {version}")


# ---------------------------------------------------------------- backup, restore, reconcile


def _progress(enabled: bool, label: str) -> Any:
    # on stderr: stdout carries only the report, even when a terminal is forced (FORCE_COLOR)
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True, disable=not enabled)


def backup_cmd(out: Annotated[Path, typer.Argument(help="Backup file to write (JSON lines).")],
               redis: RedisOption = None,
               resume: Annotated[bool, typer.Option(help="Continue an interrupted backup (OUT.partial).")] = True,
               format: FormatOption = OutputFormat.text) -> None:
    """Back up every session with its history, checksummed; restartable."""
    from flowkit.store import backup

    with _errors(), _progress(format is OutputFormat.text, "backup") as bar:
        task = bar.add_task("backup", total=None)
        report = backup(_store(redis), out, resume=resume,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    if format is OutputFormat.json:
        _json(report.to_dict())
    else:
        extra = f" (continued after {report.resumed_from})" if report.resumed_from else ""
        typer.echo(f"{report.sessions} sessions written to {report.path}{extra}")
        for sid in report.skipped:
            typer.echo(f"warning: session {sid} skipped: its keys are unreadable (run `flowkit session show` on it)",
                       err=True)


def restore_cmd(src: Annotated[Path, typer.Argument(help="Backup file written by `flowkit backup`.")],
                redis: RedisOption = None,
                batch: Annotated[int, typer.Option(min=1, help="Sessions written per round trip.")] = 200,
                format: FormatOption = OutputFormat.text) -> None:
    """Restore a backup (verified first); never overwrites a newer version already in Redis.
    Safe to interrupt: run it again and it completes what the interrupted run left."""
    from flowkit.store import restore

    with _errors(), _progress(format is OutputFormat.text, "restore") as bar:
        task = bar.add_task("restore", total=None)
        report = restore(_store(redis), src, batch=batch,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    if format is OutputFormat.json:
        _json(report.to_dict())
    else:
        typer.echo(f"{report.restored} sessions restored, {report.skipped_newer} left alone (Redis had them at the "
                   f"same or a newer version)")


def reconcile_cmd(redis: RedisOption = None,
                  check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if there is any.")] = False,
                  metrics: Annotated[bool, typer.Option("--metrics", help="Also rebuild the history-derived metrics counters.")] = False,
                  settle: Annotated[float, typer.Option(
                      min=0, help="Seconds before drift is looked at again; only drift found twice counts (0: once).")] = 0.5,
                  format: FormatOption = OutputFormat.text) -> None:
    """Rebuild the derived indexes (active, timeouts, outbox, counters) from the sessions. Safe
    while traffic runs: drift is confirmed by a second look before it is reported or fixed."""
    rebuilt = None
    with _errors():
        store = _store(redis)
        report = store.reconcile(dry_run=check, settle=settle)
        if metrics and not check:
            from flowkit.metrics.rebuild import rebuild

            rebuilt = rebuild(store)
    if format is OutputFormat.json:
        _json(report.to_dict() | ({"metrics": rebuilt} if rebuilt is not None else {}))
    else:
        if rebuilt is not None:
            typer.echo(f"metrics rebuilt from history: {sum(v for k, v in rebuilt.items() if k == 'messages_in'):g} "
                       f"messages in, {len(rebuilt)} counters")
        verb = "would fix" if check else "fixed"
        typer.echo(f"{report.sessions} sessions scanned; {verb} {report.fixed} index entries")
        for name, f in report.fixes.items():
            if any(f.values()):
                typer.echo(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in f.items() if v))
        for sid in report.skipped:
            typer.echo(f"warning: session {sid} skipped: unreadable state", err=True)
    raise typer.Exit(1 if check and report.fixed else 0)


def register(app: typer.Typer) -> None:
    from flowkit.cli import layout_cmds

    layout_cmds.register(redis_app)
    app.add_typer(redis_app, name="redis")
    app.add_typer(session_app, name="session")
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
    app.command("reconcile")(reconcile_cmd)
