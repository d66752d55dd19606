"""docs/cli.md is the CLI reference, generated from the Typer app: it cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def generate(out: Path) -> str:
    # the same command as `make cli-docs`
    subprocess.run([sys.executable, "-m", "typer", "flowkit.cli", "utils", "docs", "--name", "flowkit",
                    "--title", "flowkit CLI reference", "--output", str(out)],
                   capture_output=True, text=True, check=True, cwd=ROOT)
    return out.read_text(encoding="utf-8")


def test_cli_reference_is_current(tmp_path: Path) -> None:
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == generate(tmp_path / "cli.md"), "docs/cli.md is out of date: run `make cli-docs` and commit it"


def test_reference_lists_every_command() -> None:
    from flowkit.cli import app

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    names += [g.name or "" for g in app.registered_groups]
    assert names and all(f"`flowkit {n}" in text for n in names), names
