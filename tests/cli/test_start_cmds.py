"""`flowkit start` and `flowkit agent`: real subprocesses, real Redis, the Graph API imitation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit.engine import UserMessage
from flowkit.flow import load_flows
from flowkit.runtime import Runtime
from flowkit.store import Store
from flowkit.testing.fake_graph import FakeGraphAPI

ROOT = Path(__file__).resolve().parents[2]
FLOWKIT = str(Path(sys.executable).with_name("flowkit"))


@pytest.fixture
def graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI() as g:
        yield g


def run(redis_url: str, graph: FakeGraphAPI, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url, FLOWKIT_FLOWS="examples/flows", **graph.env())
    return subprocess.run([FLOWKIT, "--log-level", "error", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_csv_run_reports_and_resumes_without_starting_anyone_twice(
        redis_url: str, store: Store, graph: FakeGraphAPI, tmp_path: Path) -> None:
    busy = "31655500003"
    Runtime(store, load_flows(ROOT / "examples" / "flows")).handle(busy, UserMessage(text="support", message_id="b1"))
    users = tmp_path / "campaign.csv"
    users.write_text("wa_id,param.1,slot.order_ref\n31655500001,Ana,AB123456\n31655500002,Bo,\n"
                     f"{busy},Cy,\n,Dee,\n")
    args = ["start", "support_triage", "--to-file", str(users), "--template", "support_followup", "--rate", "50",
            "--no-progress", "--format", "json"]
    first = run(redis_url, graph, *args)
    assert first.returncode == 1, first.stderr  # two rows failed
    report: dict[str, Any] = json.loads(first.stdout)
    assert (report["started"], report["skipped"], report["failed"]) == (2, 0, 2)
    assert {f["wa_id"] for f in report["failures"]} == {busy, ""}
    assert "live session" in next(f["error"] for f in report["failures"] if f["wa_id"] == busy)
    sent = graph.to("31655500001")
    assert [m.type for m in sent] == ["template"]
    assert sent[0].payload["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Ana"}]
    assert store.load("31655500001")["slots"]["order_ref"] == "AB123456"
    again = run(redis_url, graph, *args)  # e.g. after an interruption: who was started is skipped
    report = json.loads(again.stdout)
    assert (report["started"], report["skipped"], report["failed"]) == (0, 2, 2)
    assert len(graph.to("31655500001")) == 1 and len(store.history("31655500001")) == 1


def test_one_start_needs_a_template_outside_the_window_and_a_key_starts_once(
        redis_url: str, store: Store, graph: FakeGraphAPI) -> None:
    who = "31655500010"
    r = run(redis_url, graph, "start", "support_triage", "--to", who)
    assert r.returncode == 2 and "a template is needed" in r.stderr and store.load(who) is None
    args = ["start", "support_triage", "--to", who, "--template", "support_followup", "--param", "1=Ana",
            "--key", "k-1", "--format", "json"]
    assert json.loads(run(redis_url, graph, *args).stdout)["status"] == "started"
    assert json.loads(run(redis_url, graph, *args).stdout)["status"] == "skipped"
    assert [m.type for m in graph.to(who)] == ["template"]
    r = run(redis_url, graph, "start", "no_such_flow", "--to", "31655500011", "--template", "t")
    assert r.returncode == 2 and "no_such_flow" in r.stderr


def test_agent_commands_refuse_what_they_cannot_do(redis_url: str, store: Store, graph: FakeGraphAPI) -> None:
    r = run(redis_url, graph, "agent", "reply", "31655500020", "hello")
    assert r.returncode == 2 and "no session" in r.stderr
    Runtime(store, load_flows(ROOT / "examples" / "flows")).handle("31655500020", UserMessage(text="support",
                                                                                         message_id="a1"))
    r = run(redis_url, graph, "agent", "release", "31655500020")
    assert r.returncode == 2 and "not in hand-off" in r.stderr
    r = run(redis_url, graph, "agent", "list", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
