"""docs/testing.md's example project cannot rot: its flow, story file and test module are
written to a fresh folder exactly as the page shows them and pytest runs them there (the
story file through the stories plugin), against the test Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")


def example_files() -> dict[str, str]:
    """Each fenced block of the example with the file name given just before it (`name`:)."""
    found = re.findall(r"^`([\w./]+)`[^\n]*:\n\n```\w+\n(.*?)```", PAGE, flags=re.S | re.M)
    return dict(found)


def test_the_example_project_of_the_testing_page_passes(redis_url: str, tmp_path: Path) -> None:
    files = example_files()
    assert set(files) == {"flows/hello.yaml", "hello.stories.yaml", "test_hello.py"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = {**os.environ, "FLOWKIT_REDIS_URL": redis_url}
    # -p: the dev checkout is on PYTHONPATH, its installed copy may predate the entry point
    # (tests/test_wheel.py proves the entry point on the built wheel)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "flowkit.testing.pytest_plugin", "-p", "no:cacheprovider",
                        "-q", "-W", "error"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "4 passed" in out, out
