"""``flowkit dashboard`` for real: a subprocess, its health endpoint, and a headless Chromium screenshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import image

from tests.dashboard.browser import browse, dashboard
from tests.dashboard.conftest import Traffic, registered
from tests.waiting import wait_for


def test_flowkit_dashboard_serves_the_page(traffic: Traffic, redis_url: str, tmp_path: Path) -> None:
    registered(traffic.store.client)
    with dashboard(redis_url, tmp_path / "dashboard.log") as (proc, port), browse(f"http://127.0.0.1:{port}/") as page:
        text = page.text_until(lambda t: "Live sessions" in t, timeout=60)
        shot = tmp_path / "dashboard.png"
        seen: list[tuple[int, float]] = []

        def drawn() -> bool:  # the charts and the graph draw after the text: screenshot until they are there
            page.screenshot(shot)
            px = image.imread(str(shot))[..., :3]
            assert px.shape[:2] == (1000, 1400)
            colours = np.unique((px * 255).astype(np.uint8).reshape(-1, 3), axis=0)
            dark = (px.mean(axis=2) < 0.35).mean()  # text: the title, the metrics, the tables
            seen.append((len(colours), float(dark)))
            return len(colours) > 200 and dark > 0.002

        assert "Stuck (idle > 30 min)" in text and "Redis unreachable" not in text and "Traceback" not in text
        try:
            wait_for(drawn, "the charts to be drawn", every=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; (colours, dark share) of the last screenshots: {seen[-3:]}") from None
        assert shot.is_file() and shot.stat().st_size > 10_000
        assert proc.poll() is None  # still serving


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
