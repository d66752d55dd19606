"""flowkit.testing: generated conversations cover every edge of the example flows through
the real runtime on a real Redis; a broken flow is caught with the reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkit.flow import load_flows
from flowkit.flow.graph import edge_list
from flowkit.runtime import FlowRegistry, RecordingChannel, Runtime
from flowkit.store import Store
from flowkit.testing.coverage import (
    TEST_EPOCH_MS,
    Action,
    Conversation,
    Edge,
    _Clock,
    flow_edges,
    generate_conversations,
    record_moves,
    run_conversation,
    run_edge_coverage,
)
from tests.runtime.conftest import EXAMPLE_FLOWS, ROOT

BROKEN = """\
flow: broken
start: ask_qty
triggers: [broken]
slots:
  qty: {type: int, min: 1, max: 20}
  name: {type: text}
steps:
  ask_qty:
    ask: "How many?"
    input: {type: int, min: 1, max: 20}
    save: qty
    on_timeout: late
    next:
      - if: "qty > 100"
        goto: huge
      - goto: ask_name
  ask_name:
    ask: "Name?"
    input: text
    save: name
    retries: 0
    on_fail: late
    next: done
  huge:
    say: "Wow"
    end: completed
  late:
    end: cancelled
  done:
    say: "Thanks {{ name }}"
    end: completed
