"""Benchmark of flowkit.store (issue 5), one run, printed as a table.

    .venv/bin/python bench/store.py [--commits 20000] [--sessions 2000] [--fsync everysec]

It starts its own redis-server (flowkit's embedded configuration: AOF on) and measures:

- commits/s of the flowkit commit (a realistic pizza-flow session: state, history record with
  a ~58-character WhatsApp message id, dedupe, one reply in the outbox, a timeout, derived
  indexes) against a naive GET + SET read-modify-write (which can lose updates) and against a
  bare EVALSHA of a no-op script (the round-trip floor), on one blocking connection and on
  asyncio with 64 concurrent tasks;
- Redis round trips per commit, counted by the client and cross-checked with INFO commandstats;
- Redis bytes per session holding 20 history records (used_memory delta, and MEMORY USAGE of
  the session's own keys).

Goals (issue 5): 1 round trip per commit, flowkit >= 50% of the EVALSHA floor, <= 4 KB per
session with 20 records.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowkit.store import AsyncStore, RedisServer, Store, connect, connect_async  # noqa: E402
from flowkit.store import keys as K  # noqa: E402
from flowkit.store.driver import Call  # noqa: E402
from flowkit.store.scripts import NOOP  # noqa: E402

T0 = 1_700_000_000_000
STEPS = ["ask_size", "ask_qty", "ask_address", "confirm"]


def wamid(sid: str, i: int) -> str:
    """A message id shaped like WhatsApp's (58 characters)."""
    return f"wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQz{sid[-6:]:>6}{i:08d}QTc2RUZGMEE4"


