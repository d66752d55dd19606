"""Webhook acknowledgement latency and sender pacing (issue 16), one run, printed as tables.

    .venv/bin/python bench/webhook_ack.py [--messages 200] [--concurrency 16] [--delay 2.0]
                                          [--sends 400] [--tier 80]

It starts its own redis-server and a Graph API imitation (``FakeGraphAPI``, real HTTP) and
drives the real web app (``create_app`` around an ``AsyncRuntime``, signed deliveries through
httpx's ASGI transport, so the app and its background sender share one event loop as in
``flowkit serve``).

1. **Acknowledgement latency**: ``--messages`` signed deliveries (one "pizza" each, a new
   user each: two replies) at ``--concurrency``, with replies sent inside the request (the old
   design) and by the background sender, against an imitation that answers at once and one
   that delays every send by ``--delay`` seconds. Columns: p50/p99 of POST until its answer,
   the ratio of p99 to the same design's p99 with a prompt Graph, and the seconds until Graph
   had accepted every reply.
2. **Pacing**: ``--sends`` replies to as many users through the background sender, against
   an imitation that enforces the number's throughput tier (``--tier`` messages/s, code
   130429 beyond it), with pacing at the tier and with pacing off (a rate far above it).
   Columns: accepted sends/s, their ratio to the tier, 130429 answers, retries, and replies
   given up after 30 s of refusals (left in the outbox for recovery).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from flowkit.channels.whatsapp import AsyncWhatsAppSender, sign  # noqa: E402
from flowkit.channels.whatsapp.payloads import text_payload  # noqa: E402
from flowkit.engine import Reply  # noqa: E402
from flowkit.flow import load_flows  # noqa: E402
from flowkit.runtime import AsyncRuntime, AsyncWhatsAppChannel  # noqa: E402
from flowkit.store import AsyncStore, RedisServer, connect_async  # noqa: E402
from flowkit.testing.fake_graph import FakeGraphAPI  # noqa: E402
from flowkit.web import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOWS = load_flows(ROOT / "examples" / "flows")
SECRET = "bench-secret"


class RemoteGraph:
    """A FakeGraphAPI in its own process (as in production, Graph is not in the runner's
    process: its threads would compete with the event loop for the GIL and skew the timing)."""

    def __init__(self, latency: float = 0.0, rate_limit: float | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-graph", str(latency), str(rate_limit or 0)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.url = self.proc.stdout.readline().strip()

    def _ask(self, what: str) -> list[int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return [int(x) for x in self.proc.stdout.readline().split()]

    def counts(self) -> tuple[int, int]:
        """(messages accepted, requests answered)."""
        sent, requests = self._ask("count")
        return sent, requests

    def reset(self) -> None:
        self._ask("reset")

    def config(self) -> Any:
        from flowkit.channels.whatsapp import WhatsAppConfig
        from flowkit.channels.whatsapp.payloads import DEFAULT_PHONE_NUMBER_ID
        from flowkit.testing.fake_graph import DEFAULT_TOKEN

        return WhatsAppConfig(token=DEFAULT_TOKEN, phone_number_id=DEFAULT_PHONE_NUMBER_ID, api_url=self.url)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:  # its server threads may still be answering a retry
            self.proc.kill()
            self.proc.wait()


def serve_graph(latency: float, rate_limit: float) -> None:
    with FakeGraphAPI(latency=latency, rate_limit=rate_limit or None) as graph:
        print(graph.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                graph.reset()
                print("0", flush=True)
            else:
                print(len(graph.sent), graph.requests, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def ack_row(redis_url: str, graph: RemoteGraph, *, background: bool, messages: int, concurrency: int,
                  tag: str) -> dict[str, Any]:
    graph.reset()
    store = AsyncStore(connect_async(redis_url))
    sender = AsyncWhatsAppSender(config=graph.config(), max_attempts=1 if background else 4)
    rt = AsyncRuntime(store, FLOWS, channel=AsyncWhatsAppChannel(sender), background=background, rate=10_000)
    app = create_app(rt, verify_token="t", app_secret=SECRET)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = text_payload(f"{tag}{i:06d}", "pizza", message_id=f"wamid.{tag}{i}")
            raw = json.dumps(body).encode()
            t0 = time.perf_counter()
            r = await client.post("/webhook", content=raw, headers={
                "content-type": "application/json", "x-hub-signature-256": sign(raw, SECRET)})
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text

    started = time.perf_counter()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wa", timeout=120) as client:
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        while graph.counts()[0] < 2 * messages:  # every reply accepted by Graph
            await asyncio.sleep(0.02)
        delivered = time.perf_counter() - started
        await rt.drain()
    await sender.aclose()
    await store.client.aclose()
    return {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "delivered_s": delivered,
            "mean": statistics.fmean(latencies) * 1000}


async def pacing_row(redis_url: str, graph: RemoteGraph, *, rate: float, sends: int) -> dict[str, Any]:
    graph.reset()
    store = AsyncStore(connect_async(redis_url))
    sender = AsyncWhatsAppSender(config=graph.config(), max_attempts=1)
    rt = AsyncRuntime(store, FLOWS, channel=AsyncWhatsAppChannel(sender), background=True, rate=rate)
    assert rt.outbox is not None
    rt.outbox.backoff, rt.outbox.max_wait = 0.05, 30.0
    t0 = time.perf_counter()
    futures = [rt.outbox.submit(f"p{i:06d}", 0, [Reply(text="hi")], ack=False, record=False) for i in range(sends)]
    results = await asyncio.gather(*futures)
    elapsed = time.perf_counter() - t0
    accepted, requests = graph.counts()
    out = {"rate": accepted / elapsed, "throttled": requests - accepted, "retries": rt.outbox.stats["retries"],
           "left": results.count("left"), "elapsed": elapsed}
    await sender.aclose()
    await store.client.aclose()
    return out


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("flowkit").setLevel(logging.ERROR)  # the unpaced row logs every 130429
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        acks: dict[tuple[str, str], dict[str, Any]] = {}
        for delay in (0.0, args.delay):
            graph = RemoteGraph(latency=delay)
            try:
                for background in (False, True):
                    design = "background sender" if background else "sent inside the request"
                    tag = f"{'b' if background else 'i'}{int(delay * 1000)}u"
                    acks[(design, f"{delay:g} s")] = await ack_row(
                        server.url, graph, background=background, messages=args.messages,
                        concurrency=args.concurrency, tag=tag)
            finally:
                graph.close()
        pacing = {}
        graph = RemoteGraph(rate_limit=args.tier)
        try:
            for label, rate in ((f"pacing at the tier ({args.tier:g}/s)", args.tier), ("pacing off", 100_000.0)):
                pacing[label] = await pacing_row(server.url, graph, rate=rate, sends=args.sends)
        finally:
            graph.close()

    print(f"## Webhook acknowledgement and sending ({dt.date.today().isoformat()})\n")
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"{args.messages} deliveries at concurrency {args.concurrency}, each starting order_pizza (2 replies).\n")
    print("| replies                 | Graph delay | ack p50 ms | ack p99 ms | p99 vs prompt Graph | all replies accepted after s |")
    print("|-------------------------|------------:|-----------:|-----------:|--------------------:|-----------------------------:|")
    for (design, delay), row in acks.items():
        base = acks[(design, "0 s")]["p99"]
        print(f"| {design:<23} | {delay:>11} | {row['p50']:>10.2f} | {row['p99']:>10.2f} | "
              f"{row['p99'] / base:>18.1f}x | {row['delivered_s']:>28.1f} |")
    print(f"\n{args.sends} replies to {args.sends} users, Graph imitation enforcing {args.tier:g} messages/s "
          "(130429 beyond):\n")
    print("| sender                    | sends/s | vs tier | 130429 answers | retries | left in outbox |")
    print("|---------------------------|--------:|--------:|---------------:|--------:|---------------:|")
    for label, row in pacing.items():
        print(f"| {label:<25} | {row['rate']:>7.1f} | {row['rate'] / args.tier:>6.0%} | {row['throttled']:>14} | "
              f"{row['retries']:>7} | {row['left']:>14} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--delay", type=float, default=2.0)
    p.add_argument("--sends", type=int, default=400)
    p.add_argument("--tier", type=float, default=80.0)
    p.add_argument("--serve-graph", nargs=2, type=float, help=argparse.SUPPRESS)  # the RemoteGraph child
    ns = p.parse_args()
    if ns.serve_graph:
        serve_graph(*ns.serve_graph)
    else:
        asyncio.run(main(ns))
