"""Redis memory per session: history layout 1 (a stream) against the compact list with JSON
elements (layout 2) and with binary elements (layout 3, written now), side by side in one
run, on two workloads (issue #21).

    .venv/bin/python bench/memory.py [--sessions 300]

- **bench flow**: bench/store.py's workload (a start and 20 updates of an order session, the
  pending step and trail changing every time), committed through ``Store.commit_many``;
- **bench flow, as the runtime writes it**: the same commits with message ids of the form the
  Cloud API sends (the sender's number and a random id, base64, as the survey has) and each
  input as the engine records a typed text;
- **survey (held out)**: bench/flows/survey20.yaml, 20 questions written as a new user would,
  driven through the real ``Runtime``: a start and 20 valid answers, WhatsApp-length message ids.

The "JSON elements" rows are the very same sessions with their history list rewritten as
layout-2 elements, and "state in one field" with their state hash rewritten the previous way
(the JSON in one ``state`` field, a hashtable; flowkit/store/statefield.py): each measured
beside what is written now. Both layouts hold the very same commits: the compact sessions are written first, then every
one of their versions (states, records, message ids) is committed again by the layout-1 commit
script (flowkit/testing/old_layout.py, captured from the old code) after a FLUSHALL, and the
derived indexes are rebuilt by ``reconcile`` (the old code wrote them beside its commits).

Bytes per session = ``MEMORY USAGE`` (samples 0: exact) summed over the session's five store
keys (state, history, dedupe, snapshots, outbox) plus its share of the global indexes
(active, timeouts, outbox, counters, flows: their MEMORY USAGE / sessions). The runtime's
own per-session keys (delivery records, inbound window) are listed apart: they are the same
in both layouts and belong to other parts. The used_memory delta per session is printed too.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowkit.engine import UserMessage  # noqa: E402
from flowkit.flow import load_flow  # noqa: E402
from flowkit.runtime import FlowRegistry, RecordingChannel, Runtime  # noqa: E402
from flowkit.store import RedisServer, Store, connect  # noqa: E402
from flowkit.store import keys as K  # noqa: E402
from flowkit.testing.old_layout import old_commit  # noqa: E402

HERE = Path(__file__).resolve().parent
SURVEY = load_flow(HERE / "flows" / "survey20.yaml")
RECORDS = 21  # a start and 20 answers
STORE_KEYS = ("state", "hist", "seen", "snap", "fx")
INDEX_KEYS = (K.IDX_ACTIVE, K.IDX_TIMEOUTS, K.IDX_OUTBOX, K.IDX_FLOWS)


def _bench_store() -> Any:
    spec = importlib.util.spec_from_file_location("bench_store", HERE / "store.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_store"] = mod  # (its dataclasses look their module up there)
    spec.loader.exec_module(mod)
    return mod


def wamid(phone: str, i: int) -> str:
    """A WhatsApp message id as the Cloud API sends them (62 characters): base64 of the
    sender's number and a 20-character random id."""
    rnd = hashlib.sha1(f"{phone}:{i}".encode()).hexdigest()[:20].upper().encode()
    raw = b"\x1c\x18" + bytes([len(phone)]) + phone.encode() + b"\x15\x02\x00\x12\x18\x14" + rnd + b"\x00"
    return "wamid." + base64.b64encode(raw).decode()


ANSWERS = ["Maria Jansen", "34", "maria.jansen@example.com", "Utrecht", "app", "12", "A blue rain jacket, size M",
           "yes", "3", "4", "4", "no", "5", "9", "The fit and the colour", "Faster delivery to the islands", "yes",
           "evening", "450", "Keep up the good work, and please add more sizes for children"]


# ---------------------------------------------------------------- workloads (compact layout, real code)


def bench_flow(store: Store, sids: list[str], *, as_runtime: bool = False) -> None:
    """bench/store.py's commits. Two of their fields are not what a deployment writes: message
    ids of WhatsApp's length but not its form (they name one fixed number, not the session's,
    and are not the Cloud API's base64 record), and an input written by ``json.dumps`` with its
    default spacing and no type. ``as_runtime`` gives the same commits ids of the form the
    Cloud API sends (:func:`wamid`) and the input as the engine records a typed text
    (``{"text":...,"type":"text"}``, engine/values.py ``record_input``)."""
    bs = _bench_store()
    prev: dict[str, Any] = {}
    for i in range(RECORDS):
        batch = [bs.commit_args(prev.get(sid), sid, i) for sid in sids]
        if as_runtime:
            for a in batch:
                a["message_id"] = a["record"]["message_id"] = wamid(a["session_id"], i)
                text = json.loads(a["record"]["input"])["text"]
                a["record"]["input"] = json.dumps({"text": text, "type": "text"}, separators=(",", ":"))
        for args, res in zip(batch, store.commit_many(batch), strict=True):
            assert res.ok, res
            prev[args["session_id"]] = args["state"]
    for sid in sids:  # the runtime acknowledges every outbox entry once the reply is sent
        for v in store.pending_effects(sid):
            store.ack_effects(sid, v)


def survey(store: Store, sids: list[str]) -> None:
    rt = Runtime(store, FlowRegistry([SURVEY]), channel=RecordingChannel())
    for sid in sids:
        out = rt.handle(sid, UserMessage(text="survey", message_id=wamid(sid, 0)))
        assert out.status == "applied", out
        for i, text in enumerate(ANSWERS, 1):
            out = rt.handle(sid, UserMessage(text=text, message_id=wamid(sid, i)))
            assert out.status == "applied", (i, text, out)
        assert store.load(sid)["status"] == "completed"  # type: ignore[index]
        assert len(store.history(sid)) == RECORDS


# ---------------------------------------------------------------- the same commits in layout 1


def captured(store: Store, sids: list[str]) -> dict[str, list[tuple[dict[str, Any], dict[str, Any], Any]]]:
    """Every version of every session: (state, record, timeout_at) as the compact store holds them."""
    out = {}
    for sid in sids:
        recs = store.history(sid)
        timeout = store.client.hget(K.session_keys(sid).state, "timeout_at")
        seq = []
        for rec in recs:
            st = store.state_at(sid, rec["version"])
            record = {k: rec[k] for k in ("ts", "event", "from_step", "to_step", "path", "status", "message_id",
                                          "input", "error", "actor")}
            seq.append((st, record, int(timeout) if timeout and rec is recs[-1] else None))
        out[sid] = seq
    return out


def write_layout_1(store: Store, commits: dict[str, list[tuple[dict[str, Any], dict[str, Any], Any]]]) -> None:
    for sid, seq in commits.items():
        prev = None
        for st, rec, timeout in seq:
            st, rec = dict(st), dict(rec)
            tag = old_commit(store.client, store.config, sid, st["version"] - 1, st, rec, previous=prev,
                             message_id=rec["message_id"], timeout_at_ms=timeout)
            assert tag == "ok", tag
            prev = st
    store.reconcile()


# ---------------------------------------------------------------- measuring


def measure(store: Store, sids: list[str], base_used: int) -> dict[str, float]:
    c = store.client
    n = len(sids)
    out = {name: 0.0 for name in (*STORE_KEYS, "indexes", "runtime keys")}
    for sid in sids:
        for name, key in zip(STORE_KEYS, K.session_keys(sid).all, strict=True):
            out[name] += c.memory_usage(key, samples=0) or 0
        own = {k.decode() for k in c.scan_iter(match=f"fk:{{s:{sid}}}:*".replace("*", "*"), count=1000)}
        for key in own - set(K.session_keys(sid).all):
            out["runtime keys"] += c.memory_usage(key, samples=0) or 0
    idx = [*INDEX_KEYS, *(k.decode() for k in c.scan_iter(match=K.IDX_COUNT_PREFIX + "*"))]
    out["indexes"] = float(sum(c.memory_usage(k, samples=0) or 0 for k in idx))
    per = {k: v / n for k, v in out.items()}
    per["total"] = sum(per[k] for k in (*STORE_KEYS, "indexes"))
    per["used_memory"] = (c.info("memory")["used_memory"] - base_used) / n
    return per


def floor(store: Store, sids: list[str], compact: dict[str, float]) -> dict[str, float]:
    """The least any layout keeping the export columns could take: the state hash, the dedupe
    set and the indexes as measured, plus a list per session holding only what no other data
    implies (ts, event, status, message id shortened as the compact layout does, input): no
    steps, paths, deltas, checksums or snapshots, so no time travel and no checks."""
    from flowkit.store.entries import _short_mid

    c = store.client
    hist = 0
    for sid in sids:
        key = f"floor:{{s:{sid}}}"
        c.rpush(key, *(json.dumps([r["ts"], r["event"][:1], r["status"][:1], _short_mid(sid, r["message_id"]),
                                   r["input"]], separators=(",", ":")) for r in store.history(sid)))
        hist += c.memory_usage(key, samples=0) or 0
        c.delete(key)
    out = {k: (compact[k] if k in ("state", "seen", "indexes") else 0.0) for k in compact}
    out["hist"] = hist / len(sids)
    out["total"] = out["state"] + out["seen"] + out["indexes"] + out["hist"]
    out["used_memory"] = float("nan")
    return out


def _rewritten(store: Store, sids: list[str], compact: dict[str, float], part: str,
               write: Callable[[Any, str, str], None]) -> dict[str, float]:
    """``compact`` with one key per session (``part``: state or hist) measured as ``write`` puts
    the same data another way into a scratch key (then deleted)."""
    c = store.client
    total = 0
    for sid in sids:
        key = f"rewritten:{{s:{sid}}}"
        write(c, sid, key)
        total += c.memory_usage(key, samples=0) or 0
        c.delete(key)
    out = dict(compact)
    out[part] = total / len(sids)
    out["total"] = compact["total"] - compact[part] + out[part]
    out["used_memory"] = float("nan")
    return out


def state_in_one_field(store: Store, sids: list[str], compact: dict[str, float]) -> dict[str, float]:
    """The compact layout as it was before the state was packed: the same sessions with their
    state hash written the old way (the JSON in one ``state`` field, so a hashtable)."""
    from flowkit.store import statefield as SF

    def write(c: Any, sid: str, key: str) -> None:
        c.hset(key, mapping=SF.plain_fields(SF.as_fields(c.hgetall(K.session_keys(sid).state).items())))

    return _rewritten(store, sids, compact, "state", write)


def json_elements(store: Store, sids: list[str], compact: dict[str, float]) -> dict[str, float]:
    """The compact layout as it was before the elements were binary: the same sessions' records
    as layout-2 JSON elements (flowkit/testing/old_layout.py, captured from the code of then)."""
    from flowkit.store import entries
    from flowkit.testing.old_layout import layout2_elements

    def write(c: Any, sid: str, key: str) -> None:
        c.rpush(key, *layout2_elements(entries.decode_all(sid, c.lrange(K.session_keys(sid).hist, 0, -1))))

    return _rewritten(store, sids, compact, "hist", write)


def run(url: str, sessions: int) -> list[tuple[str, str, dict[str, float]]]:
    client = connect(url)
    rows = []
    for flow, work, prefix in (("bench flow", bench_flow, "3161"),
                               ("bench flow, as the runtime writes it", functools.partial(bench_flow, as_runtime=True), "3163"),
                               ("survey (held out)", survey, "3162")):
        sids = [f"{prefix}{i:07d}" for i in range(sessions)]
        client.flushall()
        base = client.info("memory")["used_memory"]
        store = Store(client)
        work(store, sids)
        compact = measure(store, sids, base)
        least = floor(store, sids, compact)
        one_field = state_in_one_field(store, sids, compact)
        json_els = json_elements(store, sids, compact)
        commits = captured(store, sids)
        client.flushall()
        base = client.info("memory")["used_memory"]
        write_layout_1(store, commits)
        assert {client.type(K.session_keys(s).hist) for s in sids} == {b"stream"}
        old = measure(store, sids, base)
        # the layout-1 sessions still read correctly through the new code (lazily converted)
        assert [r["message_id"] for r in store.history(sids[0])] == [c[1]["message_id"] for c in commits[sids[0]]]
        rows += [(flow, "layout 1 (stream)", old), (flow, "JSON elements, state in one field", {
                     **json_els, "state": one_field["state"],
                     "total": json_els["total"] - compact["state"] + one_field["state"]}),
                 (flow, "JSON elements, packed state", json_els),
                 (flow, "binary elements, packed state", compact), (flow, "floor (see above)", least)]
    return rows


# ---------------------------------------------------------------- the commit script, old and new


def lua_cost(url: str, sessions: int, rounds: int = 4) -> dict[str, tuple[float, float]]:
    """Per commit, by layout: (µs of Lua in Redis, client CPU µs) on the bench flow's commits,
    in interleaved rounds on one server. Both by EVALSHA: layout 1 through redis-py with its
    captured script, the compact one through ``Store.commit`` (flowkit's driver, with the
    derived-index writes in the same round trip), so the client µs differ in more than the
    layout; the Lua µs (INFO commandstats) compare the two scripts like with like."""
    import time

    from flowkit.store.values import StoreConfig
    from flowkit.testing import old_layout

    bs = _bench_store()
    client = connect(url)
    client.flushall()
    store = Store(client)
    sha = client.script_load(old_layout.OLD_COMMIT)

    class Old:  # old_commit sends the source with EVAL; here it goes by SHA, as the old store did
        @staticmethod
        def eval(script: str, numkeys: int, *args: Any) -> Any:
            return client.evalsha(sha, numkeys, *args)

    cfg = StoreConfig()
    names = ("layout 1 (stream)", "compact (list)")
    acc = {name: [0.0, 0.0, 0] for name in names}
    prev: dict[str, dict[str, Any]] = {}
    for r in range(rounds):
        for j, name in enumerate(names):
            sids = [f"9{j}{r}{i:06d}" for i in range(sessions)]
            client.config_resetstat()
            t0 = time.process_time()
            for i in range(RECORDS):
                for sid in sids:
                    a = bs.commit_args(prev.get(sid), sid, i)
                    if j == 0:
                        assert old_layout.old_commit(Old, cfg, sid, a["expected_version"], a["state"], a["record"],
                                                     previous=a["previous"], message_id=a["message_id"],
                                                     effects=a["effects"], timeout_at_ms=a["timeout_at_ms"]) == "ok"
                    else:
                        assert store.commit(**a).ok
                    prev[sid] = a["state"]
            acc[name][1] += (time.process_time() - t0) * 1e6
            acc[name][0] += client.info("commandstats")["cmdstat_evalsha"]["usec"]
            acc[name][2] += RECORDS * len(sids)
    return {k: (v[0] / v[2], v[1] / v[2]) for k, v in acc.items()}


def table(rows: list[tuple[str, str, dict[str, float]]]) -> None:
    cols = ("total", *STORE_KEYS, "indexes", "used_memory", "runtime keys")
    header = ("workload", "layout", "bytes/session", "state", "hist", "seen", "snap", "fx", "indexes' share",
              "used_memory delta", "(runtime's own keys)")
    body = [(flow, layout, *("-" if m[c] != m[c] else f"{m[c]:,.0f}" for c in cols)) for flow, layout, m in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    def line(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths, strict=True))) + " |"

    print(line(header))
    print("| " + " | ".join("-" * w if i < 2 else "-" * (w - 1) + ":" for i, w in enumerate(widths)) + " |")
    for r in body:
        print(line(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=300, help="sessions per workload")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # AOF off: its rewrite buffer would blur the used_memory deltas (MEMORY USAGE is exact either way)
        server = RedisServer(Path(tmp) / "redis", appendonly=False).start()
        try:
            rows = run(server.url, args.sessions)
            lua = lua_cost(server.url, max(20, args.sessions // 3))
            version = connect(server.url).info("server")["redis_version"]
        finally:
            server.stop()
    print(f"bench/memory.py, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {args.sessions} sessions per workload, "
          f"{RECORDS} records each; Redis {version}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    table(rows)
    print("\n| commit script (bench flow, interleaved rounds) | µs of Lua per commit in Redis | client CPU µs per commit |")
    print("| --- | ---: | ---: |")
    for name, (lua_us, cpu_us) in lua.items():
        print(f"| {name} | {lua_us:.1f} | {cpu_us:.0f} |")


if __name__ == "__main__":
    main()
