"""Benchmark of the simulator and the history checker (issue 7), one run, one table.

    .venv/bin/python bench/sim.py              # the full run (< 3 minutes on 2 busy cores)
    .venv/bin/python bench/sim.py --quick      # a smoke run (~20 s)
    .venv/bin/python bench/sim.py [--users 1500] [--seed 1] [--markdown]

It starts its own redis-server (flowkit's embedded configuration: AOF on) and drives the
example flows in virtual-clock mode through the real runtime:

- simulated users/s and messages/s (deliveries handled, duplicates and redeliveries
  included) at concurrency 1, 4 and 16, calm (no hostile option) and hostile (20%
  duplicates, 10% out of order, 5% crashes, 20% invalid answers, services failing,
  slow and silent);
- ``check_store`` on what each run left, in seconds per 1,000 sessions (every session's
  state and history read atomically, replayed through the engine, the sent log checked);
  every run must come out clean (0 violations), else the script exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.services import services as SERVICES  # noqa: E402
from flowkit.check import check_store  # noqa: E402
from flowkit.flow import load_flows  # noqa: E402
from flowkit.runtime import RecordingChannel, Runtime  # noqa: E402
from flowkit.sim import Persona, ServiceBehaviour, SimConfig, Simulator  # noqa: E402
from flowkit.store import RedisServer, Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CALM: dict[str, Any] = {}
HOSTILE: dict[str, Any] = dict(
    duplicate_rate=0.2, out_of_order_rate=0.1, crash_rate=0.05,
    personas=(Persona(invalid_rate=0.2, abandon_rate=0.05, back_rate=0.03, cancel_rate=0.01, help_rate=0.03),),
    default_service=ServiceBehaviour(error_rate=0.1, slow_rate=0.1, timeout_rate=0.05),
)


def run_one(client: Any, flows: Any, users: int, concurrency: int, seed: int, hostile: bool) -> dict[str, Any]:
    client.flushall()
    store = Store(client)
    rt = Runtime(store, flows, channel=RecordingChannel(), services=SERVICES)
    cfg = SimConfig(users=users, concurrency=concurrency, seed=seed, **(HOSTILE if hostile else CALM))
    res = Simulator(rt, cfg).run()
    t0 = time.perf_counter()
    report = check_store(store, rt.registry, sent=res.log_records())
    check_s = time.perf_counter() - t0
    return {
        "mode": "hostile" if hostile else "calm", "concurrency": concurrency, "users": users,
        "messages": res.messages, "seconds": res.seconds, "users_s": res.users_per_second,
        "msgs_s": res.messages_per_second, "virtual_h": res.virtual_seconds / 3600,
        "check_s": check_s, "check_per_1k": check_s / max(report.sessions, 1) * 1000, "records": report.records,
        "violations": len(report.violations), "duplicates": res.duplicates_absorbed, "crashes": res.crashes,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| mode | concurrency | users | messages | sim seconds | users/s | msgs/s | virtual hours | "
            "history records | check_store s | check s / 1k sessions | violations |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['concurrency']} | {r['users']:,} | {r['messages']:,} | {r['seconds']:.2f} | "
                     f"{r['users_s']:,.0f} | {r['msgs_s']:,.0f} | {r['virtual_h']:.1f} | {r['records']:,} | "
                     f"{r['check_s']:.2f} | {r['check_per_1k']:.2f} | {r['violations']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="60 users per run")
    ap.add_argument("--markdown", action="store_true", help="print the README section")
    args = ap.parse_args()
    users = 60 if args.quick else args.users
    flows = load_flows(ROOT / "examples" / "flows")
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        server = RedisServer(d).start()
        try:
            client = server.client()
            check_store(Store(client), Runtime(Store(client), flows).registry)  # warm-up: imports, script load
            for hostile in (False, True):
                for concurrency in (1, 4, 16):
                    rows.append(run_one(client, flows, users, concurrency, args.seed, hostile))
                    print(f"  {rows[-1]['mode']} x{concurrency}: {rows[-1]['msgs_s']:,.0f} msgs/s", file=sys.stderr)
        finally:
            server.stop()
    total = time.perf_counter() - started
    out = table(rows)
    if args.markdown:
        print(f"## Simulator ({dt.date(2026, 11, 30).isoformat()})\n")
        print(f"`python bench/sim.py` on {os.cpu_count()} shared cores, Python {platform.python_version()}; one run "
              f"({total:.0f} s), seed {args.seed}, example flows and services, virtual clock, own redis-server "
              "(AOF on). check_store reads every session atomically, replays it and checks the sent log.\n")
    print(out)
    bad = [r for r in rows if r["violations"]]
    if bad:
        print(f"VIOLATIONS in {len(bad)} run(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
