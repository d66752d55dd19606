"""The shipped example flows load, validate together, and draw."""

from pathlib import Path

import graphviz
import pytest

from flowkit.flow import graph_json, load_flow, load_flows, render
from flowkit.flow.graph import dead_ends, reachable, to_networkx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_there_are_at_least_four_realistic_examples() -> None:
    assert len(FILES) >= 4


def test_examples_load_together_with_sub_flow_references() -> None:
    flows = load_flows(EXAMPLES)
    assert {"order_pizza", "book_appointment", "support_triage", "refund", "collect_contact"} <= set(flows)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_step_reachable_and_can_finish(path: Path) -> None:
    flow = load_flow(path)
    assert reachable(flow) == set(flow.steps)
    assert dead_ends(flow) == []
    g = to_networkx(flow)
    assert g.nodes[flow.start]["start"] is True


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_render_and_graph_json(path: Path) -> None:
    flow = load_flow(path)
    dot = render(flow)
    assert isinstance(dot, graphviz.Digraph)
    svg = dot.pipe(format="svg").decode()
    assert "<svg" in svg and flow.start in svg
    data = graph_json(flow)
    assert {n["id"] for n in data["nodes"]} == set(flow.steps)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_yaml_round_trip_keeps_content_hash(path: Path) -> None:
    from flowkit.flow import parse_flow

    flow = load_flow(path)
    again = parse_flow(flow.to_yaml(), "roundtrip.yaml")
    assert again == flow
    assert again.content_hash == flow.content_hash
