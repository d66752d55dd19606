"""The demo's pieces for real: ``flowkit simulate --realtime`` and ``flowkit dashboard`` as
subprocesses on one redis-server, read by a headless Chromium; and ``flowkit dashboard``
stopped by SIGTERM leaves no Streamlit behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.dashboard.test_e2e import FLOWKIT, ROOT, free_port

# The dashboard's headline metrics (st.metric: the label, then the value, in innerText).
METRIC = r"{label}\s*\n\s*([\d,.]+|–)"


def metric(text: str, label: str) -> float | None:
    m = re.search(METRIC.format(label=re.escape(label)), text)
    if m is None or m.group(1) == "–":
        return None
    return float(m.group(1).replace(",", ""))


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not reaped yet, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


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


def page_until(chromium: str, url: str, done: Callable[[str], bool], timeout: float = 120) -> str:
    """The page's visible text once ``done(text)`` holds (headless Chromium over DevTools, real time)."""
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
            ids = iter(range(1, 100_000))

            def call(method: str, **params: object) -> dict:
                i = next(ids)
                ws.send(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    reply = json.loads(ws.recv(timeout=30))
                    if reply.get("id") == i:
                        return reply

            call("Page.navigate", url=url)
            text = ""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                text = got["result"]["result"].get("value") or ""
                if done(text):
                    return text
                time.sleep(0.5)
            raise AssertionError(f"the page never got there; it says: {text[:800]!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_demo_shows_its_traffic(redis_url: str, tmp_path: Path) -> None:
    """scripts/demo.sh's simulator and dashboard: the rates and the all-time count move."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: bash scripts/system-deps.sh installs it"
    with dashboard(redis_url, tmp_path / "dashboard.log", "examples/flows") as (_, port):
        sim_log = (tmp_path / "simulate.log").open("w")
        sim = subprocess.Popen([FLOWKIT, "simulate", "examples/flows", "--users", "30", "--realtime", "--speed", "40",
                                "--concurrency", "2", "--invalid-rate", "0.12", "--duplicate-rate", "0.05",
                                "--services", "examples.services:services", "--redis", redis_url, "--format", "json"],
                               cwd=ROOT, stdout=sim_log, stderr=subprocess.STDOUT)
        try:
            def moving(text: str) -> bool:
                return all((metric(text, label) or 0) > 0
                           for label in ("Messages / min", "Sessions started / min", "Messages in (all time)",
                                         "Sessions stored"))

            text = page_until(chromium, f"http://127.0.0.1:{port}/", moving)
        finally:
            sim.wait(timeout=300)
            sim_log.close()
        assert sim.returncode == 0, (tmp_path / "simulate.log").read_text()
        assert "Redis unreachable" not in text and "Traceback" not in text
        assert (metric(text, "Sessions stored") or 0) > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_streamlit_child(sig: signal.Signals, redis_url: str, tmp_path: Path) -> None:
    with dashboard(redis_url, tmp_path / "dashboard.log") as (proc, _):
        kids = children(proc.pid)
        assert kids and all(alive(k) for k in kids)
        os.kill(proc.pid, sig)  # to flowkit only, as a supervisor (or `kill -INT`) would
        proc.wait(timeout=30)
        wait_for(lambda: not any(alive(k) for k in kids), 30, f"Streamlit ({kids}) to stop")
        assert proc.returncode == 0, (tmp_path / "dashboard.log").read_text()
