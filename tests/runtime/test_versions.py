"""Flow versions: new sessions take the latest, running ones stay pinned, migration is explicit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.engine import UserMessage
from flowkit.flow import parse_flow
from flowkit.runtime import (
    FlowRegistry,
    RecordingChannel,
    Runtime,
    VersionClash,
    apply_migration,
    plan_migration,
)
from flowkit.store import Store
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, ROOT, Clock

V3_TEXT = (ROOT / "examples" / "flows" / "order_pizza.yaml").read_text()
# v4 renames ask_address to ask_street and asks it differently
V4_TEXT = V3_TEXT.replace('version: "3"', 'version: "4"').replace("ask_address", "ask_street").replace(
    "Where should we deliver?", "Which street should we deliver to?")
V4 = parse_flow(V4_TEXT, "order_pizza_v4.yaml")


def talk(rt: Runtime, sid: str, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        assert rt.handle(sid, UserMessage(text=text, message_id=f"{sid}.{i}.{text}")).status == "applied"


@pytest.fixture
def registry(redis_client: Any) -> FlowRegistry:
    return FlowRegistry(EXAMPLE_FLOWS.values(), client=redis_client)


def test_running_sessions_stay_on_their_version(store: Store, registry: FlowRegistry, redis_client: Any,
                                                clock: Clock) -> None:
    rt = Runtime(store, registry, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    talk(rt, "old", ["pizza", "small", "1"])  # waiting at ask_address on v3
    # A deploy of v4 by another process: it only reaches this one through Redis.
    FlowRegistry([V4], client=redis_client)
    fresh = Runtime(store, FlowRegistry(client=redis_client), channel=RecordingChannel(), services=EXAMPLE_SERVICES,
                    clock=clock)
    talk(fresh, "new", ["pizza"])
    assert store.load("new")["flow_version"] == "4"
    talk(fresh, "old", ["12 Main Street"])  # v3's step, served from v3's definition kept in Redis
    assert store.load("old")["flow_version"] == "3" and store.load("old")["status"] == "completed"
    assert registry.versions("order_pizza") == ["3", "4"]


def test_a_version_label_cannot_change_content(registry: FlowRegistry) -> None:
    clash = parse_flow(V3_TEXT.replace("What size?", "Which size?"), "clash.yaml")
    with pytest.raises(VersionClash, match="bump `version:`"):
        registry.register(clash)


def test_migration_refuses_removed_steps_unless_mapped(store: Store, registry: FlowRegistry, clock: Clock) -> None:
    rt = Runtime(store, registry, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    talk(rt, "a", ["pizza"])  # at ask_size: exists in v4
    talk(rt, "b", ["pizza", "small", "1"])  # at ask_address: gone in v4
    talk(rt, "c", ["pizza", "small", "1", "12 Main Street"])  # completed: not migrated
    registry.register(V4)

    plan = plan_migration(store.iter_sessions(), V4)
    assert [r.session_id for r in plan.refused] == ["b"] and "--map ask_address=" in plan.refused[0].reason
    result = apply_migration(rt, plan)
    assert result.migrated == () and store.load("a")["flow_version"] == "3"  # all or nothing

    plan = plan_migration(store.iter_sessions(), V4, {"ask_address": "ask_street"})
    result = apply_migration(rt, plan)
    assert sorted(result.migrated) == ["a", "b"] and not result.failed
    b = store.load("b")
    assert (b["flow_version"], b["step"], b["slots"]["qty"]) == ("4", "ask_street", 1)
    last = store.history("b")[-1]
    assert last["event"] == "migrate" and last["actor"] == "admin"
    assert rt.channel.texts("b")[-1] == "Which street should we deliver to?"
    talk(rt, "b", ["12 Main Street"])
    assert store.load("b")["status"] == "completed"
    assert store.load("c")["flow_version"] == "3"


def test_partial_migration_and_bad_mappings(store: Store, registry: FlowRegistry, clock: Clock) -> None:
    rt = Runtime(store, registry, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    talk(rt, "a", ["pizza"])
    talk(rt, "b", ["pizza", "small", "1"])
    registry.register(V4)
    with pytest.raises(Exception, match="does not have: nowhere"):
        plan_migration(store.iter_sessions(), V4, {"ask_address": "nowhere"})
    result = apply_migration(rt, plan_migration(store.iter_sessions(), V4), partial=True)
    assert result.migrated == ("a",) and store.load("b")["flow_version"] == "3"


def test_migrate_cli(store: Store, registry: FlowRegistry, redis_url: str, clock: Clock, tmp_path: Any) -> None:
    rt = Runtime(store, registry, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)
    talk(rt, "a", ["pizza"])
    talk(rt, "b", ["pizza", "small", "1"])
    v4 = tmp_path / "order_pizza.yaml"
    v4.write_text(V4_TEXT)
    runner = CliRunner()
    base = ["migrate", "order_pizza", "--to", "4", "--flows", str(v4), "--redis", redis_url]
    r = runner.invoke(app, [*base, "--format", "json"])
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["migrated"] == [] and [x["session_id"] for x in data["refused"]] == ["b"]
    r = runner.invoke(app, [*base, "--map", "ask_address=ask_street", "--dry-run"])
    assert r.exit_code == 0 and "would move 2" in r.output
    assert store.load("a")["flow_version"] == "3"
    r = runner.invoke(app, [*base, "--map", "ask_address=ask_street"])
    assert r.exit_code == 0 and "moved 2" in r.output
    assert {store.load(s)["flow_version"] for s in "ab"} == {"4"}
    assert runner.invoke(app, [*base, "--map", "nonsense"]).exit_code == 2
    assert runner.invoke(app, ["migrate", "order_pizza", "--to", "99", "--redis", redis_url]).exit_code == 2


# ---------------------------------------------------------------- the registry on Redis Cluster


@pytest.mark.cluster
def test_registry_on_a_cluster(cluster_client: Any) -> None:
    """``fk:flowdef:<name>`` and ``fk:flowdefs`` live in different slots: registering must not
    need a MULTI over both (Redis Cluster refuses it with CrossSlotTransactionError)."""
    from flowkit.runtime.registry import FLOW_NAMES, flowdef_key

    slots = {cluster_client.keyslot(k) for k in (FLOW_NAMES, *(flowdef_key(n) for n in EXAMPLE_FLOWS))}
    assert len(slots) > 1
    FlowRegistry(EXAMPLE_FLOWS.values(), client=cluster_client)
    FlowRegistry([V4], client=cluster_client)  # a deploy from another process
    other = FlowRegistry(client=cluster_client)
    assert other.names() == sorted(EXAMPLE_FLOWS) and other.latest("order_pizza").version_id == "4"
    assert other.versions("order_pizza") == ["3", "4"]
    store = Store(cluster_client)
    rt = Runtime(store, other, channel=RecordingChannel(), services=EXAMPLE_SERVICES)
    talk(rt, "u1", ["pizza"])
    assert store.load("u1")["flow_version"] == "4"


def test_a_definition_stored_without_its_name_is_still_found_and_listed_again(redis_client: Any) -> None:
    """The two writes of register() are ordered, not transactional: a crash between them
    leaves a stored definition whose name is not listed yet. It is still served by name,
    and the next register() of that flow (the restarted process) lists it."""
    from flowkit.runtime.registry import FLOW_NAMES, flowdef_key

    FlowRegistry(EXAMPLE_FLOWS.values(), client=redis_client)
    redis_client.srem(FLOW_NAMES, "order_pizza")  # as if the process died after the HSET
    assert redis_client.hget(flowdef_key("order_pizza"), "3") is not None
    fresh = FlowRegistry(client=redis_client)
    assert "order_pizza" not in fresh.names()
    assert fresh.latest("order_pizza").version_id == "3"  # found by name all the same
    assert FlowRegistry(EXAMPLE_FLOWS.values(), client=redis_client).register(EXAMPLE_FLOWS["order_pizza"]) is False
    assert "order_pizza" in FlowRegistry(client=redis_client).names()
