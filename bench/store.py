"""Benchmark of flowkit.store (issue 5), one run, printed as tables.

    .venv/bin/python bench/store.py                 # the full run (~2-3 minutes on 2 busy cores)
    .venv/bin/python bench/store.py --quick         # a smoke run (~30 s)
    .venv/bin/python bench/store.py [--commits 10000] [--race-updates 8000] [--tasks 64] [--hot 16]
                                    [--sessions 2000] [--fsync everysec]

It starts its own redis-server (flowkit's embedded configuration: AOF on) and compares four
ways of writing a session update, side by side in the same run, on the same server:

- **flowkit commit**: the one-round-trip Lua CAS (version check, state + checksum, history
  entry with a delta, dedupe, outbox, snapshots; derived indexes in the same pipeline). The
  caller keeps the state it last committed, so an update costs one round trip; after a
  ``conflict`` it recomputes on the current state that the conflict reply carries (no reload);
- **WATCH/MULTI**: redis-py's optimistic transaction doing comparable writes (state hash with
  version + checksum, history XADD, dedupe ZADD, outbox HSET, active index ZADD): WATCH, read,
  MULTI..EXEC = three round trips; retried on WatchError;
- **naive GET + SET** of the state JSON (two round trips, no history): the baseline that
  *loses updates* when writers race;
- **EVALSHA no-op**: one round trip that does nothing (the floor).

Each is measured (a) on one blocking connection, no contention: throughput and per-commit
p50/p99 latency; (b) on asyncio with ``--tasks`` concurrent writers updating ``--hot`` sessions
(several writers per session), each update incrementing a counter in the state: throughput,
latency per update (retries included), conflicts retried, and **lost updates** = updates the
writer saw succeed minus the increments the final states hold. Also: Redis round trips per
commit (client count and INFO commandstats) and Redis bytes per session with 20 records.

Goals (issue 5): 1 round trip per commit, flowkit >= 50% of the EVALSHA floor, 0 lost updates,
<= 4 KB per session with 20 records.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowkit.store import AsyncStore, RedisServer, Store, commit_op, connect, connect_async  # noqa: E402
from flowkit.store import keys as K  # noqa: E402
from flowkit.store.codec import checksum, dumps, s  # noqa: E402
from flowkit.store.driver import Call  # noqa: E402
from flowkit.store.scripts import NOOP  # noqa: E402

T0 = 1_700_000_000_000
STEPS = ["ask_size", "ask_qty", "ask_address", "confirm"]


def wamid(sid: str, i: int) -> str:
    """A message id shaped like WhatsApp's (58 characters)."""
    return f"wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQz{sid[-6:]:>6}{i:08d}QTc2RUZGMEE4"


