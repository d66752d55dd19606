"""The simulator on a real Redis: reproducible by seed at any concurrency, every hostile
option visible in the summary, and every hostile run proven clean by the history checker
with the simulator's own sent log. Virtual clock (days in seconds), real time at high
speed, and over HTTP against a real `flowkit serve`."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit.check import check_store
from flowkit.errors import ConfigError
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.sim import HttpTarget, Persona, ServiceBehaviour, SimConfig, SimResult, Simulator
from flowkit.sim.simulator import SIM_EPOCH_MS
from flowkit.store import RedisServer, Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.runtime.webutil import SECRET, start_serve

CALM = Persona(invalid_rate=0.0, abandon_rate=0.0, back_rate=0.0, cancel_rate=0.0, help_rate=0.0)
RELIABLE = ServiceBehaviour(error_rate=0.0, slow_rate=0.0, timeout_rate=0.0)
HOSTILE = dict(duplicate_rate=0.2, out_of_order_rate=0.1, crash_rate=0.05,
               personas=(Persona(invalid_rate=0.2, abandon_rate=0.05, back_rate=0.05, cancel_rate=0.02, help_rate=0.05),),
               default_service=ServiceBehaviour(error_rate=0.15, slow_rate=0.15, timeout_rate=0.1))
TIMING = ("seconds", "messages_per_second", "users_per_second", "conflicts")  # wall-clock dependent


def runtime(store: Store) -> Runtime:
    return Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES)


def simulate(store: Store, **kw: Any) -> SimResult:
    return Simulator(runtime(store), SimConfig(**kw)).run()


def histories(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {sid: store.history(sid) for sid in sorted(store.iter_session_ids())}


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in TIMING}


def assert_clean(store: Store, result: SimResult) -> None:
    rt = runtime(store)
    report = check_store(store, rt.registry, sent=result.log_records())
    assert report.ok, [str(v) for v in report.violations[:10]]
    assert report.sessions == result.users and report.messages_checked > 0
    store.flush()
    assert store.unacked_effects(older_than_ms=0, limit=10_000) == []  # every outbox entry was finished


def events(store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for recs in histories(store).values():
        for r in recs:
            out[r["event"]] = out.get(r["event"], 0) + 1
            if r["error"]:
                key = "error:" + r["error"].split(":")[0]
                out[key] = out.get(key, 0) + 1
    return out


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_histories_whatever_the_concurrency(store: Store, redis_client: Any) -> None:
    runs = []
    for concurrency in (1, 4, 16):
        redis_client.flushall()
        res = simulate(store, users=40, seed=11, concurrency=concurrency, **HOSTILE)
        runs.append((histories(store), stable(res.summary()), sorted((s.message_id, s.ts, s.delivery) for s in res.sent)))
    (h1, s1, sent1), *others = runs
    assert len(h1) == 40 and sum(len(r) for r in h1.values()) > 250
    for h, s, sent in others:
        assert s == s1
        assert h == h1
        assert sent == sent1
    redis_client.flushall()
    res = simulate(store, users=40, seed=12, concurrency=4, **HOSTILE)
    other = histories(store)
    assert stable(res.summary()) != s1
    assert [[r["input"] for r in recs] for recs in other.values()] != [[r["input"] for r in recs] for recs in h1.values()]


# ---------------------------------------------------------------- every option has an effect


BASE = dict(users=40, seed=3, concurrency=4, personas=(CALM,), default_service=RELIABLE)
OPTIONS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "invalid": ({"personas": (Persona(invalid_rate=0.5, abandon_rate=0, back_rate=0, cancel_rate=0, help_rate=0),)},
                ["invalid_sent"]),
    "abandon": ({"personas": (Persona(invalid_rate=0, abandon_rate=0.3, back_rate=0, cancel_rate=0, help_rate=0),)},
                ["abandoned", "timeouts_fired"]),
    "duplicates": ({"duplicate_rate": 0.4}, ["duplicates_sent", "duplicates_absorbed"]),
    "out_of_order": ({"out_of_order_rate": 0.3}, ["out_of_order"]),
    "crash": ({"crash_rate": 0.15}, ["crashes", "redeliveries"]),
    "service_errors": ({"default_service": ServiceBehaviour(error_rate=0.6, slow_rate=0, timeout_rate=0)},
                       ["service_errors"]),
    "service_slow": ({"default_service": ServiceBehaviour(error_rate=0, slow_rate=0.6, timeout_rate=0,
                                                          slow_latency=30.0)}, ["service_slow", "timeouts_fired"]),
    "service_timeouts": ({"default_service": ServiceBehaviour(error_rate=0, slow_rate=0, timeout_rate=0.6)},
                         ["service_timeouts", "timeouts_fired"]),
    "commands": ({"personas": (Persona(invalid_rate=0, abandon_rate=0, back_rate=0.2, cancel_rate=0.05,
                                       help_rate=0.2),)}, ["commands_sent"]),
}


@pytest.fixture(scope="module")
def baseline(redis_url: str) -> dict[str, Any]:
    from flowkit.store import connect

    client = connect(redis_url)
    client.flushall()
    store = Store(client)
    res = simulate(store, **BASE)
    out = {"summary": res.summary(), "events": events(store)}
    client.flushall()
    client.close()
    return out


def test_calm_baseline_completes_everyone(baseline: dict[str, Any]) -> None:
    s = baseline["summary"]
    assert s["started"] == s["completed"] + s["other_end"] + s["failed"] + s["abandoned"] == 40
    # (users give up on a question asked too often: refund's "more than you paid" loop)
    zero = {k for _, (_, keys) in OPTIONS.items() for k in keys} | {"conflicts", "engine_errors", "unavailable"}
    zero -= {"timeouts_fired", "abandoned"}
    assert {k: s[k] for k in zero} == dict.fromkeys(zero, 0)
    assert s["still_active"] == 0 and s["completed"] >= 20, s


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_option_shows_in_the_summary_and_the_run_stays_clean(name: str, baseline: dict[str, Any],
                                                                  store: Store) -> None:
    change, keys = OPTIONS[name]
    res = simulate(store, **{**BASE, **change})
    s = res.summary()
    for k in keys:
        assert s[k] > baseline["summary"][k], (k, s[k], baseline["summary"][k])
    ev = events(store)
    base_ev = baseline["events"]
    if name == "invalid":
        assert ev.get("error:invalid_input", 0) > 0 == base_ev.get("error:invalid_input", 0)
    if name == "commands":
        assert ev.get("command", 0) > 0 == base_ev.get("command", 0)
        assert s["ended"].get("cancelled", 0) > 0
    if name == "abandon":
        assert ev.get("expire", 0) > base_ev.get("expire", 0)  # the left sessions expire on virtual time
    if name == "service_errors":
        assert ev.get("error:service_error", 0) > 0 == base_ev.get("error:service_error", 0)
    if name == "service_timeouts":  # nobody answered: the call steps' deadlines fired
        assert ev.get("error:timeout", 0) > base_ev.get("error:timeout", 0)
    if name == "duplicates":
        assert s["duplicates_absorbed"] >= s["duplicates_sent"]  # every duplicate stored nothing new
    if name == "crash":
        assert s["crashes"] == s["redeliveries"]  # each crashed delivery came again and was absorbed
    assert s["still_active"] == 0
    assert_clean(store, res)


def test_everything_hostile_at_once_is_clean(store: Store) -> None:
    res = simulate(store, users=120, seed=21, concurrency=8, **HOSTILE)
    s = res.summary()
    assert all(s[k] > 0 for k in ("duplicates_absorbed", "out_of_order", "crashes", "invalid_sent", "commands_sent",
                                  "service_errors", "service_timeouts", "timeouts_fired", "abandoned"))
    assert_clean(store, res)


# ---------------------------------------------------------------- Redis restarts


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis only this test uses, on a fixed port so a restart comes back at the same address."""
    with tempfile.TemporaryDirectory() as d:
        server = RedisServer(d, port=free_port()).start()
        try:
            yield server
        finally:
            server.stop()


