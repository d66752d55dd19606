"""Benchmark of ``flowkit session find`` on many sessions (issue 22.4: "fast on a million sessions").

    .venv/bin/python bench/find.py                    # 1,000,000 sessions (~2 minutes to load)
    .venv/bin/python bench/find.py --sessions 100000  # a quicker run

It starts its own redis-server, writes N sessions' state hashes the way the commit script
leaves them (the small fields, the state JSON and the active index for live sessions; 30%
live, idle times spread over 30 days), then times side by side in one run:

- **index**: a live-status query with an idle bound (``status == 'waiting_input' and idle > 29 * days``),
  which reads one range of the active index and ``HMGET``s only its members;
- **index, all live**: ``status == 'waiting_input'`` (every live session is a candidate);
- **scan, fields**: a query the index cannot answer (``step == 'ask_qty'``): SCAN + HMGET of every session;
- **scan, slots**: a query that reads slots (``slots.qty > 15``): SCAN + the state JSON of every session;
- **SCAN floor**: SCAN of every state key alone, the least any full scan can cost.

Each row prints matches, candidates read, seconds and its ratio to the SCAN floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowkit.store import RedisServer, Store, connect  # noqa: E402
from flowkit.store import keys as K  # noqa: E402
from flowkit.store.find import FindStats, compile_query, find_sessions  # noqa: E402

STEPS = ["ask_size", "upsell", "ask_qty", "ask_address", "place_order", "done"]
NOW = 1_790_812_800_000 + 30 * 86_400_000


def load(client: object, n: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    live = 0
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for i in range(n):
        sid = f"3161{i:09d}"
        step = rng.choice(STEPS)
        status = "completed" if step == "done" or rng.random() < 0.55 else "waiting_input"
        updated = NOW - rng.randrange(30 * 86_400_000)
        state = {"session_id": sid, "flow": "order_pizza", "flow_version": "3", "step": step, "status": status,
                 "slots": {"size": rng.choice(["small", "medium", "large"]), "qty": rng.randint(1, 20)},
                 "attempts": {}, "stack": [], "pending": None, "version": rng.randint(1, 8),
                 "started_at": updated - 600_000, "updated_at": updated}
        pipe.hset(K.session_keys(sid).state, mapping={
            "version": state["version"], "state": json.dumps(state), "checksum": "x", "flow": "order_pizza",
            "step": step, "status": status, "updated_at": updated})
        if status != "completed":
            live += 1
            pipe.zadd(K.IDX_ACTIVE, {sid: updated})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return live


def timed(store: Store, query: str) -> tuple[int, int, float]:
    stats = FindStats()
    t = time.perf_counter()
    n = sum(1 for _ in find_sessions(store, compile_query(query), now_ms=NOW, stats=stats, batch=1000))
    return n, stats.candidates, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), appendonly=False).start()
        try:
            client = connect(server.url)
            t = time.perf_counter()
            live = load(client, args.sessions)
            print(f"# bench/find.py {dt.date.today()}: {args.sessions:,} sessions ({live:,} live) loaded in "
                  f"{time.perf_counter() - t:.1f} s")
            store = Store(client)
            t = time.perf_counter()
            keys = sum(1 for _ in client.scan_iter(match=K.STATE_PATTERN, count=1000))
            floor = time.perf_counter() - t
            rows = [("index", "status == 'waiting_input' and idle > 29 * days"),
                    ("index, all live", "status == 'waiting_input'"),
                    ("scan, fields", "step == 'ask_qty'"),
                    ("scan, slots", "slots.qty > 15")]
            print(f"{'row':18} {'matches':>9} {'read':>9} {'seconds':>8} {'x SCAN floor':>12}")
            for name, q in rows:
                n, read, secs = timed(store, q)
                print(f"{name:18} {n:9,} {read:9,} {secs:8.2f} {secs / floor:12.2f}")
            print(f"{'SCAN floor':18} {'':9} {keys:9,} {floor:8.2f} {1.0:12.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
