"""``flowkit dashboard``: the operators' Streamlit dashboard on the same Redis as the runtime."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


def streamlit_command(port: int, host: str, app: Path = APP) -> list[str]:
    """The command that serves the app: headless, no telemetry, no file watcher."""
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.port", str(port), "--server.address", host, "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--client.toolbarMode", "viewer"]


def dashboard(
    flows: Annotated[list[Path] | None, typer.Argument(help="Flow files or folders to draw when Redis has no definition (default: $FLOWKIT_FLOWS).")] = None,
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL (default: $FLOWKIT_REDIS_URL, else the embedded server).")] = None,
    port: Annotated[int, typer.Option("--port", help="HTTP port of the dashboard.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface: needs a password).")] = "127.0.0.1",
    password_file: Annotated[Path | None, typer.Option("--password-file", help="File holding the dashboard password (else $FLOWKIT_DASHBOARD_PASSWORD).")] = None,
) -> None:
    """Serve the live dashboard (Streamlit, headless) at http://HOST:PORT until Ctrl-C.

    Headline numbers, message and session rates, drop-off per flow step drawn on the flow
    graph, stuck sessions with drill-down and rollback, service health and alerts. Exit 2
    when the app or Streamlit is missing or the Redis URL is malformed, or when HOST is not
    a loopback address and no password is set (the page asks for it when one is).
    """
    from flowkit.dashboard_auth import ENV_PASSWORD_FILE, check_bind
    from flowkit.errors import ConfigError
    from flowkit.store.connection import settings

    try:
        check_bind(host, password_file)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    if not APP.is_file():
        typer.echo(f"error: the dashboard app is not at {APP} (run from a flowkit checkout)", err=True)
        raise typer.Exit(2)
    try:
        import streamlit  # noqa: F401
    except ImportError:
        typer.echo("error: streamlit is not installed: pip install 'flowkit[dashboard]'", err=True)
        raise typer.Exit(2) from None
    try:
        cfg = settings(redis)  # no URL: starts (or reuses) the embedded server and keeps it up while we run
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    keep: Any = cfg.client()  # our connection keeps an embedded server alive for the app's lifetime
    from flowkit.log import current

    env = dict(os.environ, FLOWKIT_REDIS_URL=cfg.url, **current())  # the app logs like this command
    if password_file is not None:
        env[ENV_PASSWORD_FILE] = str(password_file.resolve())  # the app reads the file: no secret in argv
    if flows:
        env["FLOWKIT_FLOWS"] = os.pathsep.join(str(p.resolve()) for p in flows)
    typer.echo(f"flowkit dashboard on http://{host}:{port} (Redis {cfg.redacted})")
    try:
        keep.ping()
    except Exception as exc:  # noqa: BLE001 - the app shows "Redis unreachable" and keeps retrying
        typer.echo(f"warning: Redis does not answer yet ({type(exc).__name__}); the page will say so", err=True)
    proc = subprocess.Popen(streamlit_command(port, host), env=env)
    # A supervisor (systemd, docker stop, the demo script) sends SIGTERM to us, not to our
    # child: treat it like Ctrl-C so Streamlit never outlives the command. SIGINT too, set
    # explicitly: a shell starts background jobs with SIGINT ignored, and Python then keeps
    # it ignored, so `kill -INT` would do nothing to a dashboard started with `&`.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = _stop(proc)
    finally:
        if proc.poll() is None:
            _stop(proc)
        keep.close()
    raise typer.Exit(code if code >= 0 else 0)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """Terminate the Streamlit child, killing it if it ignores SIGTERM for ``grace`` seconds."""
    proc.terminate()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