def test_redis_restarts_mid_run_lose_nothing(own_redis: RedisServer) -> None:
    client = own_redis.client()
    store = Store(client)

    def restart() -> None:
        own_redis.stop()
        time.sleep(0.05)  # a moment of downtime for the simulator to meet; any length does
        own_redis.start()

    sim = Simulator(runtime(store), SimConfig(users=120, seed=4, concurrency=8, duplicate_rate=0.1, crash_rate=0.03,
                                              redis_restart_every=150), restart_redis=restart)
    res = sim.run()
    assert res.redis_restarts >= 2
    assert res.unavailable > 0 and res.redeliveries >= res.unavailable  # deliveries that met a dead Redis came again
    assert res.still_active == 0
    assert_clean(store, res)


# ---------------------------------------------------------------- clocks


def test_virtual_clock_runs_days_of_traffic_in_seconds(store: Store) -> None:
    three_days = 3 * 86_400
    res = simulate(store, users=150, seed=8, concurrency=4, arrival_seconds=three_days,
                   personas=(Persona(abandon_rate=0.2, think_time=600.0),))
    assert res.virtual_seconds > 2 * 86_400 and res.seconds < 30
    assert res.timeouts_fired > 0 and res.abandoned > 0
    recs = [r for rs in histories(store).values() for r in rs]
    ts = sorted(r["ts"] for r in recs)
    assert ts[0] >= SIM_EPOCH_MS and ts[-1] - ts[0] > 2 * 86_400_000
    expired = [r for r in recs if r["event"] in ("expire", "timeout")]
    assert expired  # the left sessions timed out exactly on virtual time, nobody slept
    assert_clean(store, res)


