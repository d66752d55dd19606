"""Every CLI command against the local 3-master Redis Cluster (``redis+cluster://``), on
sessions a hostile simulation left spread over the three masters: no CrossSlot errors, the
same answers as on one Redis. Then four `flowkit serve` processes share the cluster under
duplicate and out-of-order deliveries, and `flowkit check` finds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit import dashboard
from flowkit.cli import app
from flowkit.runtime import FlowRegistry, RecordingChannel, Runtime
from flowkit.sim import HttpTarget, Persona, SimConfig, Simulator
from flowkit.store import LocalCluster, Store
from flowkit.store import keys as K
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, ROOT
from tests.runtime.test_versions import V4_TEXT, talk
from tests.runtime.webutil import SECRET, start_serve
from tests.waiting import stop

pytestmark = pytest.mark.cluster
runner = CliRunner()
SERVICES = "examples.services:services"


@dataclass
class Cluster:
    url: str
    client: Any
    tmp: Path
    sent: Path  # the simulation's sent-message log
    sessions: list[str]


def cli(*args: str, code: int | tuple[int, ...] = 0) -> Any:
    r = runner.invoke(app, list(args))
    codes = (code,) if isinstance(code, int) else code
    assert r.exit_code in codes, (args, r.exit_code, r.stdout[-2000:], r.stderr[-3000:], r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback instead of a message: {r.exception!r}"
    return r


def out(*args: str, code: int | tuple[int, ...] = 0) -> Any:
    return json.loads(cli(*args, code=code).stdout)


@pytest.fixture
def cluster(redis_cluster: LocalCluster, cluster_client: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The cluster after `flowkit simulate` (duplicates, out-of-order answers, crashes)."""
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_cluster.url)
    sent = tmp_path / "sent.jsonl"
    report = out("simulate", "examples/flows", "--users", "10", "--seed", "4", "--duplicate-rate", "0.2",
                 "--out-of-order-rate", "0.2", "--crash-rate", "0.1", "--services", SERVICES, "--log", str(sent),
                 "--format", "json")
    assert report["started"] == 10 and report["crashes"] > 0 and report["duplicates_sent"] > 0
    sessions = sorted(Store(cluster_client).iter_session_ids())
    masters = {cluster_client.get_node_from_key(K.session_keys(s).state).name for s in sessions}
    assert len(sessions) == 10 and len(masters) == 3  # really spread over the cluster
    return Cluster(redis_cluster.url, cluster_client, tmp_path, sent, sessions)


# ---------------------------------------------------------------- one case per command


def check_(c: Cluster) -> None:
    report = out("check", "examples/flows", "--sent", str(c.sent), "--format", "json")
    assert report["ok"] and report["sessions"] == 10 and report["messages_checked"] > 0


def edge_test(c: Cluster) -> None:
    assert out("test", "examples/flows", "--format", "json")["ok"]


def recover(c: Cluster) -> None:
    report = out("recover", "examples/flows", "--services", SERVICES, "--scan", "--no-send", "--outbox-age", "0",
                 "--format", "json")
    assert report["scanned"] == 10 and report["quarantined_restored"] == 0


def worker(c: Cluster) -> None:
    report = out("worker", "examples/flows", "--services", SERVICES, "--once", "--no-send", "--alerts", "examples/alerts.yaml",
                 "--format", "json")
    assert "alerts_firing" in report
    assert c.client.hget("fk:settings", "terminal_ttl_ms") == b"2592000000"  # the 30-day default, recorded


def migrate(c: Cluster) -> None:
    store = Store(c.client)
    rt = Runtime(store, FlowRegistry(EXAMPLE_FLOWS.values(), client=c.client), channel=RecordingChannel(),
                 services=EXAMPLE_SERVICES)
    talk(rt, "mig-a", ["pizza"])
    talk(rt, "mig-b", ["pizza", "small", "1"])
    v4 = c.tmp / "order_pizza.yaml"
    v4.write_text(V4_TEXT)
    base = ["migrate", "order_pizza", "--to", "4", "--flows", str(v4), "--format", "json"]
    assert [r["session_id"] for r in out(*base, code=1)["refused"]] == ["mig-b"]
    assert sorted(out(*base, "--map", "ask_address=ask_street")["migrated"]) == ["mig-a", "mig-b"]
    assert {store.load(s)["flow_version"] for s in ("mig-a", "mig-b")} == {"4"}
    assert FlowRegistry(client=c.client).versions("order_pizza") == ["3", "4"]


