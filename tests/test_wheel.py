"""What an installed flowkit can do without the source tree: the wheel carries its Lua
scripts and the example flows that synthetic histories run on, and declares the stories
plugin to pytest (entry point ``pytest11``), so a project's story files are collected with
no conftest. The wheel is built once for the module and unpacked into a "site" folder that
goes first on PYTHONPATH: there Python finds flowkit and its dist-info (entry points
included) before the dev venv's editable install."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "flowkit.testing.pytest_plugin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(the unpacked wheel's folder, the wheel's file names)."""
    tmp = tmp_path_factory.mktemp("wheel")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    built = next((tmp / "dist").glob("flowkit-*.whl"))
    site = tmp / "site"
    with zipfile.ZipFile(built) as z:
        names = z.namelist()
        z.extractall(site)
    return site, names


def test_an_installed_wheel_generates_synthetic_history(wheel: tuple[Path, list[str]], tmp_path: Path) -> None:
    site, names = wheel
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


def test_the_wheel_declares_the_stories_plugin_to_pytest(wheel: tuple[Path, list[str]]) -> None:
    site, _ = wheel
    [dist] = importlib.metadata.distributions(path=[str(site)])
    assert dist.metadata["Name"] == "flowkit"
    eps = [(ep.name, ep.value) for ep in dist.entry_points if ep.group == "pytest11"]
    # named after the module, so `-p flowkit.testing.pytest_plugin` and the entry point are one plugin
    assert eps == [(PLUGIN, PLUGIN)]


STORY_PROJECT = {
    "flows/hello.yaml": """\
        flow: hello
        version: "1"
        start: ask_name
        triggers: [hi]
        slots:
          name: {type: text}
        steps:
          ask_name:
            ask: "Hello! What is your name?"
            input: {type: text}
            save: name
            next: done
          done:
            say: "Nice to meet you, {{ name }}."
            end: completed
        """,
    "hello.stories.yaml": """\
        flows: flows
        stories:
          - name: greets by name
            turns:
              - {user: hi, bot: "What is your name?"}
              - {user: Ada, bot: "Nice to meet you, Ada."}
            slots: {name: Ada}
            status: completed
          - name: expects what the flow never says
            turns:
              - {user: hi, bot: "Goodbye"}
        """,
}


def run_pytest(project: Path, site: Path, redis_url: str, *args: str) -> tuple[int, str]:
    """pytest in ``project`` with the unpacked wheel first on the path and no plugin named on the command line."""
    env = {**os.environ, "PYTHONPATH": str(site), "FLOWKIT_REDIS_URL": redis_url}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=project, env=env,
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_pytest_collects_a_bare_story_file_through_the_entry_point(wheel: tuple[Path, list[str]], redis_url: str,
                                                                   tmp_path: Path) -> None:
    site, _ = wheel
    for rel, text in STORY_PROJECT.items():  # no conftest.py, no pytest configuration, no test module
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    code, out = run_pytest(tmp_path, site, redis_url)
    assert code == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "story 'expects what the flow never says'" in out and "expected a message containing 'Goodbye'" in out
    # Naming the plugin as well loads it once, not twice (the entry point has the module's name) ...
    code, out = run_pytest(tmp_path, site, redis_url, "-p", PLUGIN, "-k", "greets")
    assert code == 0 and "1 passed" in out, out
    # ... and the usual `no:` switches it off: the story file is then no test at all.
    code, out = run_pytest(tmp_path, site, redis_url, "-p", f"no:{PLUGIN}")
    assert code == 5 and "no tests ran" in out, out


def test_the_installed_plugin_imports_nothing_heavy_in_a_run_without_stories(wheel: tuple[Path, list[str]],
                                                                             redis_url: str, tmp_path: Path) -> None:
    site, _ = wheel
    (tmp_path / "test_light.py").write_text(textwrap.dedent(f"""\
        import sys
        from pathlib import Path


        def test_only_the_plugin_is_loaded(pytestconfig):
            plugin = pytestconfig.pluginmanager.get_plugin({PLUGIN!r})
            assert plugin is not None and Path(plugin.__file__).is_relative_to({str(site)!r})
            heavy = {{"yaml", "redis", "httpx", "starlette", "networkx", "flowkit.runtime", "flowkit.store",
                     "flowkit.engine", "flowkit.testing.stories", "flowkit.testing.coverage"}}
            assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))
        """))
    code, out = run_pytest(tmp_path, site, redis_url)
    assert code == 0 and "1 passed" in out, out