def test_realtime_mode_at_high_speed(store: Store) -> None:
    before = int(time.time() * 1000)
    t0 = time.monotonic()
    res = simulate(store, users=12, seed=2, concurrency=4, realtime=True, speed=400.0, arrival_seconds=20,
                   personas=(Persona(invalid_rate=0.1, abandon_rate=0.0, think_time=20.0),),
                   default_service=ServiceBehaviour(error_rate=0.1, slow_rate=0.0, timeout_rate=0.0))
    took = time.monotonic() - t0
    assert res.still_active == 0 and res.started == 12
    # think times of ~20 s each ran ~400x faster, but on the wall clock (at 1x the run would take minutes;
    # the bound is loose so a busy machine passes)
    assert took < 90 and res.seconds >= 0.05
    ts = [r["ts"] for rs in histories(store).values() for r in rs]
    assert min(ts) >= before - 1000 and max(ts) <= int(time.time() * 1000) + 1000  # wall-clock commits
    assert_clean(store, res)


def test_live_time_starts_when_the_run_does(store: Store) -> None:
    # A simulator built a while before it runs (over HTTP, once the server's port is known)
    # used to date its first events at construction: the run saw them all as overdue,
    # skipped every delay and gave up on a slow service at once. The wall here runs an
    # hour ahead once built; every delivery must be dated after that jump.
    sim = Simulator(runtime(store), SimConfig(users=3, seed=4, realtime=True, speed=400.0, arrival_seconds=5,
                                              personas=(CALM,), default_service=RELIABLE))
    jumped = int(time.time() * 1000) + 3_600_000
    sim._wall = lambda: int(time.time() * 1000) + 3_600_000  # type: ignore[method-assign]
    res = sim.run()
    assert res.still_active == 0
    assert min(s.ts for s in res.sent) >= jumped


def test_the_configuration_is_read_only(store: Store) -> None:
    sim = Simulator(runtime(store), SimConfig(users=1))
    with pytest.raises(AttributeError):
        sim.cfg = SimConfig(users=2)  # type: ignore[misc]


# ---------------------------------------------------------------- over HTTP


def test_http_mode_against_flowkit_serve(redis_url: str, store: Store, tmp_path: Path) -> None:
    port = free_port()
    with FakeGraphAPI() as graph:
        proc = start_serve(redis_url, graph, port, tmp_path / "serve.log", "--scheduler", "0.2")
        try:
            cfg = SimConfig(users=10, seed=6, concurrency=4, speed=200.0, arrival_seconds=10, duplicate_rate=0.2,
                            personas=(Persona(invalid_rate=0.1, abandon_rate=0.0),),
                            http=HttpTarget(f"http://127.0.0.1:{port}", SECRET))
            res = Simulator(runtime(store), cfg).run()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a slow graceful shutdown on a loaded machine is not this test's subject
                proc.kill()
                proc.wait(timeout=30)
        assert res.still_active == 0 and res.started == 10
        applied = [s for s in res.sent if s.outcome == "applied"]
        assert len(applied) >= 30 and all(s.acked for s in applied)
        assert res.duplicates_sent > 0 and res.duplicates_absorbed > 0
        sids = {s.session_id for s in res.sent}
        assert all(graph.to(sid) for sid in sids)  # the server's replies went out through the Graph API
    assert res.replies == {}  # the server's channel is not the simulator's to count
    report = check_store(store, runtime(store).registry, sent=res.log_records())
    assert report.ok, [str(v) for v in report.violations[:10]]
    assert report.messages_checked == len({(s.session_id, s.message_id) for s in applied})
    histories_ = histories(store)
    assert set(histories_) == sids
    assert all(r["actor"] in ("runtime", "simulator") for rs in histories_.values() for r in rs)