def next_state(prev: dict[str, Any] | None, sid: str, i: int, *,
               count: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The session after update ``i`` and its history record (what the engine would produce).

    ``count``: ``slots.n`` counts the updates applied to this session (the lost-update check)."""
    now = T0 + i * 1500
    step = STEPS[i % len(STEPS)]
    slots = {"profile": {"name": "Ana"}, "size": ["small", "medium", "large"][i % 3], "qty": 1 + i % 5}
    if count:
        slots["n"] = prev["slots"]["n"] + 1 if prev else 0
    state = {"session_id": sid, "flow": "order_pizza", "flow_version": "3", "step": step, "status": "waiting_input",
             "slots": slots, "attempts": {step: i % 2}, "stack": [],
             "pending": {"wait": "input", "step": step, "deadline": now + 1_800_000, "trail": STEPS[:1 + i % 3]},
             "version": prev["version"] + 1 if prev else 1, "started_at": prev["started_at"] if prev else now,
             "updated_at": now}
    record = {"ts": now, "event": "message" if prev else "start", "from_step": prev["step"] if prev else None,
              "to_step": step, "path": [step], "status": "waiting_input", "message_id": wamid(sid, i),
              "input": json.dumps({"text": slots["size"]}), "error": None, "actor": "runtime"}
    return state, record


def commit_args(prev: dict[str, Any] | None, sid: str, i: int, *, count: bool = False) -> dict[str, Any]:
    state, record = next_state(prev, sid, i, count=count)
    return {"session_id": sid, "expected_version": prev["version"] if prev else 0, "state": state, "record": record,
            "previous": prev, "message_id": record["message_id"],
            "effects": [{"kind": "reply", "text": f"Got it: {record['input']}"}],
            "timeout_at_ms": state["pending"]["deadline"]}


# ---------------------------------------------------------------- the WATCH/MULTI and naive baselines


def wm_key(sid: str) -> str:
    return f"wm:{{s:{sid}}}:"


def wm_writes(pipe: Any, sid: str, state: dict[str, Any], record: dict[str, Any]) -> None:
    """What the WATCH/MULTI baseline writes inside MULTI: comparable to the flowkit commit."""
    base, text = wm_key(sid), dumps(state)
    v = state["version"]
    pipe.hset(base + "state", mapping={"version": v, "state": text, "checksum": checksum(text), "step": state["step"],
                                       "status": state["status"], "updated_at": state["updated_at"]})
    pipe.xadd(base + "hist", {"record": dumps({**record, "version": v})}, id=f"{v}-1")
    pipe.zadd(base + "seen", {checksum(record["message_id"]): v})
    pipe.hset(base + "fx", str(v), dumps({"at": state["updated_at"], "effects": [{"kind": "reply", "text": "ok"}]}))
    pipe.zadd("wm:idx:active", {sid: state["updated_at"]})


def naive_key(sid: str) -> str:
    return f"naive:{{s:{sid}}}"


# ---------------------------------------------------------------- measurements


@dataclass
class Result:
    ops: int  # updates that the writer saw succeed
    seconds: float
    latencies: list[float]  # seconds per update (retries included)
    round_trips: int = 0
    conflicts: int = 0  # attempts retried (conflict / WatchError)
    lost: int | None = None  # None: not measured (no concurrency)
    client_cpu: float = 0.0  # seconds of this process's CPU (user + sys) while timed
    server_cpu: float = 0.0  # seconds of redis-server CPU (INFO cpu, user + sys) while timed

    def __add__(self, o: Result) -> Result:
        lost = None if self.lost is None or o.lost is None else self.lost + o.lost
        return Result(self.ops + o.ops, self.seconds + o.seconds, self.latencies + o.latencies,
                      self.round_trips + o.round_trips, self.conflicts + o.conflicts, lost,
                      self.client_cpu + o.client_cpu, self.server_cpu + o.server_cpu)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def server_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"] + info["used_cpu_sys"])


def timed(n: int, one: Callable[[int], None], client: Any) -> tuple[float, list[float], float, float]:
    """(seconds, latency per call, client CPU seconds, server CPU seconds) of ``one(0..n-1)``."""
    lat = [0.0] * n
    clock = time.perf_counter
    srv, cpu = server_cpu(client), time.process_time()
    t = clock()
    for i in range(n):
        s = clock()
        one(i)
        lat[i] = clock() - s
    seconds = clock() - t
    return seconds, lat, time.process_time() - cpu, server_cpu(client) - srv


# ---------------------------------------------------------------- (a) one connection, no contention


def sync_flowkit(store: Store, n: int, sessions: int, prefix: str = "") -> Result:
    prev: dict[str, dict[str, Any]] = {}
    for j in range(sessions):  # warm: every session exists, the script is loaded
        args = commit_args(None, f"{prefix}b{j}", 0)
        store.commit(**args)
        prev[f"{prefix}b{j}"] = args["state"]
    todo = []  # what the caller (the engine) hands to the commit: built before the clock starts
    for i in range(n):
        sid = f"{prefix}b{i % sessions}"
        todo.append(commit_args(prev[sid], sid, i + 1))
        prev[sid] = todo[-1]["state"]
    trips = store.round_trips

    def one(i: int) -> None:
        if store.commit(**todo[i]).outcome != "ok":
            raise AssertionError("unexpected conflict")

    seconds, lat, cpu, srv = timed(n, one, store.client)
    return Result(n, seconds, lat, store.round_trips - trips, client_cpu=cpu, server_cpu=srv)


def sync_flowkit_script(store: Store, n: int, sessions: int, prefix: str = "") -> Result:
    """The same commits with each script call built before the clock starts (validation, JSON,
    delta, checksums, packing: everything flowkit's Python does): what the commit's Redis side
    and its I/O cost alone. No client-side work can make the commit faster than this row."""
    cfg = store.config
    prev: dict[str, dict[str, Any]] = {}
    for j in range(sessions):
        args = commit_args(None, f"{prefix}p{j}", 0)
        store.commit(**args)
        prev[f"{prefix}p{j}"] = args["state"]
    calls = []
    for i in range(n):
        sid = f"{prefix}p{i % sessions}"
        a = commit_args(prev[sid], sid, i + 1)
        built, _, _ = commit_op._prepare(cfg, sid, a["expected_version"], a["state"], a["record"],
                                         previous=a["previous"], message_id=a["message_id"], effects=a["effects"],
                                         timeout_at_ms=a["timeout_at_ms"], snapshot_old=False, now=cfg.now_ms())
        calls.append(built.call(K.session_keys(sid), indexed=cfg.indexes_in_commit))
        prev[sid] = a["state"]
    trips = store.round_trips

    def one(i: int) -> None:
        reply = store.driver.execute([calls[i]])[0]
        if s(reply[0]) != "ok":
            raise AssertionError(f"unexpected reply {reply!r}")

    seconds, lat, cpu, srv = timed(n, one, store.client)
    return Result(n, seconds, lat, store.round_trips - trips, client_cpu=cpu, server_cpu=srv)


def sync_watch(client: Any, n: int, sessions: int, prefix: str = "") -> Result:
    for j in range(sessions):
        with client.pipeline() as pipe:
            wm_writes(pipe, f"{prefix}w{j}", *next_state(None, f"{prefix}w{j}", 0))
            pipe.execute()
    known: dict[str, int] = {f"{prefix}w{j}": 1 for j in range(sessions)}
    last = {f"{prefix}w{j}": next_state(None, f"{prefix}w{j}", 0)[0] for j in range(sessions)}
    todo = []  # the new states, built before the clock starts (as for the flowkit row)
    for i in range(n):
        sid = f"{prefix}w{i % sessions}"
        todo.append(next_state(last[sid], sid, i + 1))
        last[sid] = todo[-1][0]

    def one(i: int) -> None:
        sid = f"{prefix}w{i % sessions}"
        key = wm_key(sid) + "state"
        with client.pipeline() as pipe:
            pipe.watch(key)  # round trip 1
            raw = pipe.hget(key, "state")  # round trip 2
            state = json.loads(raw)
            if state["version"] != known[sid]:
                raise AssertionError("unexpected concurrent writer")
            new, rec = todo[i]
            pipe.multi()
            wm_writes(pipe, sid, new, rec)
            pipe.execute()  # round trip 3: MULTI..EXEC
            known[sid] = new["version"]

    seconds, lat, cpu, srv = timed(n, one, client)
    return Result(n, seconds, lat, 3 * n, client_cpu=cpu, server_cpu=srv)


def sync_naive(client: Any, n: int, sessions: int, prefix: str = "") -> Result:
    last = {}
    for j in range(sessions):
        last[f"{prefix}n{j}"] = next_state(None, f"{prefix}n{j}", 0)[0]
        client.set(naive_key(f"{prefix}n{j}"), dumps(last[f"{prefix}n{j}"]))
    todo = []  # the new states, built before the clock starts (as for the flowkit row)
    for i in range(n):
        sid = f"{prefix}n{i % sessions}"
        todo.append(next_state(last[sid], sid, i + 1)[0])
        last[sid] = todo[-1]

    def one(i: int) -> None:
        key = naive_key(f"{prefix}n{i % sessions}")
        state = json.loads(client.get(key))  # round trip 1
        if state["version"] + 1 != todo[i]["version"]:
            raise AssertionError("unexpected concurrent writer")
        client.set(key, dumps(todo[i]))  # round trip 2; a concurrent writer's update is lost

    seconds, lat, cpu, srv = timed(n, one, client)
    return Result(n, seconds, lat, 2 * n, client_cpu=cpu, server_cpu=srv)


def sync_floor(store: Store, n: int, sessions: int = 0, prefix: str = "") -> Result:
    store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())])
    trips = store.round_trips
    seconds, lat, cpu, srv = timed(n, lambda i: store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())]),
                                   store.client)
    return Result(n, seconds, lat, store.round_trips - trips, client_cpu=cpu, server_cpu=srv)


def sync_redis_py_evalsha(client: Any, n: int) -> Result:
    sha = client.script_load(NOOP.source)
    seconds, lat, cpu, srv = timed(n, lambda i: client.evalsha(sha, 1, "fk:{s:floor}:state"), client)
    return Result(n, seconds, lat, n, client_cpu=cpu, server_cpu=srv)


# ---------------------------------------------------------------- (b) asyncio, writers racing on hot sessions


async def warm(client: Any, tasks: int) -> None:
    """Open the pool's connections before the clock starts (one per concurrent writer)."""
    await asyncio.gather(*(client.ping() for _ in range(tasks)))


async def _race(tasks: int, per: int, update: Callable[[int, int], Awaitable[int]]) -> tuple[float, list[float], int]:
    """Run ``tasks`` writers, ``per`` updates each; ``update(task, i)`` returns the attempts retried."""
    lat: list[float] = []
    retried = 0

    async def writer(k: int) -> None:
        nonlocal retried
        clock = time.perf_counter
        for i in range(per):
            s = clock()
            r = await update(k, i)  # (not `retried += await …`: that loses updates across tasks)
            retried += r
            lat.append(clock() - s)

    t = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(tasks)))
    return time.perf_counter() - t, lat, retried


async def race_flowkit(url: str, n: int, tasks: int, hot: int, prefix: str = "") -> Result:
    store = AsyncStore(connect_async(url))
    sids = [f"{prefix}h{j}" for j in range(hot)]
    for sid in sids:
        args = commit_args(None, sid, 0, count=True)
        assert (await store.commit(**args)).ok
    await warm(store.client, tasks)
    cache: dict[int, dict[str, Any]] = {}  # each writer's last known state of its session
    for k in range(tasks):
        cache[k] = await store.load(sids[k % hot])  # type: ignore[assignment]
    per = n // tasks
    trips = store.round_trips

    async def update(k: int, i: int) -> int:
        sid, retried = sids[k % hot], 0
        while True:
            args = commit_args(cache[k], sid, k * per + i + 1, count=True)
            args["record"]["message_id"] = args["message_id"] = f"{wamid(sid, i)}.{k}"
            res = await store.commit(**args)
            if res.ok:
                cache[k] = args["state"]
                return retried
            retried += 1  # conflict: another writer got there first; recompute on the state it sent back
            cache[k] = res.current if res.current is not None else await store.load(sid)  # type: ignore[assignment]

    seconds, lat, retried = await _race(tasks, per, update)
    trips = store.round_trips - trips
    held = 0
    for sid in sids:
        st = await store.load(sid)
        assert st is not None and st["version"] == st["slots"]["n"] + 1
        held += st["slots"]["n"]
    await store.client.aclose()
    return Result(per * tasks, seconds, lat, trips, retried, per * tasks - held)


