"""The engine is pure about flows too (issue 19): it looks sub-flows up in a FlowSet resolved
beforehand, says FlowNeeded for one it lacks, and imports nothing that can do I/O."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit.engine import FlowSet, Start, State, Transition, UserMessage, step
from flowkit.engine.flowset import pinned
from flowkit.errors import EngineError, FlowNeeded, UnknownFlowError
from flowkit.flow import flow_from_dict

from .helpers import FLOWS, T0

ROOT, CONTACT = FLOWS["book_appointment"], FLOWS["collect_contact"]
TEXTS = ["dental", "2026-12-01", "09:00", "Ana Lima", "ana@example.com", "yes"]
ENGINE = Path(__file__).resolve().parents[2] / "flowkit" / "engine"


def run(flows: object) -> list[Transition]:
    """The booking conversation through its collect_contact sub-flow, with ``flows`` as given."""
    state: State | None = None
    out = []
    events = [Start(flow="book_appointment"), *(UserMessage(text=t, message_id=f"m{i}") for i, t in enumerate(TEXTS))]
    for i, event in enumerate(events):
        t = step(ROOT, state, event, T0 + i * 1000, flows=flows, session_id="s1")  # type: ignore[arg-type]
        state = t.state
        out.append(t)
    return out


def test_a_flowset_runs_sub_flows_exactly_like_a_mapping() -> None:
    with_set = run(FlowSet([ROOT, CONTACT]))
    assert with_set == run(FLOWS)
    assert any(t.state.stack for t in with_set) and with_set[-1].state.slots["email"] == "ana@example.com"


def test_a_missing_sub_flow_is_asked_for_and_a_rerun_with_it_gives_the_same_transition() -> None:
    ts = run(FLOWS)
    before = ts[2].state  # the next answer enters the collect_contact sub-flow
    event = UserMessage(text="09:00", message_id="m2")
    with pytest.raises(FlowNeeded) as need:
        step(ROOT, before, event, T0 + 3000, flows=FlowSet([ROOT]), session_id="s1")
    assert (need.value.name, need.value.version) == ("collect_contact", None)
    assert "FlowSet" in str(need.value) and isinstance(need.value, EngineError)
    resolved = FlowSet([ROOT]).with_resolved((need.value.name, need.value.version), CONTACT)
    assert step(ROOT, before, event, T0 + 3000, flows=resolved, session_id="s1") == ts[3]
    # inside the sub-flow, the pinned version is all the engine needs
    inside = ts[3].state
    assert pinned(inside) == (("collect_contact", CONTACT.version_id),)
    only_pinned = FlowSet().with_resolved(pinned(inside)[0], CONTACT)
    assert step(ROOT, inside, UserMessage(text="Ana Lima", message_id="m3"), T0 + 4000,
                flows=only_pinned, session_id="s1") == ts[4]


def test_a_pinned_version_never_stands_in_for_the_latest() -> None:
    newer = flow_from_dict({**CONTACT.to_dict(), "version": "99"})
    flows = FlowSet().with_resolved(("collect_contact", CONTACT.version_id), CONTACT)
    assert flows.find("collect_contact", None) is None  # entering a new sub-flow asks for the latest
    flows = flows.with_resolved(("collect_contact", None), newer)
    assert flows.resolve("collect_contact", None) is newer and flows.resolve("collect_contact", CONTACT.version_id) is CONTACT


def test_a_sub_flow_known_to_be_missing_is_an_unknown_flow_not_a_request() -> None:
    before = run(FLOWS)[2].state
    flows = FlowSet([ROOT]).with_missing(("collect_contact", None), "no flow named 'collect_contact' is registered")
    with pytest.raises(UnknownFlowError, match="collect_contact"):
        step(ROOT, before, UserMessage(text="09:00", message_id="m2"), T0 + 3000, flows=flows, session_id="s1")


def test_the_engine_package_imports_no_io_layer() -> None:
    for path in sorted(ENGINE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("flowkit.store", "flowkit.runtime", "flowkit.web", "redis", "httpx")), \
                    f"{path.name} imports {name}"
    code = ("import sys, flowkit.engine, flowkit.engine.flowset, flowkit.engine.transition\n"
            "print(' '.join(m for m in sys.modules if m.startswith(('flowkit.store', 'flowkit.runtime', 'redis'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == []
