"""Many threads and processes doing read-modify-commit loops on the same 20 sessions:
no update is lost or applied twice (versions exactly 1..N, the counter in the state is N-1,
the final state is the last record's), and the derived counters stay exact."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from typing import Any

import pytest

from flowkit.store import Store, connect
from tests.store.conftest import advance, make_record, make_state

SESSIONS = [f"c{i:02d}" for i in range(20)]
STEPS = ["ask_size", "ask_qty", "confirm"]


def worker(url: str, name: str, commits: int, seed: int) -> dict[str, list[str]]:
    """Read-modify-commit until ``commits`` commits applied; returns the message ids applied per session."""
    store = Store(connect(url))
    rng = random.Random(seed)
    applied: dict[str, list[str]] = {}
    for i in range(commits):
        sid = rng.choice(SESSIONS)
        mid = f"{name}-{i}"
        while True:
            cur = store.load(sid)
            assert cur is not None
            nxt = make_state(sid, cur["version"], STEPS[(cur["slots"]["n"] + 1) % 3], slots={"n": cur["slots"]["n"] + 1},
                             started_at=cur["started_at"])
            rec = make_record(nxt, cur["step"], message_id=mid)
            res = store.commit(sid, cur["version"], nxt, rec, previous=cur, message_id=mid,
                               timeout_at_ms=nxt["updated_at"] + 1000, effects=[{"kind": "reply", "text": mid}])
            if res.outcome == "ok":
                applied.setdefault(sid, []).append(mid)
                store.ack_effects(sid, res.version)
                break
            assert res.outcome == "conflict", res  # every message id is new: never a duplicate
    store.client.close()
    return applied


def _process_main(url: str, name: str, commits: int, seed: int, out: Any) -> None:
    out.put(worker(url, name, commits, seed))


@pytest.mark.slow
def test_no_lost_or_doubled_update_under_contention(store: Store, redis_url: str) -> None:
    for sid in SESSIONS:
        advance(store, sid, None, "welcome", n=0)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(redis_url, f"p{i}", 150, 100 + i, queue)) for i in range(2)]
    for p in procs:
        p.start()
    results: list[dict[str, list[str]]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        r = worker(redis_url, f"t{i}", 120, i)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results += [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    applied: dict[str, list[str]] = {sid: [] for sid in SESSIONS}
    for r in results:
        for sid, mids in r.items():
            applied[sid] += mids
    assert sum(len(m) for m in applied.values()) == 6 * 120 + 2 * 150

    for sid in SESSIONS:
        hist = store.history(sid)
        n = len(hist)
        assert [h["version"] for h in hist] == list(range(1, n + 1))  # no gap, no duplicate
        assert n == 1 + len(applied[sid])  # every acknowledged commit is there, nothing more
        mids = [h["message_id"] for h in hist[1:]]
        assert Counter(mids) == Counter(applied[sid])  # each message applied exactly once
        final = store.load(sid)
        assert final["version"] == n and final["slots"]["n"] == n - 1  # no lost read-modify-write
        assert (final["step"], final["status"]) == (hist[-1]["to_step"], hist[-1]["status"])
        assert store.state_at(sid, n) == final
        assert all(store.seen(sid, m) is not None for m in applied[sid][:5])
    assert store.counters()["order_pizza"]["sessions"] == 20
    assert sum(store.counters()["order_pizza"]["step"].values()) == 20
    assert store.pending_effects(SESSIONS[0]) == {}
    report = store.reconcile()
    assert report.fixes["counters"] == {"added": 0, "removed": 0, "changed": 0}  # increments commute: exact
    assert report.fixes["active"]["added"] == report.fixes["active"]["removed"] == 0
