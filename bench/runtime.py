"""Benchmark of the Flow Handler (issue 6), one run, printed as a table.

    .venv/bin/python bench/runtime.py [--messages 10000] [--http-messages 5000] [--sessions 200]
                                      [--concurrency 64] [--no-graph] [--fsync everysec]

It starts its own redis-server (flowkit's embedded configuration: AOF on) and pushes the same
workload through every row: ``--sessions`` sessions of the TALLY flow (examples/
tally.yaml, as in the concurrency test: it counts every message it applies, ``n = n + 1``, and answers each one),
started first (not timed), then ``--messages`` messages spread evenly over them, shuffled.
Measured side by side:

- **in-process**: the sync :class:`~flowkit.runtime.Runtime` on one thread, and
  :class:`~flowkit.runtime.AsyncRuntime` with ``--concurrency`` tasks pulling from one queue
  (so one session often has several messages in flight: the commits really race). Replies go
  to an in-memory recording channel. State cache on (the default).
- **over HTTP**: a real uvicorn server (a subprocess running ``create_app`` around an
  AsyncRuntime) receiving signed WhatsApp deliveries (``X-Hub-Signature-256``, one message each)
  from an ``httpx.AsyncClient`` at ``--concurrency``; replies recorded in memory, and (unless
  ``--no-graph``) sent for real through ``AsyncWhatsAppSender`` to ``FakeGraphAPI`` (the local
  Graph API imitation, in a third process).
- a **naive GET/SET handler** on the same Redis: GET the state JSON, run the same engine
  (``flowkit.engine.step``), SET it back, send the replies. No CAS, no history, no dedupe, no
  outbox: under concurrency it loses updates, counted from the final counters.
- the **EVALSHA floor**: one no-op script call per message (the round-trip floor of a commit);
  over HTTP: the same uvicorn + signature check + one EVALSHA no-op per delivery. In process on
  asyncio (and on uvloop, ``--loops``) two floors and two AsyncRuntime rows: a pooled connection
  per task (redis-py's way; the reference floor) and auto-pipelined (flowkit/store/autopipe.py).

Columns: messages/s; ratio to the floor of the same mode (sync / asyncio / HTTP); latency per
message (p50/p99: one ``handle`` call, or one POST until its answer); Redis round trips per
message counted by the store's driver (naive: GET + SET); commit conflicts (reruns of the
engine) per message; lost updates (messages sent minus the final counters); CPU per message of
the handling Python process and of redis-server. Below it the happy path (one thread, state
cache on, no contention): round trips per message by the client's count and by the server's
(INFO stats reads, INFO commandstats).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowkit.channels.whatsapp import sign  # noqa: E402
from flowkit.channels.whatsapp.payloads import text_payload  # noqa: E402
from flowkit.engine import Reply, Start, State, UserMessage, step  # noqa: E402
from flowkit.flow import load_flow  # noqa: E402
from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime, FlowRegistry, RecordingChannel, Runtime  # noqa: E402
from flowkit.store import AsyncStore, RedisServer, Store, connect, connect_async  # noqa: E402
from flowkit.store.driver import Call  # noqa: E402
from flowkit.store.scripts import NOOP  # noqa: E402

SECRET = "bench-app-secret"
NO_PACING = 1e9  # sends/s: the sync Runtime paces replies at the tier (80/s) unless told otherwise
TALLY = load_flow(Path(__file__).resolve().parents[1] / "examples" / "tally.yaml")
Delivery = tuple[str, UserMessage]
T = TypeVar("T")


# ---------------------------------------------------------------- workload


def wamid(sid: str, i: int) -> str:
    """A message id shaped like WhatsApp's."""
    return f"wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQz{sid[-7:]}{i:08d}QTc2RUZGMEE4"


