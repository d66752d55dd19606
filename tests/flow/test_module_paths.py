"""The modules split out of the flow model, the export format and the anomaly checks keep
their old import paths: every name is still importable where users found it, it is the same
object as in its new home, and a flow pickled when the classes lived in flowkit.flow.model
still loads (docs/decisions.md, "Modules with one job")."""

from __future__ import annotations

import ast
import importlib
import pickle
import textwrap
from pathlib import Path

import pytest

from flowkit.flow import parse_flow

# Split module -> the modules its code moved to (all of their names stay importable from it).
FACADES = {
    "flowkit.flow.model": ("flowkit.flow.location", "flowkit.flow.durations", "flowkit.flow.specs",
                           "flowkit.flow.messages", "flowkit.flow.steps"),
    "flowkit.history.columns": ("flowkit.history.schema", "flowkit.history.normalizing", "flowkit.history.reading",
                                "flowkit.history.writing"),
}
# What flowkit.history.anomalies offered before its report and checks moved out.
ANOMALIES_NAMES = ("ANALYSIS_COLUMNS", "CODES", "DEFAULT_RETRY_THRESHOLD", "DEFAULT_STUCK_AFTER", "ENGINES",
                   "AnalysisReport", "Anomaly", "analyze", "find_anomalies", "held_limits", "held_not_stuck",
                   "report_frame", "resolve_engine")


def defined_in(module: str) -> list[str]:
    """The public names a module defines itself (not those it imports)."""
    tree = ast.parse(Path(importlib.import_module(module).__file__ or "").read_text(encoding="utf-8"))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


@pytest.mark.parametrize("facade", sorted(FACADES))
def test_every_name_of_a_split_module_is_still_importable_from_its_old_path(facade: str) -> None:
    old = importlib.import_module(facade)
    for part in FACADES[facade]:
        new = importlib.import_module(part)
        names = defined_in(part)
        assert names, part
        for name in names:
            assert getattr(old, name) is getattr(new, name), f"{facade}.{name} is not {part}.{name}"
            assert name in old.__all__, f"{name} of {part} is missing from {facade}.__all__"


def test_the_anomaly_names_are_still_importable_from_flowkit_history_anomalies() -> None:
    anomalies = importlib.import_module("flowkit.history.anomalies")
    for name in ANOMALIES_NAMES:
        assert getattr(anomalies, name) is not None, name
        assert name in anomalies.__all__, name


def test_a_flow_pickled_when_its_classes_lived_in_the_model_module_still_loads() -> None:
    flow = parse_flow(textwrap.dedent("""\
        flow: t
        start: a
        steps:
          a:
            say: {text: "hi", buttons: [yes, no]}
            next: b
          b:
            end: completed
        """))
    data = pickle.dumps(flow, protocol=0)  # protocol 0 names each class as "module\\nname\\n"
    assert b"flowkit.flow.steps\n" in data and b"flowkit.flow.messages\n" in data
    before_split = data.replace(b"flowkit.flow.steps\n", b"flowkit.flow.model\n").replace(
        b"flowkit.flow.messages\n", b"flowkit.flow.model\n")
    loaded = pickle.loads(before_split)  # noqa: S301 - our own bytes
    assert loaded == flow
    assert loaded.content_hash == flow.content_hash