async def race_watch(url: str, n: int, tasks: int, hot: int, prefix: str = "") -> Result:
    client = redis.asyncio.Redis.from_url(url)
    sids = [f"{prefix}hw{j}" for j in range(hot)]
    for sid in sids:
        async with client.pipeline() as pipe:
            wm_writes(pipe, sid, *next_state(None, sid, 0, count=True))
            await pipe.execute()
    per = n // tasks
    attempts = 0
    await warm(client, tasks)

    async def update(k: int, i: int) -> int:
        nonlocal attempts
        sid, retried = sids[k % hot], 0
        key = wm_key(sid) + "state"
        async with client.pipeline() as pipe:
            while True:
                attempts += 1
                try:
                    await pipe.watch(key)
                    state = json.loads(await pipe.hget(key, "state"))
                    new, rec = next_state(state, sid, k * per + i + 1, count=True)
                    rec["message_id"] = f"{rec['message_id']}.{k}"
                    pipe.multi()
                    wm_writes(pipe, sid, new, rec)
                    await pipe.execute()
                    return retried
                except redis.WatchError:
                    retried += 1

    seconds, lat, retried = await _race(tasks, per, update)
    held = sum([json.loads(await client.hget(wm_key(sid) + "state", "state"))["slots"]["n"] for sid in sids])
    await client.aclose()
    return Result(per * tasks, seconds, lat, 3 * attempts, retried, per * tasks - held)


