"""Faults while simulated users talk to a real `flowkit serve` over HTTP (the simulator's
HTTP mode, which redelivers what was not answered 200, as WhatsApp does).

Each fault happens at seeded points of the traffic: kill -9 of `serve` (restarted), kill -9
of a `flowkit worker` running recovery beside it (restarted), Redis paused (SIGSTOP, then
SIGCONT) and Redis restarted. Afterwards, with one `flowkit recover` round: every user
finished, every acknowledged message is stored exactly once (`check_store` with the
simulator's sent log), every service call got its result (no session waits for one, every
placed order has its id), `flowkit check` is clean, and `flowkit reconcile --check` finds
nothing to fix (on a single server the commit script writes the derived indexes itself, so no
kill can leave a stale entry).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.check import check_store
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.sim import HttpTarget, Persona, SimConfig, Simulator
from flowkit.store import RedisServer, Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.faults.util import FLOWKIT, own_redis_server, run_cli, stop, wait_for
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, ROOT
from tests.runtime.webutil import SECRET, signed, start_serve

USERS = 12
FAULTS = ["kill_serve", "kill_worker", "redis_sigstop", "redis_restart"]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis_server(tmp_path / "redis", appendonly=True) as server:
        yield server


class Rig:
    """The processes of one run and the faults that hit them."""

    def __init__(self, redis: RedisServer, graph: FakeGraphAPI, tmp: Path) -> None:
        self.redis = redis
        self.graph = graph
        self.tmp = tmp
        self.port = free_port()
        self.serve: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.refused = 0  # probe deliveries answered 503 during a Redis fault
        self._probes = 0

    def probe_refused(self) -> bool:
        """Post a delivery of a probe sender (matches no flow: no session); True on a 503."""
        self._probes += 1
        body, headers = signed(text_payload("31699999999", "probe", message_id=f"wamid.probe.{self._probes}"))
        try:
            r = httpx.post(f"http://127.0.0.1:{self.port}/webhook", content=body, headers=headers, timeout=15)
        except httpx.TransportError:
            return False
        self.refused += r.status_code == 503
        return r.status_code == 503

    def start_serve(self) -> None:
        self.serve = start_serve(self.redis.url, self.graph, self.port, self.tmp / "serve.log", "--scheduler", "0.2")

    def start_worker(self) -> None:
        env = dict(os.environ, FLOWKIT_REDIS_URL=self.redis.url, **self.graph.env())
        with (self.tmp / "worker.log").open("ab") as out:
            # a short outbox age: the worker races the server for the same effects
            self.worker = subprocess.Popen([FLOWKIT, "worker", "examples/flows", "--services",
                                            "examples.services:services", "--interval", "0.1", "--outbox-age", "0.3"],
                                           cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def kill_serve(self) -> None:
        assert self.serve is not None
        os.kill(self.serve.pid, signal.SIGKILL)
        self.serve.wait()
        self.start_serve()

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait()
        self.start_worker()

    def redis_sigstop(self) -> None:
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signal.SIGSTOP)
        try:  # paused until a delivery was refused (the server waits out its socket timeout first)
            wait_for(self.probe_refused, "a delivery to be refused while Redis is paused", timeout=60)
        finally:
            os.kill(self.redis.pid, signal.SIGCONT)

    def redis_restart(self) -> None:
        port = self.redis.port
        self.redis.stop()
        wait_for(self.probe_refused, "a delivery to be refused while Redis is down", timeout=60)
        self.redis = RedisServer(self.redis.data_dir, port=port, appendonly=True).start()

    def close(self) -> None:
        for p in (self.serve, self.worker):
            if p is not None:
                stop(p)


def _dump_waiting(sim: Simulator, rig: Rig) -> None:
    """Print what a user still waiting saw (its deliveries and its session), for the report."""
    store = Store(rig.redis.client())
    for user in sim._users:
        if user.state != "active":
            continue
        print("WAITING", user.session_id, "answered", user.answered, "inflight", user.inflight, "polls", user.polls)
        print("  state", store.load(user.session_id))
        for s in sim.result.sent:
            if s.session_id == user.session_id:
                print("  sent", s)
        print("  outbox", store.pending_effects(user.session_id))


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_lose_nothing_double_nothing(fault: str, own_redis: RedisServer, tmp_path: Path) -> None:
    rng = random.Random(f"faults-{fault}")
    points = sorted(rng.uniform(0.15, 0.75) for _ in range(2))  # shares of the expected deliveries
    expected = USERS * 5
    store = Store(own_redis.client())
    with FakeGraphAPI() as graph:
        rig = Rig(own_redis, graph, tmp_path)
        # live over HTTP: the simulator's delays (divided by speed) and its patience with a
        # session that waits for a service (HttpTarget.poll) run on the wall clock
        sim = Simulator(Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES),
                        SimConfig(users=USERS, seed=rng.randrange(1000), concurrency=4, speed=60.0,
                                  arrival_seconds=3, duplicate_rate=0.1, flows=["order_pizza", "refund"],
                                  personas=(Persona(invalid_rate=0.1, abandon_rate=0.0, cancel_rate=0.0),),
                                  http=HttpTarget(f"http://127.0.0.1:{rig.port}", SECRET, timeout=3)))
        try:
            rig.start_serve()
            # as in production, a worker runs beside serve: a reply the background sender could
            # not finish while Redis was away is left in the outbox, and the worker sends it
            rig.start_worker()
            done = threading.Event()
            failed: list[BaseException] = []

            def run() -> None:
                try:
                    sim.run()
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    failed.append(exc)
                finally:
                    done.set()

            traffic = threading.Thread(target=run, daemon=True)
            traffic.start()
            for share in points:
                wait_for(lambda s=share: len(sim.result.sent) >= s * expected or done.is_set(),
                         f"{share:.0%} of the traffic", timeout=90)
                if done.is_set():
                    break
                getattr(rig, fault)()
            assert done.wait(timeout=120), "the simulated users did not finish"
            assert not failed, failed
            own_redis = rig.redis  # (a restart made a new handle)
        finally:
            rig.close()
        res = sim.result
        if res.still_active:
            _dump_waiting(sim, rig)
        assert res.still_active == 0 and res.started == USERS, res.summary()
        if fault.startswith("redis"):
            assert rig.refused >= 1, "the fault never reached the server"
        out = run_cli(own_redis.url, "recover", "examples/flows", "--services", "examples.services:services",
                      "--outbox-age", "0", "--format", "json", env=graph.env())
        assert out.returncode == 0, out.stderr
    store = Store(own_redis.client())
    report = check_store(store, sim.rt.registry, sent=res.log_records())
    assert report.ok, [str(v) for v in report.violations[:10]]
    assert report.messages_checked >= USERS * 2
    for state in store.iter_sessions():
        assert state["status"] != "waiting_service", state  # no call lost
        if state["flow"] == "order_pizza" and state["status"] == "completed":
            assert str(state["slots"].get("order_id", "")).startswith("ORD-"), state
    out = run_cli(own_redis.url, "check", "examples/flows", "--format", "json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    # On a single server the commit script writes the derived indexes itself (issue #17), so
    # no kill or timeout can leave a stale entry: `reconcile --check` is clean as it is.
    out = run_cli(own_redis.url, "reconcile", "--check", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
