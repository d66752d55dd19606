"""Benchmark of the analysis engines side by side (issue 22, point 5): one run, one table.

On one generated export (default 10M history rows, the example flows, anomalies of every
code; see bench/analysis.py for how it is made): the pandas floor (read the columns, last
row per session, version diff), the DuckDB floor, and ``flowkit analyze`` on the pandas,
duckdb and dask engines (each the same report; precision/recall against the injected
truth). Each step runs in its own process (bench/analysis.py's ``measure``). The dask step
starts a local cluster (one worker process per core) inside the step, so its start-up is
in its time; ``FLOWKIT_DASK_SCHEDULER=tcp://...`` runs it on a running cluster instead.

    python bench/engines.py                 # 10M rows, replaces its table in bench/README.md
    python bench/engines.py --rows 1000000  # another size (recorded with its size)
    python bench/engines.py --quick         # 200k rows, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import analysis  # noqa: E402  (bench/analysis.py: the measured steps and the data set-up)

STEPS = (("floor_pandas", "pandas floor (read + last row + diff)"),
         ("floor_duckdb", "DuckDB floor (same query)"),
         ("analyze_flowkit", "flowkit analyze --engine pandas"),
         ("analyze_flowkit_duckdb", "flowkit analyze --engine duckdb"),
         ("analyze_flowkit_dask", "flowkit analyze --engine dask (local cluster)"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="200k rows, no README update")
    args = ap.parse_args()
    from flowkit.history.synthetic import generate

    target = 200_000 if args.quick else args.rows
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-engines-") as tmp:
        t = time.perf_counter()
        base = generate(sessions=2_000 if args.quick else 10_000, seed=5, per_code=5)
        d = Path(tmp) / "export"
        info = analysis.make_rows(base, target, d)
        print(f"{info['rows']:,} rows written ({time.perf_counter() - t:.0f}s)", file=sys.stderr)
        for name, what in STEPS:
            r = analysis.measure(name, str(d))
            rows.append((what, f"{info['rows']:,} rows", r))
            print(f"  {what}: {r['seconds']:.1f}s, {r['peak_mb']:.0f} MB", file=sys.stderr)
    load_after = os.getloadavg()[0]
    table = analysis.render(rows)
    print(table)
    if not args.quick:
        record(table, load_before, load_after)


def record(table: str, load_before: float, load_after: float) -> None:
    readme = ROOT / "bench" / "README.md"
    head = (f"\n## Analysis engines: pandas, DuckDB, Dask ({dt.date.today().isoformat()})\n\n"
            f"`python bench/engines.py` on {os.cpu_count()} cores, Python {platform.python_version()}; one run, each "
            f"step in its own process. The machine was shared and busy (load average {load_before:.0f} at the start, "
            f"{load_after:.0f} at the end, on {os.cpu_count()} cores): read the ratios, not the seconds.\n\n")
    text = readme.read_text()
    start = text.find("\n## Analysis engines: pandas, DuckDB, Dask")
    if start < 0:
        readme.write_text(text.rstrip("\n") + "\n" + head + table + "\n")
        return
    end = text.find("\n## ", start + 1)
    rest = text[end:] if end >= 0 else ""
    readme.write_text(text[:start].rstrip("\n") + "\n" + head + table + "\n" + rest)


if __name__ == "__main__":
    main()