def workload(prefix: str, sessions: int, messages: int, seed: int) -> tuple[list[Delivery], list[Delivery], int]:
    """(starts, shuffled stream, messages per session). Session ids look like phone numbers."""
    per = max(1, messages // sessions)
    sids = [f"31{prefix}{s:07d}" for s in range(sessions)]
    starts = [(sid, UserMessage(text="tally", message_id=wamid(sid, 0))) for sid in sids]
    stream = [(sid, UserMessage(text=f"hello {i}", message_id=wamid(sid, i))) for sid in sids for i in range(1, per + 1)]
    random.Random(seed).shuffle(stream)
    return starts, stream, per


@dataclass
class Row:
    mode: str  # sync | asyncio | uvloop | http
    name: str
    n: int
    seconds: float
    latencies: list[float]
    round_trips: float | None = None
    conflicts: float | None = None
    lost: int | None = None
    py_cpu: float | None = None  # seconds of CPU of the handling Python process
    redis_cpu: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commandstats(client: Any) -> Counter[str]:
    return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()})


# ---------------------------------------------------------------- naive GET/SET handler


def naive_transition(raw: bytes | None, sid: str, m: UserMessage, now: int) -> tuple[dict[str, Any], list[Reply]]:
    """Same engine, same flow; the state is a plain JSON string with nothing around it."""
    state = State.from_dict(json.loads(raw)) if raw else None
    event = m if state is not None else Start(flow="tally", message_id=m.message_id, text=m.text, profile={})
    t = step(TALLY, state, event, now, session_id=sid)
    new = t.state.to_dict()
    new["version"] = (state.version if state else 0) + 1
    return new, [e for e in t.effects if isinstance(e, Reply)]


def naive_key(sid: str) -> str:
    return f"naive:{sid}"


def now_ms() -> int:
    return int(time.time() * 1000)


class NaiveSync:
    def __init__(self, client: Any) -> None:
        self.client, self.channel = client, RecordingChannel()

    def handle(self, sid: str, m: UserMessage) -> None:
        new, replies = naive_transition(self.client.get(naive_key(sid)), sid, m, now_ms())
        self.client.set(naive_key(sid), json.dumps(new))  # a concurrent writer's update is overwritten
        for r in replies:
            self.channel.send(sid, r)


class NaiveAsync:
    def __init__(self, client: Any) -> None:
        self.client, self.channel = client, AsyncRecordingChannel()

    async def handle(self, sid: str, m: UserMessage) -> None:
        new, replies = naive_transition(await self.client.get(naive_key(sid)), sid, m, now_ms())
        await self.client.set(naive_key(sid), json.dumps(new))
        for r in replies:
            await self.channel.send(sid, r)


def naive_lost(client: Any, sids: list[str], per: int) -> int:
    finals = [json.loads(v)["slots"]["n"] for v in client.mget([naive_key(s) for s in sids])]
    return per * len(sids) - sum(finals)


def flowkit_lost(store: Store, sids: list[str], per: int) -> int:
    return per * len(sids) - sum((store.load(s) or {"slots": {"n": 0}})["slots"]["n"] for s in sids)


# ---------------------------------------------------------------- drivers


def drive_sync(fn: Callable[[str, UserMessage], Any], stream: list[Delivery]) -> tuple[float, list[float], float]:
    lat = []
    c0, t0 = time.process_time(), time.perf_counter()
    for sid, m in stream:
        t = time.perf_counter()
        fn(sid, m)
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - t0, lat, time.process_time() - c0


async def drive_async(fn: Callable[[str, Any], Awaitable[Any]], stream: list[tuple[str, Any]],
                      concurrency: int) -> tuple[float, list[float], float]:
    it: Iterator[tuple[str, Any]] = iter(stream)
    lat: list[float] = []

    async def worker() -> None:
        for sid, m in it:  # one shared iterator: each delivery is taken by exactly one task
            t = time.perf_counter()
            await fn(sid, m)
            lat.append(time.perf_counter() - t)

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, lat, time.process_time() - c0


# ---------------------------------------------------------------- in-process rows


