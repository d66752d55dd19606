"""The demo's pieces for real: ``flowkit simulate --realtime`` and ``flowkit dashboard`` as
subprocesses on one redis-server, read by a headless Chromium; and ``flowkit dashboard``
stopped by SIGTERM leaves no Streamlit behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.dashboard.browser import FLOWKIT, ROOT, browse, chromium, dashboard, wait_for

# The dashboard's headline metrics (st.metric: the label, then the value, in innerText).
METRIC = r"{label}\s*\n\s*([\d,.]+|–)"


def metric(text: str, label: str) -> float | None:
    m = re.search(METRIC.format(label=re.escape(label)), text)
    if m is None or m.group(1) == "–":
        return None
    return float(m.group(1).replace(",", ""))


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


def test_the_demo_shows_its_traffic(redis_url: str, tmp_path: Path) -> None:
    """scripts/demo.sh's simulator and dashboard: the rates and the all-time count move."""
    chromium()  # (fails early, with the install hint, when it is missing)
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

            with browse(f"http://127.0.0.1:{port}/") as page:
                text = page.text_until(moving, timeout=120)
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
