"""Benchmark of flowkit.history (issue 8): one run, one table.

- export of 100k sessions from a real Redis (``export_store``: SCAN, pipelined atomic
  reads, Parquet);
- ``analyze`` (every anomaly code, flows and snapshot included) on 1M and 10M generated
  history rows, against a plain pandas floor in the same run: read the same Parquet
  columns, last row per session (groupby), version diff per session — what any analysis
  must at least do;
- the same floor in DuckDB, which reads Parquet with both cores;
- ``analyze`` with ``engine="duckdb"`` (the same report, checks in SQL);
- ``analyze`` with ``engine="dask"`` (the same report: the pandas checks per bucket of
  sessions on a local Dask cluster started inside the step, so its start-up is counted;
  "peak MB" there is the driver's, the largest worker's is in the notes).

Every measurement runs in a fresh subprocess, so "peak MB" is that step's own maximum
resident memory (ru_maxrss), not what earlier steps left behind. The synthetic histories
come from the real engine on the example flows (``flowkit.history.synthetic``), with
anomalies of every code injected; the 1M/10M sets repeat a 10k-session base under new
session ids, and precision/recall are checked on the full set.

Redis is filled with 2,000 sessions committed through ``Store.commit`` exactly as the
runtime does, then cloned under new session ids (state JSON, checksums and the history
entries rewritten) with the store's own backup/restore, because 1.1M individual commits
would take the benchmark ~12 minutes of set-up.

    python bench/analysis.py            # full run, replaces the table in bench/README.md
    python bench/analysis.py --quick    # small sizes, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere, against this checkout

# ---------------------------------------------------------------- measured steps (run in a child)

STEPS = {}


def step(fn):  # noqa: ANN001, ANN201 - a tiny registry
    STEPS[fn.__name__] = fn
    return fn


@step
def floor_pandas(path: str) -> dict:
    import pandas as pd

    df = pd.read_parquet(Path(path) / "history", columns=["session_id", "version", "ts", "status", "to_step"])
    last = df.groupby("session_id", sort=False).tail(1)
    gaps = df.groupby("session_id", sort=False)["version"].diff()
    return {"rows": len(df), "sessions": len(last), "gaps": int((gaps > 1).sum())}


@step
def floor_duckdb(path: str) -> dict:
    import duckdb

    con = duckdb.connect()
    q = f"""
        with h as (select session_id, version, ts, status, to_step,
                          version - lag(version) over (partition by session_id order by version) as d
                   from read_parquet('{Path(path) / "history"}/*.parquet'))
        select count(*), count(distinct session_id), count(*) filter (where d > 1) from h
    """
    rows, sessions, gaps = con.execute(q).fetchone()
    return {"rows": rows, "sessions": sessions, "gaps": gaps}


def _analyze(path: str, engine: str) -> dict:
    """flowkit analyze on the generated export, scored against its ground truth."""
    from flowkit.history import analyze
    from flowkit.history.synthetic import example_flows

    kw = {"scheduler": os.environ.get("FLOWKIT_DASK_SCHEDULER")} if engine == "dask" else {}
    report = analyze(path, example_flows(), engine=engine, **kw)
    truth = json.loads((Path(path) / "truth.json").read_text())
    found = {(a.code, a.session_id, a.version) for a in report.anomalies}
    want = {tuple(t) for t in truth}
    tp = len(found & want)
    return {"rows": report.summary["rows"], "anomalies": len(found),
            "precision": tp / len(found) if found else 1.0, "recall": tp / len(want) if want else 1.0}


@step
def analyze_flowkit(path: str) -> dict:
    return _analyze(path, "pandas")


@step
def analyze_flowkit_duckdb(path: str) -> dict:
    return _analyze(path, "duckdb")


@step
def analyze_flowkit_dask(path: str) -> dict:
    return _analyze(path, "dask")


@step
def funnel_flowkit(path: str) -> dict:
    from flowkit.history import funnel, read_history
    from flowkit.history.synthetic import example_flows

    f = funnel(read_history(path, columns=["session_id", "flow", "flow_version", "version", "ts", "event",
                                           "from_step", "to_step", "path", "status", "actor"]), example_flows())
    return {"rows": int(f["entered"].sum())}


@step
def export_flowkit(url: str, out: str) -> dict:
    from flowkit.history.export import export_store
    from flowkit.store import Store, connect

    meta = export_store(Store(connect(url)), out, batch=500)
    return {"sessions": meta["sessions"]["rows"], "rows": meta["history"]["rows"]}


def child(name: str, *args: str) -> None:
    import resource

    t0 = time.perf_counter()
    out = STEPS[name](*args)
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Worker processes a step started and waited for (the dask engine's local cluster).
    out["child_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def measure(name: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", name, *args], capture_output=True, text=True, check=False)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        raise SystemExit(f"{name} failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(line[7:])


# ---------------------------------------------------------------- data set-up (not measured)


def make_rows(base, target_rows: int, out: Path) -> dict:
    copies = max(1, -(-target_rows // len(base.history)))
    meta = base.write_tiled(out, copies)
    truth = sorted(base.tiled_truth(copies), key=lambda t: (t[0], t[1], t[2] or 0))
    (out / "truth.json").write_text(json.dumps(truth))
    return {"rows": meta["history"]["rows"], "copies": copies}


def fill_redis(store, sessions: int, base_sessions: int, work: Path) -> int:  # noqa: ANN001
    from flowkit.history.synthetic import generate, load_into_store
    from flowkit.store import backup, codec, restore

    base = generate(sessions=base_sessions, seed=7, per_code=0, keep_states=True)
    load_into_store(store, base)
    src = work / "base.backup"
    backup(store, src)
    lines = src.read_text().splitlines()
    header, body = lines[0], [json.loads(x) for x in lines[1:] if '"end"' not in x[:10]]
    copies = -(-sessions // len(body)) - 1
    for k in range(copies):
        dst = work / f"clone{k}.backup"
        with dst.open("w") as fh:
            fh.write(header + "\n")
            for line in body:
                fh.write(codec.dumps(_clone(line, f"{line['session_id']}~{k}", codec)) + "\n")
            fh.write(codec.dumps({"end": True, "sessions": len(body)}) + "\n")
        restore(store, dst)
        dst.unlink()
    return len(body) * (copies + 1)


def _clone(line: dict, sid: str, codec) -> dict:  # noqa: ANN001
    """A backup line for another session id: the state names its session, so its JSON and checksum change."""
    old = line["session_id"]
    data = json.loads(json.dumps(line["data"]))
    fields = data["state"]
    i = fields.index("state")
    state = json.loads(fields[i + 1])
    state["session_id"] = sid
    text = codec.dumps(state)
    digest = codec.checksum(text)
    fields[i + 1] = text
    fields[fields.index("checksum") + 1] = digest
    if data["hist"]:
        last = data["hist"][-1][1]
        last[last.index("checksum") + 1] = digest
    snap = data["snap"]
    for j in range(1, len(snap), 2):
        s_text = snap[j].partition(":")[2].replace(f'"session_id":"{old}"', f'"session_id":"{sid}"')
        snap[j] = f"{codec.checksum(s_text)}:{s_text}"
    out = {"session_id": sid, "version": line["version"], "data": data}
    out["sum"] = codec.checksum(codec.dumps(out))
    return out


# ---------------------------------------------------------------- the run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, no README update")
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from flowkit.history.synthetic import generate
    from flowkit.store import RedisServer, Store

    sizes = [(100_000, "100k"), (1_000_000, "1M")] if args.quick else [(1_000_000, "1M"), (10_000_000, "10M")]
    export_sessions = 5_000 if args.quick else 100_000
    rows: list[tuple[str, str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        base = generate(sessions=2_000 if args.quick else 10_000, seed=5, per_code=5)
        print(f"base history: {len(base.history):,} rows from {len(base.sessions):,} sessions "
              f"({time.perf_counter() - t:.0f}s)", file=sys.stderr)
        for target, label in sizes:
            d = work / label
            info = make_rows(base, target, d)
            print(f"{label}: {info['rows']:,} rows written", file=sys.stderr)
            for name, what in (("floor_pandas", "pandas floor (read + last row + diff)"),
                               ("floor_duckdb", "DuckDB floor (same query)"),
                               ("analyze_flowkit", "flowkit analyze (all 10 codes)"),
                               ("analyze_flowkit_duckdb", "flowkit analyze (duckdb)"),
                               ("analyze_flowkit_dask", "flowkit analyze (dask, local cluster)"),
                               ("funnel_flowkit", "flowkit funnel (read + funnel)")):
                r = measure(name, str(d))
                rows.append((f"{what}", f"{info['rows']:,} rows", r))
                print(f"  {what}: {r['seconds']:.1f}s, {r['peak_mb']:.0f} MB", file=sys.stderr)
            import shutil

            shutil.rmtree(d)
        with RedisServer(work / "redis", appendonly=False) as server:
            store = Store(server.client())
            t = time.perf_counter()
            n = fill_redis(store, export_sessions, 500 if args.quick else 2_000, work)
            print(f"redis: {n:,} sessions loaded ({time.perf_counter() - t:.0f}s)", file=sys.stderr)
            r = measure("export_flowkit", server.url, str(work / "export"))
            rows.append(("flowkit export from Redis (Parquet)", f"{r['sessions']:,} sessions / {r['rows']:,} rows", r))
            print(f"  export: {r['seconds']:.1f}s, {r['peak_mb']:.0f} MB", file=sys.stderr)
    table = render(rows)
    print(table)
    if not args.quick:
        append_readme(table)


def render(rows: list[tuple[str, str, dict]]) -> str:
    floors = {size: r["seconds"] for what, size, r in rows if what.startswith("pandas floor")}
    out = ["| step | data | seconds | peak MB | vs pandas floor | notes |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for what, size, r in rows:
        ratio = f"{r['seconds'] / floors[size]:.2f}x" if size in floors else ""
        notes = ""
        if "precision" in r:
            notes = f"{r['anomalies']:,} anomalies, precision {r['precision']:.2f}, recall {r['recall']:.2f}"
        if r.get("child_peak_mb", 0) > 1:
            notes += f"; largest worker {r['child_peak_mb']:.0f} MB"
        out.append(f"| {what} | {size} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {ratio} | {notes} |")
    return "\n".join(out)


def append_readme(table: str) -> None:
    import platform

    readme = ROOT / "bench" / "README.md"
    cpu = os.cpu_count()
    head = (f"\n## History export and analysis ({dt.date.today().isoformat()})\n\n"
            f"`python bench/analysis.py` on {cpu} cores, Python {platform.python_version()}; one run, each step in "
            "its own process (peak MB = that process's max RSS).\n\n")
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    # Replace this benchmark's section (up to the next "## " heading), or append it.
    start = text.find("\n## History export and analysis")
    if start < 0:
        readme.write_text(text.rstrip("\n") + "\n" + head + table + "\n")
        return
    end = text.find("\n## ", start + 1)
    rest = text[end:] if end >= 0 else ""
    readme.write_text(text[:start].rstrip("\n") + "\n" + head + table + "\n" + rest)


if __name__ == "__main__":
    main()