def export_analyze(c: Cluster) -> None:
    cli("export", str(c.tmp / "exp"), "-q")
    report = out("analyze", str(c.tmp / "exp"), "--flows", "examples/flows", "--format", "json", code=(0, 1))
    assert report["summary"]["sessions"] == 10
    assert out("analytics", str(c.tmp / "exp"), "--format", "json")
    assert out("check", "examples/flows", "--export", str(c.tmp / "exp"), "--format", "json")["ok"]


def backup_restore(c: Cluster) -> None:
    assert out("backup", str(c.tmp / "b.jsonl"), "--format", "json")["sessions"] == 10
    for node in c.client.get_primaries():
        c.client.flushall(target_nodes=node)
    assert out("restore", str(c.tmp / "b.jsonl"), "--format", "json")["restored"] == 10
    assert sorted(Store(c.client).iter_session_ids()) == c.sessions
    assert out("check", "examples/flows", "--sent", str(c.sent), "--format", "json")["ok"]


def reconcile(c: Cluster) -> None:
    out("reconcile", "--metrics", "--format", "json")
    assert out("reconcile", "--check", "--format", "json")["fixed"] == 0


def session(c: Cluster) -> None:
    sid = max(c.sessions, key=lambda s: Store(c.client).load(s)["version"])
    state = out("session", "show", sid, "--format", "json")
    assert state["version"] >= 3
    history = out("session", "history", sid, "--format", "json")
    assert [r["version"] for r in history] == list(range(1, state["version"] + 1))
    assert out("session", "show", sid, "--version", "2", "--format", "json")["version"] == 2
    assert out("session", "diff", sid, "1", "2", "--format", "json")["changes"] is not None
    rolled = out("session", "rollback", sid, "1", "--format", "json")
    assert rolled["version"] == state["version"] + 1
    assert out("session", "show", sid, "--format", "json")["step"] == out("session", "show", sid, "--version", "1",
                                                                         "--format", "json")["step"]


def redis_status(c: Cluster) -> None:
    status = out("redis", "status", "--format", "json")
    assert status["reachable"] and status["url"].startswith("redis+cluster://") and status["masters"] == 3
    nodes = c.client.info("memory", target_nodes=c.client.PRIMARIES).values()
    assert float(status["used_memory_human"].rstrip("M")) > max(n["used_memory"] for n in nodes) / 2**20  # all masters
    assert sum(status["flows"].values()) == 10 and status["quarantined"] == 0
    assert status["terminal_ttl"] == "30d" and status["terminal_ttl_source"].startswith("flowkit simulate")


def redis_cli(c: Cluster) -> None:
    first = c.url.removeprefix("redis+cluster://").split(",")[0]  # the node redis-cli connects to
    key = next(k for k in (f"fk:probe:{i}" for i in range(100)) if c.client.get_node_from_key(k).name != first)
    cli("redis", "cli", "SET", key, "1")  # -c: redis-cli follows the MOVED redirect to the key's master
    assert c.client.get(key) == b"1"


def alerts(c: Cluster) -> None:
    report = out("alerts", "--rules", "examples/alerts.yaml", "--format", "json", code=(0, 1))
    assert set(report) >= {"fired", "resolved", "active"}


def dashboard_data(c: Cluster) -> None:
    src = dashboard.open_source(c.url)
    assert dashboard.probe(src.client) is None
    flows = dashboard.load_flows(src)
    assert set(flows) == {"book_appointment", "collect_contact", "feedback", "order_pizza", "refund", "support_triage"}
    screen = dashboard.refresh(src, flows=flows)
    assert screen["headline"]["sessions"] == 10 and screen["live"].exact
    sid = c.sessions[0]
    detail = dashboard.session_detail(src.store, sid)
    assert detail is not None and detail["state"]["session_id"] == sid
    assert dashboard.rollback(src.store, sid, 1).version == detail["state"]["version"] + 1


