"""Every public function of flowkit.flow.graph on small flows."""

from __future__ import annotations

import textwrap

import networkx as nx

from flowkit.flow import Flow, edge_list, graph_json, parse_flow, to_networkx
from flowkit.flow.graph import (
    EDGE_KINDS,
    dead_ends,
    edge_set,
    end_steps,
    loops_without_exit,
    reachable,
    shortest_path_to_end,
    simple_paths,
    unreachable,
)


def flow(text: str) -> Flow:
    """Parse without the whole-flow checks, so broken shapes can be asked about."""
    return parse_flow(textwrap.dedent(text), "g.yaml", validate=False)


# a -> ask -(if)-> big -> done ; ask -> small -> done ; ask on_fail -> help (handoff)
# call: svc on_error/on_timeout -> oops ; sub-flow return
SHOP = flow("""\
    flow: shop
    start: hello
    slots:
      n: int
    steps:
      hello:
        say: hi
        next: ask
      ask:
        ask: "n?"
        input: int
        save: n
        on_fail: help
        next:
          - if: "n > 5"
            goto: big
          - goto: small
      big:
        call: orders.big
        on_error: oops
        on_timeout: oops
        next: done
      small:
        flow: other
        next: done
      done:
        end: completed
      oops:
        say: sorry
        end: failed
      help:
        end: handoff
    """)


def test_to_networkx_nodes_and_attributes() -> None:
    g = to_networkx(SHOP)
    assert isinstance(g, nx.DiGraph)
    assert g.graph == {"name": "shop", "version": SHOP.version_id}
    assert set(g.nodes) == set(SHOP.steps)
    assert g.nodes["hello"] == {"kind": "say", "start": True, "end": None, "waits": False, "text": "hi"}
    assert g.nodes["ask"]["kind"] == "ask" and g.nodes["ask"]["waits"] is True and g.nodes["ask"]["text"] == "n?"
    assert g.nodes["big"]["text"] == "orders.big" and g.nodes["big"]["waits"] is True
    assert g.nodes["small"]["text"] == "sub-flow other"
    assert g.nodes["oops"]["end"] == "failed" and g.nodes["done"]["end"] == "completed"
    assert g.nodes["done"]["start"] is False


def test_to_networkx_edges_merge_labels() -> None:
    g = to_networkx(SHOP)
    assert g.edges["ask", "ask"]["labels"] == ["retry"]
    assert g.edges["ask", "big"]["labels"] == ["if n > 5"] and g.edges["ask", "big"]["kinds"] == ["branch"]
    assert g.edges["big", "oops"]["labels"] == ["on_error", "on_timeout"]
    assert g.edges["big", "oops"]["label"] == "on_error | on_timeout"
    assert g.edges["small", "done"]["kinds"] == ["return"]
    assert g.edges["ask", "help"]["kinds"] == ["on_fail"]
    assert {k for _, _, d in g.edges(data=True) for k in d["kinds"]} <= set(EDGE_KINDS)


def test_edge_set_and_edge_list() -> None:
    assert edge_set(SHOP) == {
        ("hello", "ask"), ("ask", "ask"), ("ask", "big"), ("ask", "small"), ("ask", "help"),
        ("big", "done"), ("big", "oops"), ("small", "done"),
    }
    rows = edge_list(SHOP)
    assert rows[:3] == [
        {"source": "hello", "target": "ask", "label": "next", "kind": "next"},
        {"source": "ask", "target": "ask", "label": "retry", "kind": "retry"},
        {"source": "ask", "target": "big", "label": "if n > 5", "kind": "branch"},
    ]
    assert {"source": "big", "target": "oops", "label": "on_timeout", "kind": "on_timeout"} in rows
    assert len(rows) == 9  # one row per label: big -> oops twice


def test_end_steps_reachable_unreachable() -> None:
    assert end_steps(SHOP) == ["done", "oops", "help"]
    assert reachable(SHOP) == set(SHOP.steps)
    assert unreachable(SHOP) == []
    f = flow("""\
        flow: f
        start: a
        steps:
          a: {say: x, next: z}
          b: {say: lost, next: c}
          c: {say: lost too, next: z}
          z: {end: completed}
        """)
    assert reachable(f) == {"a", "z"}
    assert unreachable(f) == ["b", "c"]


