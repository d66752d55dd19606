"""Light imports: the pure engine loads neither the I/O layers nor the heavy libraries
(issue 19: `import flowkit.engine` used to take ~250 ms loading networkx, graphviz and yaml)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "numpy", "networkx", "graphviz", "yaml", "redis", "httpx", "starlette", "duckdb",
         "streamlit", "typer")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(set(sys.modules) & set({HEAVY!r}))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_the_engine_imports_nothing_heavy() -> None:
    assert loaded_after("import flowkit.engine") == set()
    assert loaded_after("from flowkit.engine import step, State, UserMessage") == set()
    assert loaded_after("import flowkit") == set()


def test_the_lazy_names_still_resolve() -> None:
    import flowkit
    import flowkit.flow

    for name in flowkit.__all__:
        assert getattr(flowkit, name) is not None, name
    for name in flowkit.flow.__all__:
        assert getattr(flowkit.flow, name) is not None, name
    assert set(dir(flowkit)) >= set(flowkit.__all__)
    try:
        flowkit.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_stories_plugin_imports_nothing_heavy() -> None:
    # pytest loads it in every run of a project with flowkit installed (entry point pytest11)
    assert loaded_after("import flowkit.testing.pytest_plugin") == set()
    assert loaded_after("import flowkit.testing") == set()
    code = ("import sys, flowkit.testing.pytest_plugin; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('flowkit'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert set(out.stdout.split()) == {"flowkit", "flowkit._lazy", "flowkit.testing", "flowkit.testing.pytest_plugin"}


def test_the_testing_names_resolve_on_use() -> None:
    import flowkit.testing

    for name in flowkit.testing.__all__:
        assert getattr(flowkit.testing, name) is not None, name
    assert set(dir(flowkit.testing)) >= set(flowkit.testing.__all__)
