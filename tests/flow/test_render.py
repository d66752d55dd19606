"""Drawing flows with graphviz (``dot`` is installed): every example renders to SVG through
the API and the CLI, overlays show up, and flow texts cannot break the DOT syntax."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.flow import load_flow, parse_flow, render, render_to_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
FILES = sorted(EXAMPLES.glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def svg_titles(svg: str) -> set[str]:
    root = ET.fromstring(svg)
    return {"".join(t.itertext()) for t in root.iter(f"{SVG}title")}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_example_renders_to_svg_via_api(path: Path, tmp_path: Path) -> None:
    flow = load_flow(path)
    out = render_to_file(flow, tmp_path / "deep" / f"{path.stem}.svg")
    assert out == tmp_path / "deep" / f"{path.stem}.svg"
    svg = out.read_text()
    titles = svg_titles(svg)
    assert set(flow.steps) <= titles  # one drawn node per step
    edges = {t for t in titles if "->" in t}
    from flowkit.flow.graph import edge_set

    assert {f"{a}->{b}" for a, b in edge_set(flow)} | {f"__start__->{flow.start}"} == edges
    assert f"{flow.name} (version {flow.version_id})" in svg_texts(svg)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_example_renders_to_svg_via_cli(path: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{path.stem}.svg"
    result = runner.invoke(app, ["render", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    flow = load_flow(path)
    assert set(flow.steps) <= svg_titles(out.read_text())


@pytest.mark.parametrize("suffix", [".dot", ".gv", ".png", ".pdf"])
def test_other_output_formats(suffix: str, tmp_path: Path) -> None:
    flow = load_flow(EXAMPLES / "order_pizza.yaml")
    out = render_to_file(flow, tmp_path / f"pizza{suffix}")
    data = out.read_bytes()
    if suffix in (".dot", ".gv"):
        assert data.decode().startswith("// order_pizza") and "digraph order_pizza {" in data.decode()
    elif suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert data[:5] == b"%PDF-"


def test_render_returns_a_digraph_with_styles() -> None:
    flow = load_flow(EXAMPLES / "order_pizza.yaml")
    dot = render(flow)
    assert isinstance(dot, graphviz.Digraph)
    src = dot.source
    assert 'handoff [label="handoff\\n[end: handoff]" fillcolor="#fde3b0"' in src
    assert 'ask_size -> ask_size [label=retry color="#999999" style=dashed]' in src
    assert "place_order -> sorry [label=\"on_error | on_timeout\"" in src
    assert 'ask_size -> upsell [label="if size == \'large\'"]' in src
    assert "welcome -> ask_size [label=\"\"]" in src


def test_overlays_for_analyses() -> None:
    flow = load_flow(EXAMPLES / "order_pizza.yaml")
    dot = render(flow, node_labels={"ask_size": "120 sessions"}, node_colours={"ask_size": "#ff0000"},
                 edge_labels={("ask_size", "upsell"): "40%", ("welcome", "ask_size"): "100%"},
                 edge_widths={("ask_size", "upsell"): 3.14159})
    svg = dot.pipe(format="svg").decode()
    texts = svg_texts(svg)
    assert "120 sessions" in texts and "40%" in " ".join(texts) and "100%" in texts
    assert 'fill="#ff0000"' in svg
    assert "penwidth=3.14" in dot.source


def test_texts_cannot_break_the_drawing() -> None:
    flow = parse_flow(r'''
flow: tricky
start: node
steps:
  node: {say: 'ends with a backslash \', next: edge}
  edge: {say: '"quoted" <b>bold</b> & \N \l a\"b', next: graph}
  graph:
    next:
      - if: "'a\\\\' != 'b'"
        goto: strict
      - goto: strict
  strict: {end: completed}
''')
    svg = render(flow, node_labels={"node": "<html-like>"}).pipe(format="svg").decode()
    texts = svg_texts(svg)
    assert "ends with a backslash \\" in texts
    assert '"quoted" <b>bold</b> & \\N \\l a\\"b' in texts
    assert "<html-like>" in texts
    assert {"node", "edge", "graph", "strict"} <= svg_titles(svg)


def test_cli_render_errors(tmp_path: Path) -> None:
    pizza = EXAMPLES / "order_pizza.yaml"
    result = runner.invoke(app, ["render", str(pizza), "-o", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and "unsupported output type '.txt'" in result.output
    assert not (tmp_path / "x.txt").exists()
    result = runner.invoke(app, ["render", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "x.svg")])
    assert result.exit_code == 2 and "no such file" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: b\nstart: a\nsteps:\n  a: {say: hi, next: nowhere}\n")
    result = runner.invoke(app, ["render", str(bad), "-o", str(tmp_path / "b.svg")])
    assert result.exit_code == 1
    assert f"{bad}:4:22: step 'a' goes to 'nowhere'" in result.output
    assert not (tmp_path / "b.svg").exists()
    result = runner.invoke(app, ["render", str(pizza)])
    assert result.exit_code == 2 and "--out" in result.output
