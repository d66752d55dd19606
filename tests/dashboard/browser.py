"""What the dashboard's end-to-end tests share: a running ``flowkit dashboard`` and a real
headless Chromium driven over the DevTools protocol, in real time.

Not ``chromium --screenshot --virtual-time-budget=...``: virtual time runs ahead of the app's
websocket, and those screenshots come out blank (an empty Streamlit frame) most of the
time. DevTools lets a test wait, in real time, until what it looks for is on the page."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flowkit.store.server import free_port

ROOT = Path(__file__).resolve().parents[2]
FLOWKIT = str(Path(sys.executable).parent / "flowkit")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is missing: bash scripts/system-deps.sh installs it"
    return path


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def dashboard(redis_url: str, log: Path, *flows: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A running ``flowkit dashboard`` (healthy) and its port; killed (whole group) afterwards."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen([FLOWKIT, "dashboard", *flows, "--redis", redis_url, "--port", str(port)], cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "FLOWKIT_FLOWS"})

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text == "ok"
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 90, "the dashboard's health endpoint")
        yield proc, port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        out.close()


class Page:
    """One browser tab: ``call`` sends a DevTools command and returns its reply."""

    def __init__(self, call: Callable[..., dict[str, Any]]) -> None:
        self.call = call

    def text(self) -> str:
        got = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
        return str(got["result"]["result"].get("value") or "")

    def click_tab(self, label: str) -> bool:
        """Click the Streamlit tab (``[role=tab]``) labelled ``label``; False while it is not there."""
        click = ("(() => { const b = [...document.querySelectorAll('[role=tab]')]"
                 f".find(b => b.innerText.trim() === {json.dumps(label)}); if (b) b.click(); return !!b; }})()")
        return bool(self.call("Runtime.evaluate", expression=click)["result"]["result"].get("value"))

    def text_until(self, done: Callable[[str], bool], timeout: float, *, tab: str | None = None) -> str:
        """The page's visible text once ``done(text)`` holds; ``tab``: click the tab with that
        label first, as soon as it is there."""
        text = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if tab is not None and self.click_tab(tab):
                tab = None
            text = self.text()
            if done(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"the page never got there; it says: {text[:800]!r}")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["result"]["data"]))


@contextmanager
def browse(url: str, *, width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """``url`` open in a headless Chromium tab of ``width`` x ``height`` pixels."""
    from websockets.sync.client import connect

    proc = subprocess.Popen([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
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
            ids = iter(range(1, 1_000_000))

            def call(method: str, **params: object) -> dict[str, Any]:
                i = next(ids)
                ws.send(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    reply: dict[str, Any] = json.loads(ws.recv(timeout=30))
                    if reply.get("id") == i:
                        return reply

            call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            call("Page.navigate", url=url)
            yield Page(call)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()