def sync_rows(url: str, admin: Any, sessions: int, messages: int, seed: int) -> list[Row]:
    rows = []
    registry = FlowRegistry([TALLY])

    # flowkit Runtime, one thread
    starts, stream, per = workload("1", sessions, messages, seed)
    store = Store(connect(url))
    # the recording channel is not the Graph API: no pacing at the WhatsApp tier (80 sends/s by default)
    rt = Runtime(store, registry, channel=RecordingChannel(), rate=NO_PACING)
    for sid, m in starts:
        rt.handle(sid, m)
    trips, cpu0 = store.round_trips, redis_cpu(admin)
    secs, lat, py = drive_sync(rt.handle, stream)
    row = Row("sync", "flowkit Runtime (1 thread)", len(stream), secs, lat, (store.round_trips - trips) / len(stream),
              rt.stats["conflicts"] / len(stream), flowkit_lost(store, [s for s, _ in starts], per), py,
              redis_cpu(admin) - cpu0)
    assert rt.stats["applied"] == len(stream) + len(starts), rt.stats
    rows.append(row)
    store.client.close()

    # naive GET/SET, one thread
    starts, stream, per = workload("2", sessions, messages, seed)
    client = connect(url)
    naive = NaiveSync(client)
    for sid, m in starts:
        naive.handle(sid, m)
    stats0, cpu0 = commandstats(admin), redis_cpu(admin)
    secs, lat, py = drive_sync(naive.handle, stream)
    d = commandstats(admin) - stats0
    rows.append(Row("sync", "naive GET/SET (1 thread)", len(stream), secs, lat, (d["get"] + d["set"]) / len(stream),
                    None, naive_lost(client, [s for s, _ in starts], per), py, redis_cpu(admin) - cpu0))

    # EVALSHA floor, one thread
    store = Store(client)
    store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())])  # load the script
    trips, cpu0 = store.round_trips, redis_cpu(admin)
    secs, lat, py = drive_sync(lambda sid, m: store.driver.execute([Call(NOOP, (f"fk:{{s:{sid}}}:state",), ())]),
                               stream)
    rows.append(Row("sync", "EVALSHA no-op floor (1 thread)", len(stream), secs, lat,
                    (store.round_trips - trips) / len(stream), None, None, py, redis_cpu(admin) - cpu0))
    client.close()
    return rows


async def async_rows(url: str, admin: Any, sessions: int, messages: int, seed: int, concurrency: int,
                     loop: str = "asyncio") -> list[Row]:
    """The asyncio rows, on ``loop`` (asyncio's own or uvloop): each floor first (a connection
    per task, the reference), then flowkit and the naive handler, each way of talking to Redis."""
    rows = []
    registry = FlowRegistry([TALLY])
    x = f"{loop} x{concurrency}"
    prefix = "3" if loop == "asyncio" else "5"

    # EVALSHA floors: a pooled connection per task (redis-py's way), then auto-pipelined
    for auto, how in ((False, "a connection per task"), (True, "auto-pipelined")):
        _, stream, _ = workload("9", sessions, messages, seed)
        client = connect_async(url)
        store = AsyncStore(client, autopipeline=auto)
        await store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())])

        async def floor(sid: str, m: UserMessage, store: AsyncStore = store) -> None:
            await store.driver.execute([Call(NOOP, (f"fk:{{s:{sid}}}:state",), ())])

        await drive_async(floor, stream[:concurrency * 4], concurrency)  # every task's connection opened
        trips, cpu0 = store.round_trips, redis_cpu(admin)
        secs, lat, py = await drive_async(floor, stream, concurrency)
        rows.append(Row(loop, f"EVALSHA no-op floor, {how} ({x})", len(stream), secs, lat,
                        (store.round_trips - trips) / len(stream), None, None, py, redis_cpu(admin) - cpu0))
        await client.aclose()

    # flowkit AsyncRuntime, both ways
    for i, (auto, how) in enumerate(((True, "auto-pipelined"), (False, "a connection per task"))):
        starts, stream, per = workload(f"{prefix}{i}", sessions, messages, seed)
        store = AsyncStore(connect_async(url), autopipeline=auto)
        rt = AsyncRuntime(store, registry, channel=AsyncRecordingChannel())
        await drive_async(rt.handle, starts, concurrency)
        trips, cpu0 = store.round_trips, redis_cpu(admin)
        secs, lat, py = await drive_async(rt.handle, stream, concurrency)
        row = Row(loop, f"flowkit AsyncRuntime, {how} ({x})", len(stream), secs, lat,
                  (store.round_trips - trips) / len(stream), rt.stats["conflicts"] / len(stream),
                  flowkit_lost(Store(admin), [s for s, _ in starts], per), py, redis_cpu(admin) - cpu0)
        if store.driver.pipeline is not None:
            row.notes.append(f"{(store.round_trips - trips) / max(1, store.driver.pipeline.total_writes):.1f} "
                             "round trips per socket write")
        rows.append(row)
        assert rt.stats["applied"] == len(stream) + len(starts), rt.stats
        await store.client.aclose()

    # the ceilings: the commits the runtime makes, with everything before them done in advance
    for part, how in (("commit", "AsyncStore.commit alone, engine steps done in advance"),
                      ("script", "commit script and I/O alone, commits built in advance")):
        rows.append(await commit_ceiling(url, admin, sessions, messages, seed, concurrency, f"{prefix}6{part[0]}",
                                         part, f"flowkit {how} (auto-pipelined, {x})", loop))

    # naive GET/SET (redis-py commands, a connection per task)
    starts, stream, per = workload(f"{prefix}4", sessions, messages, seed)
    client = connect_async(url)
    naive = NaiveAsync(client)
    await drive_async(naive.handle, starts, concurrency)
    stats0, cpu0 = commandstats(admin), redis_cpu(admin)
    secs, lat, py = await drive_async(naive.handle, stream, concurrency)
    d = commandstats(admin) - stats0
    rows.append(Row(loop, f"naive GET/SET ({x})", len(stream), secs, lat,
                    (d["get"] + d["set"]) / len(stream), None, naive_lost(admin, [s for s, _ in starts], per), py,
                    redis_cpu(admin) - cpu0))
    await client.aclose()
    return rows


