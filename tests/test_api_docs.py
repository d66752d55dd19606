"""The API reference builds from the docstrings with no warning (pdoc, `make api-docs`), and
every example written in a docstring (``>>>``) runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import flowkit

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_reference_builds_without_a_warning(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-W", "error", str(ROOT / "scripts" / "api_docs.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    for page in ("flowkit.html", "flowkit/engine.html", "flowkit/store.html", "flowkit/runtime.html",
                 "flowkit/testing/stories.html", "flowkit/store/find.html", "flowkit/history.html"):
        assert page in pages, sorted(pages)


def test_docstring_examples_run() -> None:
    ran = 0
    for info in pkgutil.walk_packages(flowkit.__path__, "flowkit."):
        spec = importlib.util.find_spec(info.name)
        if spec is None or spec.origin is None or ">>>" not in Path(spec.origin).read_text(encoding="utf-8"):
            continue
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL)
        assert result.failed == 0, f"{info.name}: {result.failed} docstring example(s) failed (run it with -v)"
        ran += result.attempted
    assert ran >= 6, f"only {ran} docstring examples ran"