async def race_naive(url: str, n: int, tasks: int, hot: int, prefix: str = "") -> Result:
    client = redis.asyncio.Redis.from_url(url)
    sids = [f"{prefix}hn{j}" for j in range(hot)]
    for sid in sids:
        await client.set(naive_key(sid), dumps(next_state(None, sid, 0, count=True)[0]))
    per = n // tasks
    await warm(client, tasks)

    async def update(k: int, i: int) -> int:
        key = naive_key(sids[k % hot])
        state = json.loads(await client.get(key))
        new, _ = next_state(state, state["session_id"], k * per + i + 1, count=True)
        await client.set(key, dumps(new))  # overwrites whatever another writer set meanwhile
        return 0

    seconds, lat, _ = await _race(tasks, per, update)
    held = sum([json.loads(await client.get(naive_key(sid)))["slots"]["n"] for sid in sids])
    await client.aclose()
    return Result(per * tasks, seconds, lat, 2 * per * tasks, 0, per * tasks - held)


async def race_floor(url: str, n: int, tasks: int, hot: int, prefix: str = "") -> Result:
    store = AsyncStore(connect_async(url))
    await store.driver.execute([Call(NOOP, ("fk:{s:warm}:state",), ())])  # load the script
    await warm(store.client, tasks)
    per = n // tasks
    trips = store.round_trips

    async def update(k: int, i: int) -> int:
        await store.driver.execute([Call(NOOP, (f"fk:{{s:h{k % hot}}}:state",), ())])
        return 0

    seconds, lat, _ = await _race(tasks, per, update)
    trips = store.round_trips - trips
    await store.client.aclose()
    return Result(per * tasks, seconds, lat, trips)


SCRIPT_ONLY = "flowkit commit, script and I/O only (built in advance)"
SEQ: dict[str, Callable[..., Result]] = {
    "flowkit commit (Lua CAS)": sync_flowkit, SCRIPT_ONLY: sync_flowkit_script, "WATCH/MULTI transaction": sync_watch,
    "naive GET + SET": sync_naive, "EVALSHA no-op (floor)": sync_floor}
RACE: dict[str, Callable[..., Awaitable[Result]]] = {
    "flowkit commit (Lua CAS)": race_flowkit, "WATCH/MULTI transaction": race_watch, "naive GET + SET": race_naive,
    "EVALSHA no-op (floor)": race_floor}


# ---------------------------------------------------------------- round trips and memory


def round_trips(store: Store, n: int = 2000) -> tuple[float, float, float, float]:
    """(client-counted round trips, server EVALSHA calls, all top-level commands, µs of Lua) per commit."""
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
    lua_us = stats["cmdstat_evalsha"]["usec_per_call"]  # the script's time in Redis, its commands included
    return (store.round_trips - trips) / n, evalsha / n, (evalsha + index_cmds - script_inner_zadd) / n, lua_us


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


def bytes_lower_bound(client: Any, sessions: int, records: int = 20) -> tuple[float, int, dict[str, float]]:
    """The least of :func:`packed_history_bytes` over stream node sizes (``stream-node-max-bytes``:
    Redis preallocates a stream's listpack node, 4 KB by default): (bytes, node size, per key)."""
    default = int(client.config_get("stream-node-max-bytes")["stream-node-max-bytes"])
    best: tuple[float, int, dict[str, float]] | None = None
    try:
        for size in (4096, 2048, 1024, 512):
            client.config_set("stream-node-max-bytes", size)
            used, per_key = packed_history_bytes(client, sessions, records)
            if best is None or used < best[0]:
                best = (used, size, per_key)
    finally:
        client.config_set("stream-node-max-bytes", default)
    assert best is not None
    return best


