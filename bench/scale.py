"""Scale-out figures a user can size with (issue 21): 1, 2 and 4 runtime processes on one
redis-server and on a local 3-master Redis Cluster, side by side in one run.

    .venv/bin/python bench/scale.py [--processes 1,2,4] [--messages 16000] [--sessions 400]
                                    [--concurrency 64] [--loop uvloop]

Each process is an :class:`~flowkit.runtime.AsyncRuntime` on its own ``AsyncStore`` (auto-
pipelined on a single server, redis-py's cluster pipeline on Cluster) with ``--concurrency``
tasks, on its own share of the sessions (the TALLY flow, as bench/runtime.py: it counts every
message it applies, so lost updates are counted from the final counters). The processes start
their sessions untimed, then all start together; messages/s is every message over the
slowest process's time. Redis CPU per message is the servers' ``used_cpu_user + sys``
(all masters) over the run divided by the messages. Memory, from ``MEMORY USAGE`` of the
session keys (state, history stream, dedupe set, snapshots, outbox): bytes per session at the
end of the run (``records/session`` records each) and bytes per record (growth during the
run over its messages; a stream grows in 4 KB listpack nodes, so this needs a few dozen
records per session to mean anything). AOF on (appendfsync everysec) everywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from flowkit.store import RedisServer, connect  # noqa: E402
from flowkit.store.server import LocalCluster  # noqa: E402


def masters(url: str) -> list[Any]:
    client = connect(url)
    if hasattr(client, "get_primaries"):
        nodes = [connect(f"redis://{n.host}:{n.port}/0") for n in client.get_primaries()]
        client.close()
        return nodes
    return [client]


def cpu(nodes: list[Any]) -> float:
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in (n.info("cpu") for n in nodes))


def memory(nodes: list[Any]) -> int:
    """Bytes held by every session's keys (MEMORY USAGE, all samples): state, history,
    dedupe, snapshots, outbox. The shared indexes (a sorted-set entry or two per session)
    are not counted; ``used_memory`` moves too much with buffers to size a record with."""
    total = 0
    for n in nodes:
        for key in n.scan_iter(match="fk:{s:*", count=1000):
            total += int(n.memory_usage(key, samples=0) or 0)
    return total


def worker(url: str, prefix: str, sessions: int, messages: int, concurrency: int, seed: int, loop: str) -> None:
    """One runtime process (--worker): starts its sessions, prints READY, waits for a line on
    stdin, runs its messages, prints its result as JSON."""
    import asyncio

    from runtime import TALLY, drive_async, workload  # bench/runtime.py: the same flow and workload

    from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime, FlowRegistry
    from flowkit.store import AsyncStore, connect_async

    async def main() -> dict[str, Any]:
        starts, stream, per = workload(prefix, sessions, messages, seed)
        store = AsyncStore(connect_async(url))
        rt = AsyncRuntime(store, FlowRegistry([TALLY]), channel=AsyncRecordingChannel())
        await drive_async(rt.handle, starts, concurrency)
        await store.flush()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        secs, _, py = await drive_async(rt.handle, stream, concurrency)
        await store.flush()
        lost = 0
        for sid, _ in starts:
            state = await store.load(sid)
            lost += per - (state or {"slots": {"n": 0}})["slots"]["n"]
        await store.client.aclose()
        return {"n": len(stream), "seconds": secs, "py_cpu": py, "lost": lost, "conflicts": rt.stats["conflicts"]}

    if loop == "uvloop":
        import uvloop

        result = uvloop.run(main())
    else:
        result = asyncio.run(main())
    print(json.dumps(result), flush=True)


def run(url: str, procs: int, sessions: int, messages: int, concurrency: int, seed: int, loop: str,
        tag: str) -> dict[str, Any]:
    nodes = masters(url)
    mem0 = memory(nodes)
    children = [subprocess.Popen([sys.executable, __file__, "--worker", "--url", url, "--prefix", f"{tag}{p}",
                                  "--sessions", str(sessions // procs), "--messages", str(messages // procs),
                                  "--concurrency", str(concurrency), "--seed", str(seed + p), "--loop", loop],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                for p in range(procs)]
    for c in children:
        assert c.stdout is not None
        line = c.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"a runtime process failed to start: {line!r}")
    mem1, cpu0 = memory(nodes), cpu(nodes)
    t0 = time.perf_counter()
    for c in children:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    results = []
    for c in children:
        out, _ = c.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - t0
    cpu1, mem2 = cpu(nodes), memory(nodes)
    for n in nodes:
        n.close()
    n = sum(r["n"] for r in results)
    started = (sessions // procs) * procs
    return {"procs": procs, "n": n, "rate": n / max(r["seconds"] for r in results), "wall": wall,
            "redis_cpu_us": (cpu1 - cpu0) / n * 1e6, "py_cpu_us": sum(r["py_cpu"] for r in results) / n * 1e6,
            "lost": sum(r["lost"] for r in results), "conflicts": sum(r["conflicts"] for r in results) / n,
            "bytes_session": (mem2 - mem0) / started, "bytes_record": (mem2 - mem1) / n,
            "records": (started + n) / started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--messages", type=int, default=16000, help="messages per row (split over the processes)")
    ap.add_argument("--sessions", type=int, default=400, help="sessions per row (split over the processes)")
    ap.add_argument("--concurrency", type=int, default=64, help="tasks per process")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.url, args.prefix, args.sessions, args.messages, args.concurrency, args.seed, args.loop)

    counts = [int(p) for p in args.processes.split(",")]
    rows: list[tuple[str, dict[str, Any]]] = []
    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "single").start()
        try:
            for i, p in enumerate(counts):
                rows.append(("one redis-server", run(server.url, p, args.sessions, args.messages, args.concurrency,
                                                     args.seed, args.loop, f"1{i}")))
        finally:
            server.stop()
        if not args.no_cluster:
            cluster = LocalCluster(Path(tmp) / "cluster", masters=3, appendonly=True).start()
            try:
                for i, p in enumerate(counts):
                    rows.append(("3-master Cluster", run(cluster.url, p, args.sessions, args.messages,
                                                         args.concurrency, args.seed, args.loop, f"2{i}")))
            finally:
                cluster.stop()
    print(f"# bench/scale.py {dt.date.today()}: {platform.node()}, {os.cpu_count()} cores, load average "
          f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; Python {platform.python_version()}, loop "
          f"{args.loop}; {args.sessions} sessions, {args.messages:,} messages per row, {args.concurrency} tasks per "
          f"process; took {time.perf_counter() - started:.0f} s")
    print()
    print("| Redis | processes | msgs/s | vs 1 process | Redis CPU µs/msg | runtime CPU µs/msg | conflicts/msg "
          "| lost | bytes/session | records/session | bytes/record |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base: dict[str, float] = {}
    for where, r in rows:
        base.setdefault(where, r["rate"])
        print(f"| {where} | {r['procs']} | {r['rate']:,.0f} | {r['rate'] / base[where]:.2f}x | "
              f"{r['redis_cpu_us']:.0f} | {r['py_cpu_us']:.0f} | {r['conflicts']:.3f} | {r['lost']} | "
              f"{r['bytes_session']:,.0f} | {r['records']:.0f} | {r['bytes_record']:,.0f} |")


if __name__ == "__main__":
    main()