def next_state(prev: dict[str, Any] | None, sid: str, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The session after commit ``i`` and its history record (what the engine would produce)."""
    now = T0 + i * 1500
    step = STEPS[i % len(STEPS)]
    slots = {"profile": {"name": "Ana"}, "size": ["small", "medium", "large"][i % 3], "qty": 1 + i % 5}
    state = {"session_id": sid, "flow": "order_pizza", "flow_version": "3", "step": step, "status": "waiting_input",
             "slots": slots, "attempts": {step: i % 2}, "stack": [],
             "pending": {"wait": "input", "step": step, "deadline": now + 1_800_000, "trail": STEPS[:1 + i % 3]},
             "version": 0, "started_at": prev["started_at"] if prev else now, "updated_at": now}
    record = {"ts": now, "event": "message" if prev else "start", "from_step": prev["step"] if prev else None,
              "to_step": step, "path": [step], "status": "waiting_input", "message_id": wamid(sid, i),
              "input": json.dumps({"text": slots["size"]}), "error": None, "actor": "runtime"}
    return state, record


def commit_args(prev: dict[str, Any] | None, sid: str, i: int) -> dict[str, Any]:
    state, record = next_state(prev, sid, i)
    return {"session_id": sid, "expected_version": prev["version"] if prev else 0, "state": state, "record": record,
            "previous": prev, "message_id": record["message_id"],
            "effects": [{"kind": "reply", "text": f"Got it: {record['input']}"}],
            "timeout_at_ms": state["pending"]["deadline"]}


# ---------------------------------------------------------------- sync


def sync_flowkit(store: Store, n: int, sessions: int) -> float:
    prev: dict[str, dict[str, Any] | None] = {f"b{j}": None for j in range(sessions)}
    for j in range(sessions):  # warm: every session exists, the script is loaded
        sid = f"b{j}"
        args = commit_args(None, sid, 0)
        store.commit(**args)
        prev[sid] = args["state"]
    t = time.perf_counter()
    for i in range(n):
        sid = f"b{i % sessions}"
        args = commit_args(prev[sid], sid, i + 1)
        if store.commit(**args).outcome != "ok":
            raise AssertionError("unexpected conflict")
        prev[sid] = args["state"]
    return n / (time.perf_counter() - t)


def sync_naive(client: Any, n: int, sessions: int) -> float:
    for j in range(sessions):
        client.set(f"naive:{j}", json.dumps(next_state(None, f"n{j}", 0)[0]))
    t = time.perf_counter()
    for i in range(n):
        key = f"naive:{i % sessions}"
        state = json.loads(client.get(key))  # round trip 1
        new, _ = next_state(state, state["session_id"], i + 1)
        new["version"] = state["version"] + 1
        client.set(key, json.dumps(new))  # round trip 2; a concurrent writer's update is lost
    return n / (time.perf_counter() - t)


def sync_floor(store: Store, n: int) -> float:
    store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())])
    t = time.perf_counter()
    for _ in range(n):
        store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())])
    return n / (time.perf_counter() - t)


def sync_redis_py_evalsha(client: Any, n: int) -> float:
    sha = client.script_load(NOOP.source)
    t = time.perf_counter()
    for _ in range(n):
        client.evalsha(sha, 1, "fk:{s:floor}:state")
    return n / (time.perf_counter() - t)


# ---------------------------------------------------------------- asyncio, 64 tasks


async def async_run(kind: str, url: str, n: int, tasks: int = 64) -> float:
    client = connect_async(url)
    store = AsyncStore(client)
    per = n // tasks

    async def flowkit_task(k: int) -> None:
        sid = f"a{k}"  # one session per task: no conflicts, pure throughput
        prev = None
        for i in range(per):
            args = commit_args(prev, sid, i)
            if (await store.commit(**args)).outcome != "ok":
                raise AssertionError("unexpected conflict")
            prev = args["state"]

    async def naive_task(k: int) -> None:
        key = f"anaive:{k}"
        await client.set(key, json.dumps(next_state(None, f"n{k}", 0)[0]))
        for i in range(per):
            state = json.loads(await client.get(key))
            new, _ = next_state(state, state["session_id"], i + 1)
            await client.set(key, json.dumps(new))

    async def floor_task(k: int) -> None:
        for _ in range(per):
            await store.driver.execute([Call(NOOP, (f"fk:{{s:f{k}}}:state",), ())])

    fn = {"flowkit": flowkit_task, "naive": naive_task, "floor": floor_task}[kind]
    await store.driver.execute([Call(NOOP, ("fk:{s:warm}:state",), ())])  # load the no-op script
    if kind == "flowkit":
        await store.driver.execute([Call(NOOP, ("fk:{s:warm}:state",), ())])
    t = time.perf_counter()
    await asyncio.gather(*(fn(k) for k in range(tasks)))
    rate = per * tasks / (time.perf_counter() - t)
    await client.aclose()
    return rate


# ---------------------------------------------------------------- round trips and memory


def round_trips(store: Store, n: int = 2000) -> tuple[float, float, float]:
    """(client-counted round trips, server EVALSHA calls, all top-level commands) per commit."""
    prev = None
    for i in range(3):  # warm
        args = commit_args(prev, "rt", i)
        store.commit(**args)
        prev = args["state"]
    client = store.client
    client.config_resetstat()
    trips = store.round_trips
    for i in range(3, 3 + n):
        args = commit_args(prev, "rt", i)
        store.commit(**args)
        prev = args["state"]
    stats = client.info("commandstats")
    # commands issued *by the client*: EVALSHA + the derived-index writes (the script's own
    # HSET/XADD/... are counted by Redis too, but they run inside the one EVALSHA)
    index_cmds = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("zadd", "zrem", "hincrby", "sadd"))
    script_inner_zadd = n  # the dedupe ZADD inside the script, once per commit
    evalsha = stats["cmdstat_evalsha"]["calls"]
    return (store.round_trips - trips) / n, evalsha / n, (evalsha + index_cmds - script_inner_zadd) / n


def bytes_per_session(store: Store, sessions: int, records: int = 20) -> tuple[float, float, dict[str, float]]:
    client = store.client
    client.flushall()
    time.sleep(0.2)
    base = client.info("memory")["used_memory"]
    prev: dict[str, Any] = {}
    for i in range(records):
        batch = []
        for j in range(sessions):
            sid = f"3161234{j:05d}"
            batch.append(commit_args(prev.get(sid), sid, i))
        for args, res in zip(batch, store.commit_many(batch), strict=True):
            assert res.ok
            prev[args["session_id"]] = args["state"]
    # acknowledge every outbox entry, as the runtime does once the reply is sent
    for j in range(sessions):
        sid = f"3161234{j:05d}"
        for v in store.pending_effects(sid):
            store.ack_effects(sid, v)
    used = client.info("memory")["used_memory"] - base
    per_key: dict[str, float] = {}
    sample = [f"3161234{j:05d}" for j in range(0, sessions, max(1, sessions // 200))]
    for sid in sample:
        for name, key in zip(("state", "hist", "seen", "snap", "fx"), K.session_keys(sid).all, strict=True):
            per_key[name] = per_key.get(name, 0) + (client.memory_usage(key, samples=0) or 0)
    per_key = {k: v / len(sample) for k, v in per_key.items()}
    return used / sessions, sum(per_key.values()), per_key


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=20_000)
    ap.add_argument("--sessions", type=int, default=2_000, help="sessions for the memory measurement")
    ap.add_argument("--fsync", default=None, help="appendfsync of the bench server (default: flowkit's)")
    args = ap.parse_args()
    n = args.commits
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"fsync": args.fsync} if args.fsync else {}
        server = RedisServer(Path(tmp) / "redis", **kw).start()
        try:
            client = connect(server.url)
            store = Store(client)
            version = client.info()["redis_version"]
            rows = []
            fk = sync_flowkit(store, n, 1000)
            naive = sync_naive(client, n, 1000)
            floor = sync_floor(store, n)
            rp = sync_redis_py_evalsha(client, n)
            afk = asyncio.run(async_run("flowkit", server.url, n))
            anaive = asyncio.run(async_run("naive", server.url, n))
            afloor = asyncio.run(async_run("floor", server.url, n))
            trips, evalsha, commands = round_trips(store)
            per_session, per_keys, breakdown = bytes_per_session(store, args.sessions)
            rows.append(("sync commits/s: flowkit commit", f"{fk:,.0f}", f"{fk / floor:.0%} of floor", ">= 50%"))
            rows.append(("sync commits/s: naive GET+SET (loses updates)", f"{naive:,.0f}", f"{naive / floor:.0%}", ""))
            rows.append(("sync commits/s: EVALSHA no-op (floor)", f"{floor:,.0f}", "100%", ""))
            rows.append(("sync: redis-py client.evalsha no-op (reference)", f"{rp:,.0f}", f"{rp / floor:.0%}", ""))
            rows.append(("asyncio x64 commits/s: flowkit commit", f"{afk:,.0f}", f"{afk / afloor:.0%} of floor",
                         ">= 50%"))
            rows.append(("asyncio x64 commits/s: naive GET+SET", f"{anaive:,.0f}", f"{anaive / afloor:.0%}", ""))
            rows.append(("asyncio x64 commits/s: EVALSHA no-op (floor)", f"{afloor:,.0f}", "100%", ""))
            rows.append(("round trips per commit (client count)", f"{trips:.2f}", "", "1"))
            rows.append(("EVALSHA per commit (INFO commandstats)", f"{evalsha:.2f}", "", "1"))
            rows.append(("commands sent per commit (script + index writes)", f"{commands:.2f}", "", ""))
            rows.append(("Redis bytes/session, 20 records (used_memory delta)", f"{per_session:,.0f}",
                         f"{per_session / 1024:.2f} KB", "<= 4 KB"))
            rows.append(("  of which the session's keys (MEMORY USAGE)", f"{per_keys:,.0f}",
                         ", ".join(f"{k} {v:,.0f}" for k, v in breakdown.items() if v), ""))
            client.close()
        finally:
            server.stop()
    date = dt.date.today().isoformat()
    print(f"flowkit.store benchmark, {date}, redis-server {version} (AOF on, appendfsync {server.fsync}), "
          f"Python {platform.python_version()}, {platform.machine()}, {n:,} commits per row")
    widths = [max(len(r[i]) for r in rows + [("measure", "value", "ratio", "goal")]) for i in range(4)]
    header = ("measure", "value", "ratio", "goal")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
