"""The webhook measured honestly (issue 21): `wrk` (a C load generator) with pre-signed
bodies against `flowkit serve` and against a minimal endpoint, side by side in one run.

    apt-get install wrk                                   # Debian's package
    .venv/bin/python bench/webhook.py                     # 20 s per row, 64 connections
    .venv/bin/python bench/webhook.py --seconds 5 --connections 16
    .venv/bin/python bench/webhook.py --serve-workers 2         # serve and a second floor on 2 processes

Rows:

- **floor**: uvicorn + Starlette, the HMAC-SHA256 signature check and one EVALSHA of a
  no-op script per request: what any webhook that stores something must do at least;
- **floor + flowkit's runtime**: the floor's server (same uvicorn settings) with the
  signature check, flowkit's webhook parser and ``AsyncRuntime.handle`` of each message
  (tally flow, replies recorded in memory, no log lines, no metrics): what flowkit serve
  cannot beat while the runtime costs what it does (its own users' sessions, so its answers
  are as fresh as serve's);
- **flowkit serve**: the real command (`flowkit serve`, its own uvicorn settings, flows
  `examples/tally.yaml`), replies sent to the local Graph API imitation (a separate
  process that answers at once); every request is a new answer of a live session (a
  distinct user message id), so each one commits and replies.
- with ``--serve-workers N``: serve runs N processes (``flowkit serve --workers N``), and a
  row is added for **the floor with N processes** (uvicorn's own workers), so serve is
  compared both with the one-process floor the issue names and with a floor as wide as it.

wrk's own Lua script cycles through the signed bodies; the Python client plays no part, so
the numbers measure the server. Each row prints requests/s, its ratio to the floor, and
wrk's latency percentiles (p50, p99), plus the server's non-2xx answers. Sessions are
started before the clock (untimed) so the timed requests are answers, as in production.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.channels.whatsapp import sign  # noqa: E402
from flowkit.channels.whatsapp.payloads import text_payload  # noqa: E402
from flowkit.store import RedisServer  # noqa: E402

SECRET = "bench-app-secret"
FLOWS = ROOT / "examples" / "tally.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], port: int | None, what: str, log: Path) -> Iterator[subprocess.Popen[Any]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, cwd=ROOT)
    try:
        if port is not None:
            wait_port(port, proc, what)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def floor_starlette(redis_url: str | None = None) -> Any:
    """The floor's ASGI app: HMAC check and one EVALSHA of a no-op script per request
    (``redis_url`` None: from $BENCH_FLOOR_REDIS_URL, for uvicorn's worker processes)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from flowkit.channels.whatsapp import verify_signature
    from flowkit.store import connect_async

    client = connect_async(redis_url or os.environ["BENCH_FLOOR_REDIS_URL"])
    sha: list[str] = []

    async def webhook(request: Request) -> Response:
        body = await request.body()
        verify_signature(body, request.headers.get("x-hub-signature-256"), SECRET)
        if not sha:
            sha.append(await client.script_load("return 1"))
        await client.evalsha(sha[0], 1, "fk:{s:floor}:state")
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])