"""


def test_every_edge_of_every_example_flow_is_covered_through_the_runtime(store: Store) -> None:
    report = run_edge_coverage(EXAMPLE_FLOWS, store, keep=True)
    assert report.ok, report.text()
    expected = {(f.name, r["source"], r["target"], r["label"]) for f in EXAMPLE_FLOWS.values() for r in edge_list(f)}
    assert {(e.flow, e.source, e.target, e.label) for e in report.edges} == expected
    assert report.covered == set(report.edges) and report.ratio == 1.0
    labels = {e.label for e in report.covered}
    assert {"retry", "on_fail", "on_error", "on_timeout", "return", "next"} <= labels
    assert any(lab.startswith("if ") for lab in labels)
    assert all(r.passed for r in report.results) and len(report.results) >= 20
    # Every conversation really ran: its sessions and their histories are in Redis.
    for r in report.results:
        assert store.history(r.session_id), r.session_id
    data = report.to_dict()
    assert data["ok"] is True and data["covered"] == data["total"] == len(expected)
    assert data["flows"]["refund"]["covered"] == data["flows"]["refund"]["total"]


def test_a_run_leaves_nothing_behind_in_a_live_redis(store: Store) -> None:
    from flowkit.store import reconcile

    report = run_edge_coverage(EXAMPLE_FLOWS, store)
    assert report.ok and report.results
    assert list(store.iter_session_ids()) == [] and store.active_count() == 0
    assert all(not store.history(r.session_id) for r in report.results)
    assert reconcile(store, dry_run=True).fixed == 0  # indexes and counters were taken back too


def test_conversations_are_deterministic_and_take_the_hard_edges() -> None:
    a = generate_conversations(EXAMPLE_FLOWS)
    b = generate_conversations(EXAMPLE_FLOWS)
    assert [c.actions for c in a] == [c.actions for c in b]
    covers = set().union(*(c.covers for c in a))
    # the refund retry loop needs three service errors in a row before the agent
    assert Edge("refund", "count_try", "agent", "next") in covers
    # a timeout of a call step whose on_timeout is defined, and of an ask step
    assert Edge("order_pizza", "place_order", "sorry", "on_timeout") in covers
    assert Edge("order_pizza", "ask_address", "expired_reminder", "on_timeout") in covers
    # the sub-flow's return and its failure path
    assert Edge("book_appointment", "contact", "reserve", "return") in covers
    assert Edge("book_appointment", "contact", "handoff", "on_fail") in covers
    loop = next(c for c in a if Edge("refund", "count_try", "agent", "next") in c.covers)
    errors = [x for x in loop.actions if x.kind == "result" and not x.ok]
    assert len(errors) >= 3


def test_a_broken_flow_gets_less_than_full_coverage_with_reasons(store: Store, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    report = run_edge_coverage(load_flows(tmp_path), store)
    assert not report.ok and report.ratio < 1.0
    why = {(e.source, e.target, e.label): r for e, r in report.uncovered.items()}
    assert set(why) == {("ask_qty", "huge", "if qty > 100"), ("ask_qty", "late", "on_timeout"),
                        ("ask_name", "ask_name", "retry")}
    assert "never true" in why[("ask_qty", "huge", "if qty > 100")]
    assert "no `timeout`" in why[("ask_qty", "late", "on_timeout")]
    assert "retries: 0" in why[("ask_name", "ask_name", "retry")]
    assert len(report.covered) == 4 and report.total == 7
    assert "uncovered broken: ask_qty -> huge [if qty > 100]" in report.text()


def test_a_conversation_whose_runtime_run_diverges_fails(store: Store) -> None:
    """A conversation that expects another ending than the runtime reaches is reported,
    and so is a service answer when the session does not wait for one."""
    registry = FlowRegistry(EXAMPLE_FLOWS)
    conv = next(c for c in generate_conversations(registry) if c.flow == "order_pizza" and c.status == "completed")
    clock = _Clock(TEST_EPOCH_MS)
    clock_rt = Runtime(store, registry, channel=RecordingChannel(), run_services=False, clock=clock)
    wrong = Conversation("wrong", conv.flow, conv.actions, conv.covers, "handoff", "handoff", conv.version)
    res = run_conversation(wrong, clock_rt, "t-wrong", clock)
    assert not res.passed and "ended at step" in res.problems[0]
    stray = Conversation("stray", "order_pizza",
                         (conv.actions[0], Action("result", TEST_EPOCH_MS + 1000, ok=True, value="X")),
                         frozenset(), "ask_size", "waiting_input", 1)
    res = run_conversation(stray, clock_rt, "t-stray", clock)
    assert not res.passed and "wait for a service" in res.problems[0]


def test_record_moves_labels_and_flags_non_edges() -> None:
    registry = FlowRegistry(EXAMPLE_FLOWS)
    pizza = EXAMPLE_FLOWS["order_pizza"]
    retry = {"event": "message", "from_step": "ask_size", "path": ["ask_size"], "error": "invalid_input:choice"}
    assert record_moves(pizza, retry, registry) == ([Edge("order_pizza", "ask_size", "ask_size", "retry")], [])
    fail = {"event": "message", "from_step": "ask_size", "path": ["handoff"], "error": "invalid_input:choice"}
    assert record_moves(pizza, fail, registry)[0] == [Edge("order_pizza", "ask_size", "handoff", "on_fail")]
    late = {"event": "timeout", "from_step": "place_order", "path": ["sorry"], "error": "timeout"}
    assert record_moves(pizza, late, registry)[0] == [Edge("order_pizza", "place_order", "sorry", "on_timeout")]
    bogus = {"event": "message", "from_step": "welcome", "path": ["done"], "error": None}
    assert record_moves(pizza, bogus, registry) == ([], ["welcome -> done"])
    book = EXAMPLE_FLOWS["book_appointment"]
    back = {"event": "message", "from_step": "contact/confirm", "path": ["contact/done", "reserve"], "error": None}
    assert record_moves(book, back, registry)[0] == [Edge("collect_contact", "confirm", "done", "if ok"),
                                                      Edge("book_appointment", "contact", "reserve", "return")]
    assert len(flow_edges(book)) == len(edge_list(book))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_flowkit_test_command_exit_codes(fmt: str, redis_url: str, redis_client: object, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from flowkit.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["test", str(ROOT / "examples" / "flows"), "--redis", redis_url, "--format", fmt])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "broken.yaml").write_text(BROKEN)
    bad = runner.invoke(app, ["test", str(tmp_path), "--redis", redis_url, "--format", fmt])
    assert bad.exit_code == 1, bad.output
    if fmt == "json":
        assert json.loads(ok.stdout)["ok"] is True
        data = json.loads(bad.stdout)
        assert data["covered"] == 4 and data["total"] == 7 and len(data["uncovered"]) == 3
        assert all(set(u) == {"flow", "source", "target", "label", "reason"} for u in data["uncovered"])
    else:
        n = sum(len(edge_list(f)) for f in EXAMPLE_FLOWS.values())
        assert f"edge coverage {n}/{n}" in ok.stdout
        assert "uncovered broken: ask_qty -> late [on_timeout]" in bad.stdout


def test_conversations_of_one_flow_only() -> None:
    convs = generate_conversations(EXAMPLE_FLOWS, "refund")
    assert convs and {c.flow for c in convs} == {"refund"}
    covered = set().union(*(c.covers for c in convs))
    assert covered == set(flow_edges(EXAMPLE_FLOWS["refund"]))
    assert all(c.actions[0].describe() == "say 'refund'" for c in convs)  # started by its trigger


def test_a_search_cut_short_says_so(store: Store) -> None:
    report = run_edge_coverage(EXAMPLE_FLOWS, store, max_states=5)
    assert not report.ok and report.uncovered
    assert all("max_states=5" in why for why in report.uncovered.values())
    assert all(r.passed for r in report.results)  # what was generated still runs through the runtime
