"""What an installed flowkit can do without the source tree: the wheel carries its Lua
scripts and the example flows that synthetic histories run on."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_an_installed_wheel_generates_synthetic_history(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    wheel = next((tmp_path / "dist").glob("flowkit-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert {f"flowkit/store/{p.name}" for p in (ROOT / "flowkit" / "store").glob("*.lua")} <= set(names)
    assert "flowkit/store/commit.lua" in names
    assert {n for n in names if n.startswith("flowkit/history/example_flows/")} == {
        f"flowkit/history/example_flows/{p.name}" for p in (ROOT / "examples" / "flows").glob("*.yaml")}
    # Run from elsewhere with the unpacked wheel first on the path (before the editable install).
    code = ("import flowkit, sys; from pathlib import Path; from flowkit.history import generate; "
            f"assert Path(flowkit.__file__).is_relative_to({str(site)!r}), flowkit.__file__; "
            "s = generate(sessions=20, seed=3, per_code=0); print(len(s.history))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(site)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout.strip()) > 20