def serve(c: Cluster) -> None:
    import httpx

    from flowkit.channels.whatsapp.payloads import text_payload
    from tests.runtime.webutil import signed

    port = free_port()
    with FakeGraphAPI() as graph:
        proc = start_serve(c.url, graph, port, c.tmp / "serve.log", "--scheduler", "0.2")
        try:
            body, headers = signed(text_payload("31699000001", "pizza", message_id="wamid.C1"))
            r = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=10)
            assert r.status_code == 200 and r.json()["applied"] == 1
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert metrics.status_code == 200 and "flowkit_" in metrics.text
        finally:
            stop(proc)
        assert graph.to("31699000001")  # the reply went out
    assert Store(c.client).load("31699000001")["step"] == "ask_size"


CASES: list[Callable[[Cluster], None]] = [check_, edge_test, recover, worker, migrate, export_analyze, backup_restore,
                                          reconcile, session, redis_status, redis_cli, alerts, dashboard_data, serve]


@pytest.mark.parametrize("case", CASES, ids=[f.__name__.strip("_") for f in CASES])
def test_command_on_cluster(cluster: Cluster, case: Callable[[Cluster], None]) -> None:
    case(cluster)


# ---------------------------------------------------------------- four runtime processes


def test_four_serve_processes_share_the_cluster_and_check_finds_nothing(redis_cluster: LocalCluster,
                                                                         cluster_client: Any, tmp_path: Path) -> None:
    """Four `flowkit serve` processes (each firing due timeouts) and a `flowkit worker` on one
    cluster; four simulated crowds, one per process, with duplicate and out-of-order
    deliveries, while Graph refuses some replies. Afterwards the outbox is empty, every
    acknowledged message is in the history exactly once and every history replays."""
    ports = [free_port() for _ in range(4)]
    store = Store(cluster_client)
    results: list[Any] = [None] * 4
    errors: list[BaseException] = []
    with FakeGraphAPI() as graph:
        procs = [start_serve(redis_cluster.url, graph, port, tmp_path / f"serve{i}.log", "--scheduler", "0.2")
                 for i, port in enumerate(ports)]
        # a worker beside them redelivers the replies Graph refuses now (24h window closed: not retried)
        with (tmp_path / "worker.log").open("wb") as sink:  # the child keeps its own descriptor
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("flowkit")), "worker", "examples/flows", "--services", SERVICES,
                 "--interval", "0.2", "--outbox-age", "0.5"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink,
                env=dict(os.environ, FLOWKIT_REDIS_URL=redis_cluster.url, **graph.env())))
        graph.fail_next(8, 400, code=131047)
        try:
            def crowd(i: int) -> None:
                try:
                    cfg = SimConfig(users=6, seed=20 + i, concurrency=3, speed=400.0, arrival_seconds=5,
                                    duplicate_rate=0.3, out_of_order_rate=0.2,
                                    personas=(Persona(invalid_rate=0.15, abandon_rate=0.0),),
                                    http=HttpTarget(f"http://127.0.0.1:{ports[i]}", SECRET))
                    rt = Runtime(store, FlowRegistry(client=cluster_client), channel=RecordingChannel())
                    results[i] = Simulator(rt, cfg).run()
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    errors.append(exc)

            threads = [threading.Thread(target=crowd, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=240)
            assert not errors, errors
            assert all(not t.is_alive() for t in threads)
            deadline = time.monotonic() + 60
            while cluster_client.zcard(K.IDX_OUTBOX) and time.monotonic() < deadline:
                time.sleep(0.1)  # the worker finishes what the refused sends left
            assert cluster_client.zcard(K.IDX_OUTBOX) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    assert all(r.started == 6 and r.still_active == 0 for r in results)
    assert sum(r.duplicates_absorbed for r in results) > 0 and sum(r.out_of_order for r in results) > 0
    assert any('"reply send failed' in (tmp_path / f"serve{i}.log").read_text() for i in range(4))
    sent = tmp_path / "sent.jsonl"
    sent.write_text("".join(json.dumps(rec) + "\n" for r in results for rec in r.log_records()))
    report = out("check", "examples/flows", "--redis", redis_cluster.url, "--sent", str(sent), "--format", "json")
    assert report["ok"] and report["sessions"] == 24, report["violations"][:5]
    assert report["messages_checked"] == len({(s.session_id, s.message_id) for r in results for s in r.sent
                                              if s.outcome == "applied"})
    masters = {cluster_client.get_node_from_key(K.session_keys(s).state).name for s in store.iter_session_ids()}
    assert len(masters) == 3