def packed_history_bytes(client: Any, sessions: int, records: int = 20) -> tuple[float, dict[str, float]]:
    """Redis bytes per session for the least any layout keeping the history of docs/design.md could
    store: the same sessions, but each stream entry holds only the export columns the store
    cannot derive (event, from_step, path, status, message id, input; no to_step, error,
    actor, flow, version pin, delta or checksum) packed into one field with small-int codes,
    beside the state hash and the dedupe set, and no indexes. Whatever real layout is
    chosen, it cannot take less than this (it also needs the deltas or snapshots that
    rebuild any version, the checksums and the indexes)."""
    client.flushall()
    time.sleep(0.2)
    base = client.info("memory")["used_memory"]
    codes = {name: i for i, name in enumerate(("start", "message", "waiting_input"))}
    for j in range(sessions):
        sid = f"3161234{j:05d}"
        k = K.session_keys(sid)
        prev = None
        pipe = client.pipeline(transaction=False)
        for i in range(records):
            st, rec = next_state(prev, sid, i)
            packed = json.dumps([codes[rec["event"]], rec["from_step"] or 0, rec["path"], codes[rec["status"]],
                                 rec["message_id"], rec["input"]], separators=(",", ":"))
            pipe.xadd(k.hist, {"r": packed}, id=f"{i + 1}-{rec['ts']}")
            pipe.zadd(k.seen, {checksum(rec["message_id"]): i + 1})
            prev = st
        text = dumps(prev)
        pipe.hset(k.state, mapping={"version": records, "state": text, "checksum": checksum(text), "flow": prev["flow"],
                                    "step": prev["step"], "status": prev["status"], "updated_at": prev["updated_at"]})
        pipe.execute()
    used = client.info("memory")["used_memory"] - base
    sid = "316123400000"
    per_key = {name: float(client.memory_usage(key, samples=0) or 0)
               for name, key in zip(("state", "hist", "seen"), K.session_keys(sid).all, strict=False)}
    client.flushall()
    return used / sessions, per_key


# ---------------------------------------------------------------- main


