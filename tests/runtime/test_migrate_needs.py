"""Migrations that would skip a needed answer are refused (issue 18).

``flowkit migrate order_pizza --to 4 --map upsell=ask_address`` used to move a session
waiting at the upsell (it had never been asked its quantity) to the address question;
``orders.create`` was then called without ``qty`` and the session failed with an
engine error and no reply to the user.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.engine import UserMessage
from flowkit.flow import parse_flow
from flowkit.runtime import FlowRegistry, RecordingChannel, Runtime, apply_migration, plan_migration
from flowkit.store import Store
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, ROOT, Clock

V3_TEXT = (ROOT / "examples" / "flows" / "order_pizza.yaml").read_text()
# v4 drops the upsell: every size goes straight to the quantity question
V4_TEXT = V3_TEXT.replace('version: "3"', 'version: "4"').replace(
    """    next:
      - if: "size == 'large'"
        goto: upsell
      - goto: ask_qty
  upsell:
    ask: "Large it is! Add a drink for 2 EUR?"
    input: yes_no
    save: drink
    next: ask_qty
""", "    next: ask_qty\n")
V4 = parse_flow(V4_TEXT, "order_pizza_v4.yaml")


def talk(rt: Runtime, sid: str, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        assert rt.handle(sid, UserMessage(text=text, message_id=f"{sid}.{i}.{text}")).status == "applied"


@pytest.fixture
def rt(store: Store, redis_client: Any, clock: Clock) -> Runtime:
    registry = FlowRegistry(EXAMPLE_FLOWS.values(), client=redis_client)
    return Runtime(store, registry, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)


def test_v4_really_has_no_upsell() -> None:
    assert "upsell" not in V4.steps and V4.steps["ask_size"].next[0].goto == "ask_qty"


def test_a_mapping_past_the_quantity_question_is_refused(rt: Runtime, store: Store) -> None:
    talk(rt, "large", ["pizza", "large"])  # waits at upsell: has a size, no quantity
    talk(rt, "small", ["pizza", "small", "2"])  # waits at ask_address with a quantity
    rt.registry.register(V4)

    plan = plan_migration(store.iter_sessions(), V4, {"upsell": "ask_address"})
    assert [r.session_id for r in plan.refused] == ["large"]
    reason = plan.refused[0].reason
    assert "step 'place_order' reads 'qty'" in reason and "--map upsell=ask_qty" in reason
    assert plan.moves == (("small", "ask_address", "ask_address"),)  # it gave its quantity: safe
    assert apply_migration(rt, plan).migrated == ()  # all or nothing
    assert store.load("large")["flow_version"] == "3"

    # The step the refusal suggests: the session is asked its quantity and the order goes through.
    plan = plan_migration(store.iter_sessions(), V4, {"upsell": "ask_qty"})
    result = apply_migration(rt, plan)
    assert sorted(result.migrated) == ["large", "small"] and not result.failed
    assert rt.channel.texts("large")[-1] == "How many pizzas? (1-20)"
    talk(rt, "large", ["3", "12 Main Street"])
    done = store.load("large")
    assert (done["status"], done["slots"]["qty"]) == ("completed", 3)
    assert not any((r["error"] or "").startswith("engine_error") for r in store.history("large"))


def test_the_migrate_command_names_the_slot_and_the_step(rt: Runtime, store: Store, redis_url: str,
                                                          tmp_path: Any) -> None:
    talk(rt, "large", ["pizza", "large"])
    v4 = tmp_path / "order_pizza.yaml"
    v4.write_text(V4_TEXT)
    runner = CliRunner()
    base = ["migrate", "order_pizza", "--to", "4", "--flows", str(v4), "--redis", redis_url]
    r = runner.invoke(app, [*base, "--map", "upsell=ask_address"])
    assert r.exit_code == 1
    assert "refused large at upsell" in r.output and "'qty'" in r.output and "'place_order'" in r.output
    assert store.load("large")["flow_version"] == "3"
    r = runner.invoke(app, [*base, "--map", "upsell=ask_address", "--format", "json"])
    data = json.loads(r.stdout)
    assert data["migrated"] == [] and "reads 'qty'" in data["refused"][0]["reason"]
    r = runner.invoke(app, [*base, "--map", "upsell=ask_qty"])
    assert r.exit_code == 0 and "moved 1" in r.output
    assert (store.load("large")["flow_version"], store.load("large")["step"]) == ("4", "ask_qty")


def test_a_same_named_step_behind_a_new_needed_question_is_refused(rt: Runtime, store: Store) -> None:
    """No mapping at all: v5 asks for a floor before the address, and orders.create reads it."""
    text = V3_TEXT.replace('version: "3"', 'version: "5"').replace(
        "  address: {type: text, max_length: 200}\n",
        "  address: {type: text, max_length: 200}\n  floor: {type: int, min: 0, max: 99}\n").replace(
        "    on_fail: handoff\n    next: ask_address\n",
        "    on_fail: handoff\n    next: ask_floor\n  ask_floor:\n    ask: \"Which floor?\"\n"
        "    input: {type: int, min: 0, max: 99}\n    save: floor\n    next: ask_address\n").replace(
        'address: "address"}', 'address: "address", floor: "floor"}')
    v5 = parse_flow(text, "order_pizza_v5.yaml")
    talk(rt, "s", ["pizza", "small", "2"])  # at ask_address, which v5 keeps as it was
    plan = plan_migration(store.iter_sessions(), v5)
    assert [r.session_id for r in plan.refused] == ["s"]
    assert "reads 'floor'" in plan.refused[0].reason and "--map ask_address=ask_floor" in plan.refused[0].reason
    assert plan_migration(store.iter_sessions(), v5, {"ask_address": "ask_floor"}).ok
