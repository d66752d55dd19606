"""flowkit.dashboard on a real Redis, with traffic written by the real runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from flowkit import dashboard as D
from flowkit.alerts import AlertManager, load_rules
from flowkit.history import export_store, funnel, read_export
from flowkit.metrics import total, totals
from flowkit.store import Store
from flowkit.store import keys as K
from tests.dashboard.conftest import Traffic, registered
from tests.runtime.conftest import EXAMPLE_FLOWS


def source(store: Store) -> D.Source:
    return D.Source(store.client, store, "redis://test", dict(EXAMPLE_FLOWS))


def test_headline_counts_what_the_runtime_did(traffic: Traffic) -> None:
    h = D.headline(traffic.store.client, traffic.now)
    assert h["has_data"] is True
    assert h["sessions"] == 9 and h["live"] == 5 and h["stuck"] == 2
    assert (h["completed"], h["dropped"]) == (2, 2)  # cancel-1 cancelled, refund-bad failed
    assert h["completion_rate"] == 0.5
    t = totals(traffic.store.client)
    assert h["messages_in"] == total(t, "messages_in") > 0
    assert h["sessions_started"] == 9
    # the last five minutes hold recent-3's two messages and its start only
    assert h["messages_per_min"] == 2 / 5 and h["starts_per_min"] == 1 / 5
    longer = D.headline(traffic.store.client, traffic.now, stuck_after_ms=3 * 3_600_000)
    assert longer["stuck"] == 0


def test_empty_redis_has_no_data(store: Store) -> None:
    h = D.headline(store.client)
    assert h["has_data"] is False and h["sessions"] == h["live"] == h["stuck"] == 0
    assert h["completion_rate"] is None and h["mean_latency_ms"] is None
    data = D.refresh(source(store))
    assert data["stuck"].empty and data["services"].empty and data["flows"].empty
    assert data["alerts"]["active"].empty
    assert (data["rates"].to_numpy() == 0).all()


def test_rates_add_up_to_the_totals(traffic: Traffic) -> None:
    r = D.rates(traffic.store.client, traffic.now, window_ms=3 * 3_600_000)
    t = totals(traffic.store.client)
    assert r["messages_in"].sum() == total(t, "messages_in")
    assert r["sessions_started"].sum() == 9 and r["sessions_ended"].sum() == 4
    assert len(r) == 181 and str(r.index.tz) == "UTC"
    recent = D.rates(traffic.store.client, traffic.now, window_ms=10 * 60_000)
    assert recent["sessions_started"].sum() == 1  # recent-3 only


def test_drop_off_by_step_agrees_with_the_history_funnel(traffic: Traffic, tmp_path: Path) -> None:
    """The cheap numbers (counters + live index) equal the exact ones from the full history."""
    data = D.refresh(source(traffic.store), traffic.now)
    assert data["live"].exact
    export_store(traffic.store, tmp_path / "ex", fmt="jsonl")
    exact = funnel(read_export(tmp_path / "ex").history, EXAMPLE_FLOWS)
    compared = 0
    for flow, table in data["steps"].items():
        mine = table.set_index("step")
        theirs = exact[exact["flow"] == flow].set_index("step")
        for step, row in theirs.iterrows():
            assert (mine.loc[step, "entered"], mine.loc[step, "sessions_here"], mine.loc[step, "active_here"],
                    mine.loc[step, "completed_here"], mine.loc[step, "dropped"]) == (
                row["entered"], row["ended_here"], row["active_here"], row["completed_here"], row["dropped"]), (flow, step)
            compared += 1
        assert mine["sessions_here"].sum() == table.attrs["sessions"]
    assert compared > 20
    pizza = data["steps"]["order_pizza"].set_index("step")
    assert pizza.loc["ask_size", "invalid_inputs"] == 1 and pizza.loc["ask_size", "dropped"] == 1
    assert pizza.loc["done", "completed_here"] == 2 and pizza.loc["done", "kind"] == "end"
    assert list(pizza.index[:2]) == ["welcome", "ask_size"]  # the order a user meets the steps
    summary = data["flows"].set_index("flow")
    assert summary.loc["order_pizza", "live"] == 4 and summary.loc["refund", "failed"] == 1


def seed_live(client: Any, n: int, steps: dict[str, float]) -> None:
    """``n`` live sessions in the activity index, their steps interleaved in time order."""
    names = list(steps)
    cut = [sum(list(steps.values())[: i + 1]) for i in range(len(names))]
    with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            x = (i * 7919 % n) / n
            step = next(name for name, c in zip(names, cut, strict=True) if x < c)
            sid = f"s{i}"
            pipe.hset(K.session_keys(sid).state, mapping={"flow": "f", "step": step, "status": "waiting_input"})
            pipe.zadd(K.IDX_ACTIVE, {sid: 1_000_000 + i})
        pipe.execute()


def test_live_by_step_is_exact_when_small_and_an_even_sample_when_large(store: Store) -> None:
    seed_live(store.client, 20_000, {"a": 0.7, "b": 0.2, "c": 0.1})
    exact = D.live_by_step(store.client, sample=50_000)
    assert exact.exact and exact.read == exact.live == 20_000
    assert exact.counts == {("f", "a"): 14_000, ("f", "b"): 4_000, ("f", "c"): 2_000}
    est = D.live_by_step(store.client, sample=2_000)
    assert not est.exact and est.read == 2_000 and est.live == 20_000
    assert abs(sum(est.counts.values()) - 20_000) < 1
    for key, want in exact.counts.items():
        assert abs(est.counts[key] - want) / want < 0.1, key
    # a member whose state says terminal (index drift) is not counted as live
    store.client.hset(K.session_keys("s0").state, "status", "completed")
    assert sum(D.live_by_step(store.client, sample=50_000).counts.values()) == 19_999


def test_refresh_reads_indexes_only_never_scans(traffic: Traffic) -> None:
    client = traffic.store.client
    client.config_resetstat()
    D.refresh(source(traffic.store), traffic.now)
    stats = client.info("commandstats")
    assert "cmdstat_zrangebyscore" in stats and "cmdstat_hgetall" in stats
    assert not {"cmdstat_scan", "cmdstat_keys", "cmdstat_xrange"} & set(stats)


def test_stuck_sessions_oldest_first_with_their_step(traffic: Traffic) -> None:
    frame = D.stuck_sessions(traffic.store.client, traffic.now)
    assert list(frame["session_id"]) == ["stuck-1", "stuck-2"]
    assert list(frame["step"]) == ["upsell", "ask_address"] and set(frame["status"]) == {"waiting_input"}
    assert list(frame["version"]) == [2, 3]
    assert (frame["idle_min"] > 110).all()
    assert len(D.stuck_sessions(traffic.store.client, traffic.now, stuck_after_ms=1, limit=3)) == 3
    assert D.stuck_sessions(traffic.store.client, traffic.now, stuck_after_ms=3 * 3_600_000).empty


def test_session_detail_diff_and_rollback(traffic: Traffic) -> None:
    store = traffic.store
    d = D.session_detail(store, "done-1")
    assert d is not None and d["problem"] is None
    assert d["state"]["status"] == "completed" and d["version"] == len(d["history"]) == d["history"]["version"].max()
    assert d["history"]["event"].iloc[0] == "start" and str(d["history"]["ts"].dt.tz) == "UTC"
    diff = D.session_diff(store, "done-1", 1, d["version"])
    changes = diff["changes"].set_index("path")
    assert json.loads(changes.loc["slots.size", "to"]) == "large" and changes.loc["status", "op"] == "changed"
    assert len(diff["events"]) == d["version"] - 1
    assert D.session_detail(store, "nobody") is None

    res = D.rollback(store, "stuck-2", 1)
    assert res.ok and res.version == 4
    after = D.session_detail(store, "stuck-2")
    assert after is not None and after["version"] == 4 and after["state"]["step"] == store.state_at("stuck-2", 1)["step"]
    last = after["history"].iloc[-1]
    assert (last["event"], last["actor"]) == ("rollback", "admin")


def test_a_corrupt_state_is_shown_not_repaired(traffic: Traffic) -> None:
    store = traffic.store
    store.client.hset(K.session_keys("stuck-1").state, "state", '{"oops": true}')
    d = D.session_detail(store, "stuck-1")
    assert d is not None and "checksum" in d["problem"] and d["state"] == {"oops": True}
    assert store.quarantine_count() == 0 and len(store.history("stuck-1")) == 2  # nothing written


def test_service_health_per_service(traffic: Traffic) -> None:
    frame = D.service_health(traffic.store.client, traffic.now, window_ms=30 * 60_000).set_index("service")
    assert frame.loc["payments.lookup", "calls"] == 1 and frame.loc["payments.lookup", "error_rate"] == 1.0
    assert frame.loc["orders.create", "calls"] == 2 and frame.loc["orders.create", "errors"] == 0
    assert frame.loc["orders.create", "mean_ms"] >= 0
    assert frame.loc["orders.create", "calls_recent"] == 1  # done-2's order, 20 minutes ago
    assert frame.loc["payments.lookup", "calls_recent"] == 0
    assert pd.isna(frame.loc["payments.lookup", "error_rate_recent"])


def test_active_alerts_and_their_history(traffic: Traffic) -> None:
    client = traffic.store.client
    rules, _ = load_rules({"rules": [{"name": "lookups_fail", "signal": "service_error_rate", "threshold": "> 0.5",
                                      "window": "3h", "severity": "critical"}]})
    AlertManager(client, rules).run(traffic.now)
    a = D.alerts(client)
    assert list(a["active"]["name"]) == ["lookups_fail"] and a["active"]["labels"].iloc[0] == "service=payments.lookup"
    assert list(a["history"]["event"]) == ["fired"]
    assert D.headline(client, traffic.now)["active_alerts"] == 1


def test_flow_graph_draws_traffic_and_drop_off(traffic: Traffic) -> None:
    data = D.refresh(source(traffic.store), traffic.now)
    dot = D.flow_graph(EXAMPLE_FLOWS["order_pizza"], data["steps"]["order_pizza"]).source
    assert "entered 7 · live 1 · dropped 1" in dot  # ask_size: recent-1 waits there, cancel-1 left there
    assert "1 invalid" in dot and "ended here: 2" in dot
    assert "#ff6969" in dot  # the worst drop-off step is the reddest
    assert "entered 0 · live 0 · dropped 0" not in dot  # quiet steps stay unlabelled


def test_flows_come_from_redis_and_files(store: Store, tmp_path: Path) -> None:
    registered(store.client)
    src = D.Source(store.client, store, "redis://test")
    assert set(D.load_flows(src)) == set(EXAMPLE_FLOWS)
    root = Path(__file__).resolve().parents[2]
    files = D.open_source(_url(store), [root / "examples" / "flows" / "refund.yaml"])
    assert list(files.flows) == ["refund"] and files.flow_problems == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\nstart: nowhere\nsteps: {}\n")
    assert D.open_source(_url(store), [bad]).flow_problems


def _url(store: Store) -> str:
    kw = store.client.get_connection_kwargs()
    return f"redis://{kw['host']}:{kw['port']}/0"


def test_waiting_for_a_person_lists_handoffs_with_their_wait_and_stuck_leaves_them_out(store: Store) -> None:
    from flowkit.engine import UserMessage
    from flowkit.runtime import Runtime

    t0 = 1_790_000_000_000
    now = [t0]
    rt = Runtime(store, EXAMPLE_FLOWS.values(), clock=lambda: now[0])
    for i, text in enumerate(["support", "other", "5"]):
        rt.handle("u-held", UserMessage(text=text, message_id=f"m{i}"))
    now[0] += 60_000
    rt.handle("u-held", UserMessage(text="is anyone there?", message_id="m9"))  # recorded, not answered
    rt.handle("u-bot", UserMessage(text="support", message_id="b1"))
    later = now[0] + 2 * 3_600_000
    frame = D.waiting_for_person(store, later)
    assert list(frame["session_id"]) == ["u-held"] and list(frame["flow"]) == ["support_triage"]
    assert frame["waiting_min"].iloc[0] == 121.0 and frame["last_message"].iloc[0] == "is anyone there?"
    stuck = D.stuck_sessions(store.client, later)
    assert list(stuck["session_id"]) == ["u-bot"]  # idle 2 h waiting for the bot: stuck; held by people: not
    rt.release("u-held", "ask_details")
    assert D.waiting_for_person(store, later).empty