async def commit_ceiling(url: str, admin: Any, sessions: int, messages: int, seed: int, concurrency: int,
                         prefix: str, part: str, name: str, loop: str) -> Row:
    """What the runtime's rows cannot beat: the same sessions' commits (the engine's states for
    the same messages, computed before the clock starts) through ``AsyncStore.commit`` (part
    ``commit``), or as script calls already built (``script``: validation, JSON, delta,
    checksums and packing done too). Each task owns its sessions, so there are no conflicts."""
    from flowkit.runtime.core import _Core  # noqa: PLC0415 - the runtime's own commit arguments
    from flowkit.store import commit_op  # noqa: PLC0415
    from flowkit.store import keys as K  # noqa: PLC0415
    from flowkit.store.codec import s  # noqa: PLC0415
    from flowkit.types import Commit  # noqa: PLC0415

    starts, stream, _ = workload(prefix, sessions, messages, seed)
    store = AsyncStore(connect_async(url), autopipeline=True)
    by_sid: dict[str, list[Any]] = {}
    now = now_ms()
    for sid, m in starts:
        t = step(TALLY, None, Start(flow=TALLY.name, message_id=m.message_id), now, session_id=sid)
        call = _Core.commit_call(None, Commit(sid, 0, t, None, m.message_id))  # type: ignore[arg-type]  # (reads nothing of self)
        assert (await store.commit(call.session_id, 0, call.state, call.record, effects=call.effects,
                                   timeout_at_ms=call.timeout_at_ms)).ok
        by_sid[sid] = [t.state]
    jobs: dict[str, list[Any]] = {sid: [] for sid, _ in starts}
    for sid, m in stream:
        prev: State = by_sid[sid][-1]
        t = step(TALLY, prev, m, now, session_id=sid)
        call = _Core.commit_call(None, Commit(sid, prev.version, t, prev.to_dict(), m.message_id))  # type: ignore[arg-type]  # (as above)
        by_sid[sid].append(t.state)
        if part == "script":
            built, _, _ = commit_op._prepare(store.config, sid, call.expected, call.state, call.record,
                                             previous=call.previous, message_id=call.message_id, effects=call.effects,
                                             timeout_at_ms=call.timeout_at_ms, snapshot_old=False,
                                             now=store.config.now_ms())
            jobs[sid].append(built.call(K.session_keys(sid), indexed=store.config.indexes_in_commit))
        else:
            jobs[sid].append(call)
    owned: list[list[Any]] = [[] for _ in range(concurrency)]
    for i, sid in enumerate(jobs):
        owned[i % concurrency].append(sid)
    lat: list[float] = []

    async def worker(k: int) -> None:
        for sid in owned[k]:
            for job in jobs[sid]:
                t0 = time.perf_counter()
                if part == "script":
                    reply = (await store.driver.execute([job]))[0]
                    assert s(reply[0]) == "ok", reply
                else:
                    assert (await store.commit(job.session_id, job.expected, job.state, job.record,
                                               previous=job.previous, message_id=job.message_id,
                                               effects=job.effects, timeout_at_ms=job.timeout_at_ms)).ok
                lat.append(time.perf_counter() - t0)

    trips, cpu0 = store.round_trips, redis_cpu(admin)
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    secs, py = time.perf_counter() - t0, time.process_time() - c0
    row = Row(loop, name, len(stream), secs, lat, (store.round_trips - trips) / len(stream), 0.0, None, py,
              redis_cpu(admin) - cpu0)
    await store.client.aclose()
    return row