def floor_app(redis_url: str, port: int, workers: int = 1) -> None:
    """The floor server (run in a subprocess by this script with --floor); with ``workers``,
    that many processes under uvicorn's supervisor, as ``flowkit serve --workers``."""
    import uvicorn

    if workers > 1:
        os.environ["BENCH_FLOOR_REDIS_URL"] = redis_url
        uvicorn.run("webhook:floor_starlette", factory=True, app_dir=str(Path(__file__).parent), workers=workers,
                    host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    uvicorn.run(floor_starlette(redis_url), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def runtime_app(redis_url: str, port: int) -> None:
    """The floor's server running flowkit's runtime on each message (--runtime-floor)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from flowkit.channels.whatsapp import verify_signature
    from flowkit.channels.whatsapp.webhook import parse_webhook_body
    from flowkit.flow import load_flow
    from flowkit.runtime import AsyncRecordingChannel, AsyncRuntime, FlowRegistry
    from flowkit.store import AsyncStore, connect_async
    from flowkit.web import to_event

    runtime = AsyncRuntime(AsyncStore(connect_async(redis_url)), FlowRegistry([load_flow(FLOWS)]),
                           channel=AsyncRecordingChannel())

    async def webhook(request: Request) -> Response:
        body = await request.body()
        verify_signature(body, request.headers.get("x-hub-signature-256"), SECRET)
        for m in parse_webhook_body(body).messages:
            await runtime.handle(m.wa_id, to_event(m), wait_services=False)
        return JSONResponse({"ok": True})

    uvicorn.run(Starlette(routes=[Route("/webhook", webhook, methods=["POST"])]), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def graph_app() -> None:
    """The Graph API imitation in its own process (--graph): prints its environment, serves until stdin closes."""
    from flowkit.testing.fake_graph import FakeGraphAPI

    with FakeGraphAPI() as graph:
        print(json.dumps(graph.env()), flush=True)
        sys.stdin.read()


def lua_script(bodies: list[tuple[bytes, str]], path: Path) -> None:
    """wrk's request script: each thread walks its own slice of the signed bodies."""
    def lua_str(b: bytes) -> str:
        return "[==[" + b.decode() + "]==]"
    items = ",\n".join(f"{{{lua_str(b)}, {lua_str(s.encode())}}}" for b, s in bodies)
    path.write_text(f"""
local bodies = {{
{items}
}}
local counter = 0
local threads = {{}}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  counter = id
  wraps = 0
end
function request()
  local i = (counter % #bodies) + 1
  counter = counter + #threads
  if counter >= #bodies then wraps = 1 end
  local b = bodies[i]
  return wrk.format("POST", "/webhook", {{["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = b[2]}}, b[1])
end
function done(summary, latency, requests)
  for _, p in ipairs({{50, 90, 99}}) do
    io.write(string.format("PCT %d %.3f\\n", p, latency:percentile(p) / 1000.0))
  end
  io.write(string.format("NON2XX %d\\n", summary.errors.status))
  local wrapped = 0
  for _, t in ipairs(threads) do wrapped = wrapped + (t:get("wraps") or 0) end
  io.write(string.format("WRAPPED %d\\n", wrapped))
end
""")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` and its live children so far (serve's workers)."""
    import psutil

    total = 0.0
    for p in (psutil.Process(pid), *psutil.Process(pid).children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def run_wrk(port: int, script: Path, seconds: int, connections: int, threads: int, pid: int) -> dict[str, Any]:
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), f"http://127.0.0.1:{port}/webhook"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {int(p): float(v) for p, v in re.findall(r"^PCT (\d+) ([\d.]+)$", out, re.M)}
    non2xx = int(re.search(r"^NON2XX (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    wrapped = int(re.search(r"^WRAPPED (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    cpu = cpu_seconds(pid) - cpu0
    return {"cpu_us": cpu / max(1, total) * 1e6, "rps": rps, "p50": pct.get(50), "p90": pct.get(90), "p99": pct.get(99), "non2xx": non2xx,
            "requests": total, "wrapped": bool(wrapped), "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--bodies", type=int, default=60_000, help="signed answers per round")
    ap.add_argument("--rounds", type=int, default=3, help="floor/flowkit pairs, alternating (load drifts)")
    ap.add_argument("--serve-workers", type=int, default=1,
                    help="flowkit serve --workers N (rows are added for the floor with as many processes)")
    ap.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--floor-workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--graph", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--runtime-floor", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor:
        return floor_app(args.redis_url, args.port, args.floor_workers)
    if args.graph:
        return graph_app()
    if args.runtime_floor:
        return runtime_app(args.redis_url, args.port)
    if shutil.which("wrk") is None:
        sys.exit("bench/webhook.py needs wrk: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        log = tmp / "servers.log"
        server = RedisServer(tmp / "redis", appendonly=True).start()
        try:
            import httpx

            # bodies: one answer per (user, n), round-robin over users; signed before anything runs;
            # each round gets its own slice, so every timed request to flowkit is a new answer
            users = [f"3162{u:08d}" for u in range(args.users)]
            others = [f"3163{u:08d}" for u in range(args.users)]  # the runtime floor's own sessions
            scripts, other_scripts = [], []
            for who, out in ((users, scripts), (others, other_scripts)):
                for r in range(args.rounds):
                    bodies = []
                    for i in range(r * args.bodies, (r + 1) * args.bodies):
                        sid = who[i % len(who)]
                        body = json.dumps(text_payload(sid, f"x{i}", message_id=f"wamid.B{sid}{i:010d}")).encode()
                        bodies.append((body, sign(body, SECRET)))
                    out.append(tmp / f"bodies{len(out)}-{who[0]}.lua")
                    lua_script(bodies, out[-1])
            print(f"# bench/webhook.py {dt.date.today()}: {platform.node()}, {os.cpu_count()} cores, load "
                  f"{os.getloadavg()[0]:.1f}; wrk -t{args.threads} -c{args.connections} -d{args.seconds}s; "
                  f"{args.bodies:,} distinct signed answers per round over {len(users):,} live sessions; "
                  f"{args.rounds} rounds, floor and flowkit alternating")
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            rows: list[tuple[str, dict[str, Any]]] = []
            floor_port, port = free_port(), free_port()
            with contextlib.ExitStack() as stack:
                floor_proc = stack.enter_context(running([sys.executable, __file__, "--floor", "--redis-url",
                                                          server.url, "--port", str(floor_port)], env, floor_port,
                                                         "floor", log))
                wide = args.serve_workers > 1  # then the floor also runs with as many processes
                if wide:
                    wide_port = free_port()
                    wide_proc = stack.enter_context(running(
                        [sys.executable, __file__, "--floor", "--floor-workers", str(args.serve_workers),
                         "--redis-url", server.url, "--port", str(wide_port)], env, wide_port, "floor (workers)", log))
                rt_port = free_port()
                rt_proc = stack.enter_context(running([sys.executable, __file__, "--runtime-floor", "--redis-url",
                                                       server.url, "--port", str(rt_port)], env, rt_port,
                                                      "runtime floor", log))
                g = stack.enter_context(running([sys.executable, __file__, "--graph"], env, None, "graph", log))
                graph_env = _graph_env(log, g)
                serve_env = dict(env, FLOWKIT_REDIS_URL=server.url, WHATSAPP_APP_SECRET=SECRET,
                                 WHATSAPP_VERIFY_TOKEN="bench", **graph_env)
                flowkit = Path(sys.executable).with_name("flowkit")
                serve_proc = stack.enter_context(running([str(flowkit), "serve", str(FLOWS), "--port", str(port),
                                                          "--workers", str(args.serve_workers)],
                                                         serve_env, port, "flowkit serve", log))
                for p, who in ((port, users), (rt_port, others)):
                    with httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) as c:
                        for u in who:  # start every session, untimed
                            b = json.dumps(text_payload(u, "tally", message_id=f"wamid.START{u}")).encode()
                            r = c.post("/webhook", content=b, headers={"content-type": "application/json",
                                                                       "x-hub-signature-256": sign(b, SECRET)})
                            r.raise_for_status()
                for r, script in enumerate(scripts):
                    rows.append((f"{r + 1}: floor: HMAC + EVALSHA no-op",
                                 run_wrk(floor_port, script, args.seconds, args.connections, args.threads,
                                         floor_proc.pid)))
                    if wide:
                        rows.append((f"{r + 1}: floor, {args.serve_workers} workers",
                                     run_wrk(wide_port, script, args.seconds, args.connections, args.threads,
                                             wide_proc.pid)))
                    rows.append((f"{r + 1}: floor + flowkit's runtime (no replies sent)",
                                 run_wrk(rt_port, other_scripts[r], args.seconds, args.connections, args.threads,
                                         rt_proc.pid)))
                    workers = f", {args.serve_workers} workers" if args.serve_workers > 1 else ""
                    rows.append((f"{r + 1}: flowkit serve (tally, replies to Graph{workers})",
                                 run_wrk(port, script, args.seconds, args.connections, args.threads, serve_proc.pid)))
        finally:
            server.stop()
    print(f"{'row':52} {'req/s':>9} {'vs floor':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'CPU µs/req':>10}  load")
    ratios: dict[str, list[float]] = {}
    cpu_ratios: dict[str, list[float]] = {}
    per_round = len(rows) // args.rounds
    wide_ratios: list[float] = []
    for i, (name, r) in enumerate(rows):
        floor = rows[i - i % per_round][1]  # the round's floor row, one process (or this one)
        kind = name.split(": ", 1)[1]
        if per_round == 4 and i % per_round == 3:  # serve with N workers against the floor with N
            wide_ratios.append(r["rps"] / rows[i - 2][1]["rps"])
        if i % per_round:
            ratios.setdefault(kind, []).append(r["rps"] / floor["rps"])
            cpu_ratios.setdefault(kind, []).append(floor["cpu_us"] / r["cpu_us"])
        note = "  (bodies wrapped: later requests were duplicates)" if r["wrapped"] and "flowkit" in name else ""
        print(f"{name:52} {r['rps']:9,.0f} {r['rps'] / floor['rps']:9.0%} {r['p50']:8.1f} {r['p90']:8.1f} "
              f"{r['p99']:8.1f} {r['non2xx']:8,} {r['cpu_us']:10,.0f}  {r['load']:.1f}{note}")
    for kind, rs in ratios.items():
        rs.sort()
        cs = sorted(cpu_ratios[kind])
        print(f"{kind} / floor, median of {len(rs)} rounds: {rs[len(rs) // 2]:.0%} (range {rs[0]:.0%}-{rs[-1]:.0%}); "
              f"by server CPU per request (floor CPU / its CPU, less sensitive to other load): median "
              f"{cs[len(cs) // 2]:.0%}")
    if wide_ratios:
        wide_ratios.sort()
        print(f"flowkit serve, {args.serve_workers} workers / floor, {args.serve_workers} workers, median of "
              f"{len(wide_ratios)} rounds: {wide_ratios[len(wide_ratios) // 2]:.0%} "
              f"(range {wide_ratios[0]:.0%}-{wide_ratios[-1]:.0%})")


def _graph_env(log: Path, proc: subprocess.Popen[Any]) -> dict[str, str]:
    # the graph process prints its env as the first line of the shared log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("{") and "WHATSAPP" in line:
                return json.loads(line)
        if proc.poll() is not None:
            raise RuntimeError("the Graph API imitation exited")
        time.sleep(0.05)
    raise RuntimeError("the Graph API imitation did not start")


if __name__ == "__main__":
    main()
