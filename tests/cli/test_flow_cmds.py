"""`flowkit lint`, `flowkit render` and `flowkit graph`: exit codes 0 (clean), 1 (findings),
2 (usage or missing input), output shapes, and --help for each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.flow import load_flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
runner = CliRunner()

BAD = """\
flow: bad
start: a
timeout: soon
steps:
  a:
    say: "Hi {{ who }}"
    next: nowhere
  z:
    end: completed
"""


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    return p


def test_lint_clean_examples_exit_0() -> None:
    result = runner.invoke(app, ["lint", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "6 file(s): all valid" in result.stderr


def test_lint_findings_exit_1_with_located_lines(bad: Path) -> None:
    result = runner.invoke(app, ["lint", str(bad)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{bad}:3:10: `timeout`: bad duration 'soon': use text like 30s, 10m, 1h30m, 2d (units ms, s, m, h, d) [bad-duration]",
        f"{bad}:6:17: `say` of step 'a' uses 'who', which is not a slot; declare it under `slots:` [unknown-slot]",
        f"{bad}:7:11: step 'a' goes to 'nowhere', which does not exist [unknown-target]",
        f"{bad}:8:3: step 'z' can never be reached from the start step 'a' [unreachable]",
    ]
    assert "1 file(s): 4 problems" in result.stderr


def test_lint_json_output_shape(bad: Path) -> None:
    result = runner.invoke(app, ["lint", "--format", "json", str(bad), str(EXAMPLES / "refund.yaml")])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert set(data) == {"ok", "files", "flows", "problems", "warnings"}
    assert data["ok"] is False
    assert data["files"] == [str(bad), str(EXAMPLES / "refund.yaml")]
    assert len(data["problems"]) == 4
    assert data["problems"][0] == {
        "file": str(bad), "line": 3, "column": 10, "code": "bad-duration",
        "message": "`timeout`: bad duration 'soon': use text like 30s, 10m, 1h30m, 2d (units ms, s, m, h, d)",
    }
    for p in data["problems"]:
        assert set(p) == {"file", "line", "column", "code", "message"}


def test_lint_json_clean() -> None:
    result = runner.invoke(app, ["lint", "-f", "json", str(EXAMPLES)])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["problems"] == []
    assert data["flows"] == ["book_appointment", "collect_contact", "feedback", "order_pizza", "refund", "support_triage"]
    assert len(data["files"]) == 6


def test_lint_json_file_with_errors(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    p.write_text('{"flow": "j", "start": "a",\n "steps": {"a": {"end": "done"}}}')
    result = runner.invoke(app, ["lint", "-f", "json", str(p)])
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert (problem["line"], problem["column"], problem["code"]) == (2, 26, "bad-value")


def test_lint_across_files_reports_missing_sub_flow(tmp_path: Path) -> None:
    p = tmp_path / "appt.yaml"
    p.write_text((EXAMPLES / "book_appointment.yaml").read_text())
    result = runner.invoke(app, ["lint", str(p)])
    assert result.exit_code == 1
    assert "[unknown-flow]" in result.stdout and "collect_contact" in result.stdout


@pytest.mark.parametrize("args", [
    ["lint", "missing.yaml"],
    ["lint", str(EXAMPLES / "refund.yaml"), "missing.yaml"],
    ["lint"],
    ["lint", "--format", "xml", str(EXAMPLES)],
    ["render", "missing.yaml", "-o", "x.svg"],
    ["graph", "missing.yaml"],
    ["graph", "--format", "csv", str(EXAMPLES / "refund.yaml")],
])
def test_usage_and_missing_input_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_lint_folder_without_flow_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    result = runner.invoke(app, ["lint", str(tmp_path)])
    assert result.exit_code == 2
    assert "no flow files found" in result.stderr


@pytest.mark.parametrize("command", ["lint", "render", "graph"])
def test_help_for_each_flow_command(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"Usage: flowkit {command}" in result.stdout or f"Usage: root {command}" in result.stdout
    assert {"lint": "file:line:column", "render": "graphviz", "graph": "nodes and edges"}[command] in result.stdout
    assert "--format" in result.stdout or command == "render"


def test_graph_json_and_text() -> None:
    pizza = EXAMPLES / "order_pizza.yaml"
    flow = load_flow(pizza)
    result = runner.invoke(app, ["graph", str(pizza)])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["flow"] == "order_pizza" and data["content_hash"] == flow.content_hash
    assert [n["id"] for n in data["nodes"]] == list(flow.steps)
    result = runner.invoke(app, ["graph", "-f", "text", str(pizza)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["welcome", "say"]
    assert "ask_size -> upsell  [if size == 'large']" in lines
    assert "place_order -> sorry  [on_timeout]" in lines


def test_graph_of_an_invalid_flow_exit_1(bad: Path) -> None:
    result = runner.invoke(app, ["graph", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:7:11:" in result.stderr


def test_real_entry_point_exit_codes(bad: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "flowkit"
    env = {**os.environ, "NO_COLOR": "1"}
    ok = subprocess.run([str(exe), "lint", str(EXAMPLES)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    found = subprocess.run([str(exe), "lint", str(bad)], capture_output=True, text=True, env=env)
    assert found.returncode == 1 and f"{bad}:7:11:" in found.stdout
    missing = subprocess.run([str(exe), "lint", str(tmp_path / "nope.yaml")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    out = tmp_path / "t.svg"
    drawn = subprocess.run([str(exe), "render", str(EXAMPLES / "support_triage.yaml"), "-o", str(out)],
                           capture_output=True, text=True, env=env)
    assert drawn.returncode == 0 and out.read_text().lstrip().startswith("<?xml")
