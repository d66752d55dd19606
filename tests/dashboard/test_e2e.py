"""``flowkit dashboard`` for real: a subprocess, its health endpoint, and a headless Chromium screenshot."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from matplotlib import image

from tests.dashboard.conftest import Traffic, registered

ROOT = Path(__file__).resolve().parents[2]
FLOWKIT = str(Path(sys.executable).parent / "flowkit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page_text(chromium: str, url: str, *, until: str, shot: Path, timeout: float = 60, tab: str | None = None) -> str:
    """The page's visible text once it contains ``until``, and a PNG screenshot of it then
    (headless Chromium driven over the DevTools protocol, in real time); ``tab``: click the
    tab with that label first, as soon as it is there."""
    from websockets.sync.client import connect

    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                break
        else:
            raise AssertionError("chromium did not open its DevTools port")
        pages = httpx.get(f"http://127.0.0.1:{m.group(1)}/json", timeout=10).json()
        ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        with connect(ws_url, max_size=None) as ws:
            ids = iter(range(1, 10_000))

            def call(method: str, **params: object) -> dict:
                i = next(ids)
                ws.send(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    reply = json.loads(ws.recv(timeout=30))
                    if reply.get("id") == i:
                        return reply

            call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
            call("Page.navigate", url=url)
            text = ""
            deadline = time.monotonic() + timeout
            click = ("(() => { const b = [...document.querySelectorAll('[role=tab]')]"
                     f".find(b => b.innerText.trim() === {json.dumps(tab)}); if (b) b.click(); return !!b; }})()")
            while time.monotonic() < deadline:
                if tab is not None and call("Runtime.evaluate", expression=click)["result"]["result"].get("value"):
                    tab = None
                got = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                text = got["result"]["result"].get("value") or ""
                if until in text:
                    time.sleep(2)  # let the charts and the graph finish drawing
                    png = call("Page.captureScreenshot", format="png")["result"]["data"]
                    shot.write_bytes(base64.b64decode(png))
                    return text
                time.sleep(0.5)
            raise AssertionError(f"{until!r} never appeared; the page says: {text[:500]!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def test_flowkit_dashboard_serves_the_page(traffic: Traffic, redis_url: str, tmp_path: Path) -> None:
    registered(traffic.store.client)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: bash scripts/system-deps.sh installs it"
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen([FLOWKIT, "dashboard", "--redis", redis_url, "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "FLOWKIT_FLOWS"})
    try:
        health = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert health is not None and health.status_code == 200 and health.text == "ok", \
            (tmp_path / "dashboard.log").read_text()
        # Not `chromium --screenshot --virtual-time-budget=...`: virtual time runs ahead of the
        # app's websocket, and those screenshots come out blank (an empty Streamlit frame) most
        # of the time. DevTools lets the test wait, in real time, until the numbers are there.
        shot = tmp_path / "dashboard.png"
        text = page_text(chromium, f"http://127.0.0.1:{port}/", until="Live sessions", shot=shot)
        assert "Stuck (idle > 30 min)" in text and "Redis unreachable" not in text and "Traceback" not in text
        assert shot.is_file() and shot.stat().st_size > 10_000
        px = image.imread(str(shot))[..., :3]
        assert px.shape[:2] == (1000, 1400)
        colours = np.unique((px * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        dark = (px.mean(axis=2) < 0.35).mean()  # text: the title, the metrics, the tables
        assert len(colours) > 200 and dark > 0.002, (len(colours), dark)
        assert proc.poll() is None  # still serving
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_a_malformed_redis_url_is_a_usage_error() -> None:
    from typer.testing import CliRunner

    from flowkit.cli import app

    result = CliRunner().invoke(app, ["dashboard", "--redis", "memcached://localhost:1"])
    assert result.exit_code == 2 and "unsupported Redis URL scheme" in result.output


def test_the_app_is_served_headless_without_telemetry() -> None:
    from flowkit.cli.dashboard_cmds import APP, streamlit_command

    cmd = streamlit_command(8600, "0.0.0.0")
    assert APP.is_file() and cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP)
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
    assert (opts["--server.port"], opts["--server.address"]) == ("8600", "0.0.0.0")