def test_sent_log_file_is_what_check_reads(store: Store, tmp_path: Path) -> None:
    res = simulate(store, users=15, seed=9, duplicate_rate=0.3)
    path = res.write_log(tmp_path / "sent.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    ins = [x for x in lines if x["kind"] == "in"]
    assert len(ins) == res.messages and {x["kind"] for x in lines} == {"in", "replies"}
    assert set(ins[0]) == {"kind", "session_id", "message_id", "ts", "text", "acked", "outcome", "delivery"}
    assert {x["delivery"] for x in ins} >= {"first", "duplicate"}
    # a log that claims one more acknowledged message than was stored is caught
    ins[0] = {**ins[0], "message_id": "wamid.never-stored"}
    report = check_store(store, runtime(store).registry, sent=ins)
    assert [v.code for v in report.violations] == ["LOST_MESSAGE"]


# ---------------------------------------------------------------- deployment-wide metrics


def test_simulated_traffic_records_the_runtime_metrics(store: Store) -> None:
    """The dashboard's rates read RedisMetrics: simulated traffic must count there, on its own clock."""
    from flowkit.metrics import by_label, minutes, total, totals

    rt = runtime(store)
    res = Simulator(rt, SimConfig(users=25, seed=4, concurrency=4, duplicate_rate=0.2)).run()
    assert rt.metrics is None  # lent for the run, given back
    counts = totals(store.client)
    recs = [r for rs in histories(store).values() for r in rs]
    user_msgs = [r for r in recs if r["event"] in ("message", "start", "command") and r["message_id"]
                 and not r["message_id"].startswith("result:")]
    assert total(counts, "messages_in") == len(user_msgs) > 25
    assert sum(by_label(counts, "sessions_started").values()) == res.started == 25
    assert total(counts, "events") >= len(recs) and by_label(counts, "events")[("duplicate",)] > 0
    assert total(counts, "messages_out") > 0
    # the simulator stands in for the services: their calls count as the runtime counts its own
    calls, errors = by_label(counts, "service_calls"), by_label(counts, "service_errors")
    assert sum(calls.values()) == res.service_calls - res.service_timeouts > 0
    assert sum(errors.values()) == res.service_errors
    # minutes on virtual time, where the commits are
    per_minute = minutes(store.client, SIM_EPOCH_MS - 60_000, max(r["ts"] for r in recs) + 60_000)
    assert per_minute and sum(m.get("messages_in", 0) for m in per_minute.values()) == len(user_msgs)


def test_a_runtime_with_its_own_metrics_keeps_them(store: Store) -> None:
    from flowkit.metrics import RedisMetrics, total, totals

    own = RedisMetrics(store.client, flush_every=3600)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, metrics=own)
    Simulator(rt, SimConfig(users=5, seed=1)).run()
    assert rt.metrics is own and total(totals(store.client), "messages_in") == 0  # the caller flushes its own
    own.flush()
    assert total(totals(store.client), "messages_in") > 5


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("kw", [
    {"duplicate_rate": 1.5}, {"out_of_order_rate": -0.1}, {"crash_rate": 2},
    {"personas": (Persona(invalid_rate=1.2),)}, {"personas": (Persona(help_rate=-1),)},
    {"default_service": ServiceBehaviour(error_rate=3)}, {"services": {"orders.create": ServiceBehaviour(timeout_rate=-0.5)}},
])
def test_rates_outside_0_1_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        SimConfig(**kw)


def test_other_bad_configurations_are_refused(store: Store) -> None:
    for kw in ({"users": -1}, {"concurrency": 0}, {"personas": ()}, {"speed": 0},
               {"crash_rate": 0.1, "http": HttpTarget("http://x", "s")}):
        with pytest.raises(ConfigError):
            SimConfig(**kw)
    with pytest.raises(ConfigError, match="restart_redis"):
        Simulator(runtime(store), SimConfig(redis_restart_every=10))
    with pytest.raises(ConfigError, match="triggers"):
        Simulator(runtime(store), SimConfig(users=1, flows=["collect_contact"])).run()