def test_dead_ends_and_loops_without_exit() -> None:
    f = flow("""\
        flow: f
        start: a
        steps:
          a:
            next:
              - if: "true"
                goto: loop1
              - goto: z
          loop1: {say: one, next: loop2}
          loop2: {say: two, next: loop1}
          into: {say: in, next: loop1}
          q:
            ask: again?
            input: text
            next: q
          z: {end: completed}
        """)
    assert dead_ends(f) == ["loop1", "loop2", "into", "q"]
    assert loops_without_exit(f) == [["loop1", "loop2"], ["q"]]
    assert dead_ends(SHOP) == [] and loops_without_exit(SHOP) == []


def test_an_ask_with_only_its_retry_self_edge_is_no_loop() -> None:
    f = flow("""\
        flow: f
        start: q
        steps:
          q: {ask: "?", input: text, next: z}
          z: {end: completed}
        """)
    assert loops_without_exit(f) == [] and dead_ends(f) == []


def test_simple_paths_shortest_first_with_limit_and_cutoff() -> None:
    paths = simple_paths(SHOP)
    assert paths[0] == ["hello", "ask", "help"]
    assert [len(p) for p in paths] == sorted(len(p) for p in paths)
    assert sorted(map(tuple, paths)) == sorted([
        ("hello", "ask", "help"),
        ("hello", "ask", "big", "done"),
        ("hello", "ask", "big", "oops"),
        ("hello", "ask", "small", "done"),
    ])
    assert simple_paths(SHOP, limit=2) == paths[:2]
    assert simple_paths(SHOP, cutoff=2) == [["hello", "ask", "help"]]
    assert simple_paths(SHOP, cutoff=1) == []
    assert len(simple_paths(SHOP, cutoff=3)) == 4


def test_simple_paths_cutoff_keeps_shortest_first_on_a_wide_flow() -> None:
    # many long detours listed before the short way: the cutoff must still return the short way first
    steps = {"s": {"next": [*({"if": f"x == {i}", "goto": f"d{i}_0"} for i in range(5)), {"goto": "z"}]}}
    for i in range(5):
        for j in range(3):
            steps[f"d{i}_{j}"] = {"say": "detour", "next": f"d{i}_{j + 1}" if j < 2 else "z"}
    steps["z"] = {"end": "completed"}
    from flowkit.flow import flow_from_dict

    f = flow_from_dict({"flow": "wide", "start": "s", "slots": {"x": "int"}, "steps": steps})
    assert simple_paths(f, limit=1, cutoff=10) == [["s", "z"]]
    assert simple_paths(f, limit=3, cutoff=10)[0] == ["s", "z"]


def test_shortest_path_to_end() -> None:
    assert shortest_path_to_end(SHOP) == ["hello", "ask", "help"]
    assert shortest_path_to_end(SHOP, "big") in (["big", "done"], ["big", "oops"])
    assert shortest_path_to_end(SHOP, "done") == ["done"]
    assert shortest_path_to_end(SHOP, "no_such_step") is None
    stuck = flow("""\
        flow: f
        start: a
        steps:
          a: {say: x, next: a}
          z: {end: completed}
        """)
    assert shortest_path_to_end(stuck) is None
    assert shortest_path_to_end(stuck, "a") is None
    assert simple_paths(stuck) == []


def test_no_end_step_and_unknown_targets_are_left_out() -> None:
    f = flow("""\
        flow: f
        start: a
        steps:
          a: {say: x, next: ghost}
        """)
    assert end_steps(f) == [] and simple_paths(f) == [] and shortest_path_to_end(f) is None
    assert set(to_networkx(f).nodes) == {"a"}
    assert edge_set(f) == frozenset()
    assert edge_list(f) == [{"source": "a", "target": "ghost", "label": "next", "kind": "next"}]
    assert graph_json(f)["edges"] == []
    assert dead_ends(f) == ["a"]


def test_graph_json_shape() -> None:
    data = graph_json(SHOP)
    assert set(data) == {"flow", "version", "content_hash", "start", "nodes", "edges"}
    assert data["flow"] == "shop" and data["start"] == "hello" and data["content_hash"] == SHOP.content_hash
    assert [n["id"] for n in data["nodes"]] == list(SHOP.steps)
    assert data["nodes"][0] == {"id": "hello", "kind": "say", "start": True, "end": None, "waits": False, "text": "hi"}
    assert data["edges"] == edge_list(SHOP)
    import json

    assert json.loads(json.dumps(data)) == data