def table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: int = 1) -> None:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) if i >= right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(r, widths, strict=True))) + " |"

    print(fmt(header))
    print("| " + " | ".join("-" * (w - 1) + ":" if i >= right else "-" * w for i, w in enumerate(widths)) + " |")
    for r in rows:
        print(fmt(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=10_000, help="updates per row, one connection")
    ap.add_argument("--race-updates", type=int, default=8_000, help="updates per row, racing writers")
    ap.add_argument("--sessions", type=int, default=2_000, help="sessions for the memory measurement")
    ap.add_argument("--rounds", type=int, default=4, help="the methods take turns this many times")
    ap.add_argument("--tasks", type=int, default=64, help="concurrent asyncio writers in the race")
    ap.add_argument("--hot", type=int, default=16, help="sessions the racing writers share")
    ap.add_argument("--fsync", default=None, help="appendfsync of the bench server (default: flowkit's)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2,000 / 1,000 updates per row, 200 sessions")
    args = ap.parse_args()
    if args.quick:
        args.commits, args.race_updates, args.sessions = 2_000, 1_000, 200
    n, m, tasks, hot, rounds = args.commits, args.race_updates, args.tasks, args.hot, args.rounds
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"fsync": args.fsync} if args.fsync else {}
        server = RedisServer(Path(tmp) / "redis", **kw).start()
        try:
            client = connect(server.url)
            store = Store(client)
            version = client.info()["redis_version"]
            # The methods take turns (``--rounds`` rounds, each a share of the updates), so a
            # change in machine load hits all of them alike; the rows sum the rounds.
            seq: dict[str, Result] = {}
            race: dict[str, Result] = {}
            for r in range(rounds):
                for name, fn in SEQ.items():
                    res = fn(store if fn in (sync_flowkit, sync_flowkit_script, sync_floor) else client, n // rounds, 1000, f"r{r}")
                    seq[name] = seq[name] + res if name in seq else res
                for name, afn in RACE.items():
                    res = asyncio.run(afn(server.url, m // rounds, tasks, hot, f"r{r}"))
                    race[name] = race[name] + res if name in race else res
            rp = sync_redis_py_evalsha(client, n)
            trips, evalsha, commands, lua_us = round_trips(store)
            per_session, per_keys, breakdown = bytes_per_session(store, args.sessions)
            bound, node_size, bound_keys = bytes_lower_bound(client, args.sessions)
            client.close()
        finally:
            server.stop()
    elapsed = time.perf_counter() - started
    date = dt.date.today().isoformat()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"flowkit.store benchmark, {date}: redis-server {version} (AOF on, appendfsync {server.fsync}), "
          f"Python {platform.python_version()}, redis-py {redis.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs (load {load:.1f} at the end); {n:,} / {m:,} updates per row in {rounds} interleaved rounds; "
          f"run took {elapsed:.0f} s")
    print()
    header = ("method", "mode", "updates/s", "p50 ms", "p99 ms", "% of floor", "flowkit ÷ this", "round trips/update",
              "conflicts retried", "lost updates")
    rows: list[tuple[str, ...]] = []
    for mode, results in ((f"1 connection, no contention ({1000} sessions)", seq),
                          (f"asyncio, {tasks} writers on {hot} sessions", race)):
        floor, fk = results["EVALSHA no-op (floor)"], results["flowkit commit (Lua CAS)"]
        for name, r in results.items():
            rows.append((name, mode, f"{r.rate:,.0f}", f"{r.pct(0.5):.2f}", f"{r.pct(0.99):.2f}",
                         f"{r.rate / floor.rate:.0%}", f"{fk.rate / r.rate:.2f}x", f"{r.round_trips / r.ops:.2f}",
                         f"{r.conflicts:,}" if r.lost is not None else "-",
                         f"{r.lost:,} ({r.lost / r.ops:.1%})" if r.lost is not None else "-"))
    table(header, rows, right=2)
    print()
    rows = [("round trips per commit (client count)", f"{trips:.2f}", "1"),
            ("EVALSHA per commit (INFO commandstats)", f"{evalsha:.2f}", "1"),
            ("commands sent per commit (script + index writes, one pipeline)", f"{commands:.2f}", ""),
            ("Lua time per commit in Redis (INFO commandstats evalsha usec_per_call)", f"{lua_us:.1f} us", ""),
            *((f"us per update, 1 connection, {name}: wall = client CPU + server CPU + rest",
               f"{1e6 * r.seconds / r.ops:.0f} = {1e6 * r.client_cpu / r.ops:.0f} + {1e6 * r.server_cpu / r.ops:.0f}"
               f" + {1e6 * (r.seconds - r.client_cpu - r.server_cpu) / r.ops:.0f}", "")
              for name, r in seq.items() if name in ("flowkit commit (Lua CAS)", SCRIPT_ONLY, "EVALSHA no-op (floor)")),
            ("flowkit commit, % of the EVALSHA floor (1 connection)",
             f"{seq['flowkit commit (Lua CAS)'].rate / seq['EVALSHA no-op (floor)'].rate:.0%}", ">= 50%"),
            ("ceiling: the commit's script and I/O alone, % of the EVALSHA floor (1 connection)",
             f"{seq[SCRIPT_ONLY].rate / seq['EVALSHA no-op (floor)'].rate:.0%}", ""),
            ("flowkit driver no-op vs redis-py client.evalsha no-op (1 connection)",
             f"{seq['EVALSHA no-op (floor)'].rate:,.0f} vs {rp.rate:,.0f}/s", ""),
            ("lost updates, flowkit commit (race)", f"{race['flowkit commit (Lua CAS)'].lost:,}", "0"),
            ("Redis bytes/session, 20 records (used_memory delta)", f"{per_session:,.0f} ({per_session / 1024:.2f} KB)",
             "<= 4 KB"),
            ("  of which the session's keys (MEMORY USAGE)",
             f"{per_keys:,.0f}: " + ", ".join(f"{k} {v:,.0f}" for k, v in breakdown.items() if v), ""),
            ("lower bound: only the record columns, packed, no delta/checksum/index (used_memory delta)",
             f"{bound:,.0f} ({bound / 1024:.2f} KB; stream nodes of {node_size} B); "
             + ", ".join(f"{k} {v:,.0f}" for k, v in bound_keys.items()), "<= 4 KB")]
    table(("measure", "value", "goal"), rows, right=3)


if __name__ == "__main__":
    main()