def run_loop(loop: str, coro: Awaitable[T]) -> T:
    """``asyncio.run`` on asyncio's loop or on uvloop's."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------- HTTP: server processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(kind: str, redis_url: str, port: int, graph_url: str | None) -> None:
    """The server subprocess: uvicorn running the webhook app (or the HTTP floor app)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from flowkit.channels.whatsapp import verify_signature
    from flowkit.web import create_app

    store = AsyncStore(connect_async(redis_url))
    rt: AsyncRuntime | None = None
    if kind == "flowkit":
        channel: Any = AsyncRecordingChannel()
        if graph_url:
            from flowkit.channels.whatsapp import AsyncWhatsAppSender
            from flowkit.channels.whatsapp.payloads import DEFAULT_PHONE_NUMBER_ID
            from flowkit.runtime import AsyncWhatsAppChannel
            from flowkit.testing.fake_graph import DEFAULT_TOKEN

            channel = AsyncWhatsAppChannel(AsyncWhatsAppSender(DEFAULT_TOKEN, DEFAULT_PHONE_NUMBER_ID, api_url=graph_url))
        rt = AsyncRuntime(store, FlowRegistry([TALLY]), channel=channel)
        app: Any = create_app(rt, verify_token="bench", app_secret=SECRET)
    else:
        async def floor(request: Request) -> Response:
            body = await request.body()
            verify_signature(body, request.headers.get("x-hub-signature-256"), SECRET)
            await store.driver.execute([Call(NOOP, ("fk:{s:floor}:state",), ())])
            return JSONResponse({"ok": True})

        app = Starlette(routes=[Route("/webhook", floor, methods=["POST"])])

    async def stats(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps({"round_trips": store.round_trips, "cpu": time.process_time(),
                           "stats": rt.stats if rt is not None else {}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/stats":
            return await stats(scope, receive, send)
        return await app(scope, receive, send)

    # keep-alive longer than the client's pauses (it signs 5k bodies between phases): a
    # connection the server closed while idle would fail the client's next request on it
    uvicorn.run(wrapped, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=300)


def fake_graph() -> None:
    """The FakeGraphAPI subprocess: prints its URL, runs until stdin closes, prints the sent count."""
    from flowkit.testing.fake_graph import FakeGraphAPI

    with FakeGraphAPI() as graph:
        print(graph.url, flush=True)
        sys.stdin.read()
        print(graph.requests, len(graph.sent), flush=True)


@contextlib.contextmanager
def process(args: list[str], port: int | None = None) -> Iterator[subprocess.Popen[str]]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if port is not None:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server {args} did not start (exit {proc.returncode})")
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def signed_body(sid: str, m: UserMessage) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(text_payload(sid, m.text or "", message_id=m.message_id)).encode()
    return body, {"content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)}


async def http_run(port: int, starts: list[Delivery], stream: list[Delivery],
                   concurrency: int) -> tuple[float, list[float], dict[str, Any], dict[str, Any], Counter[int]]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:
        async def post(sid: str, signed: tuple[bytes, dict[str, str]]) -> None:
            for attempt in range(3):  # a dropped connection is redelivered, as WhatsApp would
                try:
                    r = await client.post("/webhook", content=signed[0], headers=signed[1])
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
                    statuses[-1] += 1  # shows up in the row's notes
            statuses[r.status_code] += 1

        await drive_async(post, [(s, signed_body(s, m)) for s, m in starts], concurrency)
        bodies = [(s, signed_body(s, m)) for s, m in stream]  # signed before the clock starts
        statuses.clear()
        before = (await client.get("/bench/stats")).json()
        secs, lat, _ = await drive_async(post, bodies, concurrency)
        after = (await client.get("/bench/stats")).json()
    return secs, lat, before, after, statuses


def http_rows(url: str, admin: Any, sessions: int, messages: int, seed: int, concurrency: int,
              graph: bool) -> list[Row]:
    rows = []
    x = f"x{concurrency}"
    variants: list[tuple[str, str, bool]] = [("flowkit", f"flowkit webhook, replies recorded (HTTP {x})", False)]
    if graph:
        variants.append(("flowkit", f"flowkit webhook, replies to FakeGraphAPI (HTTP {x})", True))
    variants.append(("floor", f"HMAC check + EVALSHA no-op floor (HTTP {x})", False))
    for i, (kind, name, use_graph) in enumerate(variants):
        starts, stream, per = workload(str(5 + i), sessions, messages, seed)
        with contextlib.ExitStack() as stack:
            graph_url = graph_proc = None
            if use_graph:
                graph_proc = stack.enter_context(process(["--fake-graph"]))
                assert graph_proc.stdout is not None
                graph_url = graph_proc.stdout.readline().strip()
            port = free_port()
            stack.enter_context(process(["--serve", kind, "--redis-url", url, "--port", str(port),
                                         *(["--graph-url", graph_url] if graph_url else [])], port))
            cpu0 = redis_cpu(admin)
            secs, lat, before, after, statuses = asyncio.run(http_run(port, starts, stream, concurrency))
            rcpu = redis_cpu(admin) - cpu0
            row = Row("http", name, len(stream), secs, lat, (after["round_trips"] - before["round_trips"] - 0) / len(stream),
                      None, None, after["cpu"] - before["cpu"], rcpu)
            if statuses != Counter({200: len(stream)}):
                row.notes.append(f"HTTP statuses {dict(statuses)}")
            if kind == "flowkit":
                row.conflicts = (after["stats"]["conflicts"] - before["stats"]["conflicts"]) / len(stream)
                row.lost = flowkit_lost(Store(admin), [s for s, _ in starts], per)
                applied = after["stats"]["applied"] - before["stats"]["applied"]
                if applied != len(stream):
                    row.notes.append(f"applied {applied} of {len(stream)}")
            if graph_proc is not None:
                assert graph_proc.stdin is not None and graph_proc.stdout is not None
                graph_proc.stdin.close()
                requests, sent = map(int, graph_proc.stdout.readline().split())
                if sent != len(stream) + len(starts):
                    row.notes.append(f"Graph API got {sent} replies for {len(stream) + len(starts)} messages")
            rows.append(row)
    return rows


# ---------------------------------------------------------------- the happy path


def happy_path(url: str, admin: Any, messages: int) -> dict[str, Any]:
    """One thread, state cache on (default) and off, fresh sessions, no contention."""
    out: dict[str, Any] = {}
    for label, cache in (("cache on", 10_000), ("cache off", 0)):
        starts, stream, _ = workload("9" if cache else "8", 50, messages, 1)
        store = Store(connect(url))
        rt = Runtime(store, FlowRegistry([TALLY]), channel=RecordingChannel(), cache_size=cache, rate=NO_PACING)
        for sid, m in starts:
            rt.handle(sid, m)
        stream = stream[:messages]
        probe = connect(url)  # the INFO calls go over their own connection; subtract their own reads
        reads0 = probe.info("stats")["total_reads_processed"]
        reads_info = probe.info("stats")["total_reads_processed"] - reads0  # what one INFO costs
        stats0 = commandstats(probe)
        reads0 = probe.info("stats")["total_reads_processed"]
        trips = store.round_trips
        for sid, m in stream:
            rt.handle(sid, m)
        reads = probe.info("stats")["total_reads_processed"] - reads0 - reads_info
        d = commandstats(probe) - stats0
        d["info"] = 0
        n = len(stream)
        out[label] = {"client": (store.round_trips - trips) / n, "server_reads": reads / n,
                      "evalsha": d["evalsha"] / n,
                      "commands": {k: v / n for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v}}
        probe.close()
        store.client.close()
    return out


# ---------------------------------------------------------------- main


def fmt_table(rows: list[Row]) -> list[str]:
    floors: dict[str, float] = {}
    for r in rows:
        if "floor" in r.name:
            floors.setdefault(r.mode, r.rate)  # the first floor of a mode is its reference
    header = ("measure", "msgs/s", "vs floor", "p50 ms", "p99 ms", "Redis RT/msg", "conflicts/msg", "lost updates",
              "py CPU µs/msg", "redis CPU µs/msg")
    body = []
    for r in rows:
        body.append((
            r.name, f"{r.rate:,.0f}", f"{r.rate / floors[r.mode]:.0%}" if r.mode in floors else "",
            f"{pct(r.latencies, 50) * 1000:.2f}", f"{pct(r.latencies, 99) * 1000:.2f}",
            "" if r.round_trips is None else f"{r.round_trips:.2f}",
            "" if r.conflicts is None else f"{r.conflicts:.3f}",
            "" if r.lost is None else f"{r.lost:,} of {r.n:,}" + (f" ({r.lost / r.n:.1%})" if r.lost else ""),
            "" if r.py_cpu is None else f"{r.py_cpu / r.n * 1e6:,.0f}",
            "" if r.redis_cpu is None else f"{r.redis_cpu / r.n * 1e6:,.0f}",
        ))
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) + ("" if i == 0 else "") for i, w in enumerate(widths)) + "|"]
    for b in body:
        out.append("| " + " | ".join((c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w)
                                     in enumerate(zip(b, widths, strict=True))) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=10_000, help="messages per in-process row")
    ap.add_argument("--http-messages", type=int, default=5_000, help="messages per HTTP row")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--happy", type=int, default=2_000, help="messages for the happy-path round-trip count")
    ap.add_argument("--no-graph", action="store_true", help="skip the row that sends replies to FakeGraphAPI")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP rows")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--loops", default="asyncio,uvloop", help="event loops for the asyncio rows (asyncio, uvloop)")
    ap.add_argument("--fsync", default=None, help="appendfsync of the bench server (default: flowkit's)")
    # internal: the subprocesses of the HTTP rows
    ap.add_argument("--serve", choices=["flowkit", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--graph-url", help=argparse.SUPPRESS)
    ap.add_argument("--fake-graph", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.redis_url, args.port, args.graph_url)
    if args.fake_graph:
        return fake_graph()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"fsync": args.fsync} if args.fsync else {}
        server = RedisServer(Path(tmp) / "redis", **kw).start()
        try:
            admin = connect(server.url)
            version = admin.info()["redis_version"]
            rows = sync_rows(server.url, admin, args.sessions, args.messages, args.seed)
            for loop in args.loops.split(","):
                rows += run_loop(loop, async_rows(server.url, admin, args.sessions, args.messages, args.seed,
                                                  args.concurrency, loop))
            if not args.no_http:
                rows += http_rows(server.url, admin, args.sessions, args.http_messages, args.seed, args.concurrency,
                                  not args.no_graph)
            happy = happy_path(server.url, admin, args.happy)
            admin.close()
        finally:
            server.stop()
    took = time.perf_counter() - started
    print(f"flowkit runtime benchmark, {dt.date.today().isoformat()}, redis-server {version} (AOF on, appendfsync "
          f"{server.fsync}), Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"TALLY flow, {args.sessions} sessions; {rows[0].n:,} messages per in-process row"
          + ("" if args.no_http else f", {[r for r in rows if r.mode == 'http'][0].n:,} per HTTP row")
          + f"; took {took:.0f} s")
    print()
    for line in fmt_table(rows):
        print(line)
    notes = [f"{r.name}: {'; '.join(r.notes)}" for r in rows if r.notes]
    for note in notes:
        print(f"- NOTE {note}")
    print()
    for label, h in happy.items():
        cmds = ", ".join(f"{k} {v:.2f}" for k, v in h["commands"].items())
        print(f"Happy path (sync Runtime, 1 thread, state {label}, {args.happy:,} messages): "
              f"{h['client']:.2f} round trips/msg (client count), {h['server_reads']:.2f} socket reads/msg "
              f"(server, INFO stats), {h['evalsha']:.2f} EVALSHA/msg; commands/msg (INFO commandstats, "
              f"in-script calls included): {cmds}")


if __name__ == "__main__":
    main()
