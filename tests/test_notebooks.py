"""The notebooks in ``notebooks/`` run top to bottom on a fresh kernel, use only the public
``flowkit`` API, bring their own Redis (and stop it), and are stored without outputs.

Each notebook is executed with nbclient on the ``python3`` kernel of this interpreter (the
venv ``make test`` built); a cell that raises fails the test with that cell's source and
traceback. The kernelspec ships with ipykernel; on an install without it, the fixture adds
it to the venv (``python -m ipykernel install --sys-prefix``).
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {"01_design_flows.ipynb", "02_simulate.ipynb", "03_analyze_history.ipynb", "04_debug_a_session.ipynb",
            "05_experiments_and_stories.ipynb"}
PUBLIC_MODULES = {"flowkit", "flowkit.flow", "flowkit.store", "flowkit.runtime", "flowkit.sim", "flowkit.history",
                  "flowkit.check", "flowkit.testing"}
KERNEL = "python3"
# A guard against a hung kernel, not a performance claim: generous, so a busy machine passes.
CELL_TIMEOUT = 900
# nbval (below) is checked on the quickest notebooks: test_runs_top_to_bottom already runs every
# notebook, and running them all twice doubled the suite's slowest part.
NBVAL_NOTEBOOKS = [p for p in NOTEBOOKS if p.name in ("01_design_flows.ipynb", "04_debug_a_session.ipynb")]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """The ``python3`` kernelspec, installed into this interpreter's prefix if missing, and
    checked to start this interpreter (where flowkit is installed)."""
    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(KERNEL)
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True,
                       capture_output=True, text=True)
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    exe = spec.argv[0]
    # jupyter_client runs a bare "python"/"python3" as sys.executable; an absolute path must be ours.
    assert exe in ("python", "python3") or Path(exe).resolve() == Path(sys.executable).resolve(), (
        f"kernelspec {KERNEL!r} ({spec.resource_dir}) starts {exe}, not {sys.executable}; "
        f"run `{sys.executable} -m ipykernel install --sys-prefix` or remove that kernelspec")
    return KERNEL


def test_the_four_notebooks_are_there() -> None:
    assert EXPECTED <= {p.name for p in NOTEBOOKS}, sorted(p.name for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_uses_only_the_public_api(path: Path) -> None:
    """Imports of flowkit come from the public packages, and only names they export."""
    bad = []
    for cell in _code_cells(path):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "flowkit":
                if node.module not in PUBLIC_MODULES:
                    bad.append(f"from {node.module} import ...")
                    continue
                exported = set(getattr(importlib.import_module(node.module), "__all__", ()))
                bad += [f"{node.module}.{a.name}" for a in node.names if a.name not in exported]
            elif isinstance(node, ast.Import):
                bad += [a.name for a in node.names if a.name.startswith("flowkit") and a.name not in PUBLIC_MODULES]
    assert not bad, f"{path.name} uses non-public flowkit API: {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_own_redis_is_stopped_in_the_last_cell(path: Path) -> None:
    cells = _code_cells(path)
    source = "\n".join(c.source for c in cells)
    if "RedisServer(" not in source:
        assert "connect(" not in source, f"{path.name} connects to a Redis it did not start"
        return
    assert "server.stop()" in cells[-1].source, f"{path.name}: the last cell must stop the Redis the notebook started"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_runs_top_to_bottom(path: Path, kernel_name: str) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    failure = None
    try:
        client.execute()
    except CellExecutionError as exc:  # its text holds the failing cell's source and traceback
        failure = ANSI.sub("", str(exc))
    if failure is not None:
        pytest.fail(f"{path.name}: a cell failed\n{failure}", pytrace=False)
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in executed), f"{path.name}: not every cell ran"
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors}"


def test_nbval_lax_passes(kernel_name: str, tmp_path: Path) -> None:
    """The notebooks under nbval (`pytest --nbval-lax notebooks/`), the check analysts know
    from Jupyter projects: every cell runs without error on a fresh kernel (two of them
    here; every notebook runs in test_runs_top_to_bottom)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name", kernel_name,
                        "-p", "no:cacheprovider", "-q", "-o", "addopts=", "-W", "ignore::DeprecationWarning",
                        "--rootdir", str(tmp_path), *map(str, NBVAL_NOTEBOOKS)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    tail = ANSI.sub("", r.stdout)[-4000:]
    assert r.returncode == 0, tail
    assert len(NBVAL_NOTEBOOKS) == 2
    assert re.search(rf"\b{sum(len(_code_cells(p)) for p in NBVAL_NOTEBOOKS)} passed\b", tail), tail
