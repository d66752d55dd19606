"""The engine of another commit against this tree's, interleaved in one process (CPU time).

    .venv/bin/python bench/engine_ab.py                 # against 40efd48 (the two-route engine)
    .venv/bin/python bench/engine_ab.py --old main --rounds 30

On a shared machine two separate runs of bench/engine.py see different loads; here the old
engine (``git archive`` of its ``flowkit`` package, imported as ``flowkit_old``) and the
current one take turns, round after round, on the same workloads: the answers of a linear
flow of ten int questions, and a wrong answer plus ``help`` at each of its questions.
Prints min and median CPU µs per event of each, and their ratio.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
T0 = 1_790_000_000_000


def import_old(commit: str, into: Path) -> tuple[ModuleType, ModuleType]:
    """``flowkit.engine`` and ``flowkit.flow`` of ``commit``, as the package ``flowkit_old``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "flowkit"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    (into / "flowkit").rename(into / "flowkit_old")
    for path in (into / "flowkit_old").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\bflowkit(?=[. ])", "flowkit_old", text), encoding="utf-8")
    sys.path.insert(0, str(into))
    import flowkit_old.engine as engine  # type: ignore[import-not-found]
    import flowkit_old.flow as flow  # type: ignore[import-not-found]
    return engine, flow


def workloads(engine: Any, flow: Any, n: int = 10) -> tuple[Callable[[int], int], Callable[[int], int]]:
    b = flow.FlowBuilder("linear", start="q0")
    for i in range(n):
        b.slot(f"a{i}", "int", min=1, max=100)
        b.ask(f"q{i}", f"Question {i}?", input={"type": "int", "min": 1, "max": 100}, save=f"a{i}",
              next=f"q{i + 1}" if i + 1 < n else "done")
    b.end("done")
    f = b.build()
    step, Message = engine.step, getattr(engine, "UserMessage", None) or engine.Message  # the old package names it Message
    start = step(f, None, engine.Start(flow=f.name), T0, session_id="ab").state
    msgs = [Message(text=str(1 + i), message_id=f"m{i}") for i in range(n)]
    wrong, help_ = Message(text="abc"), Message(text="help")
    states, s = [], start
    for i, m in enumerate(msgs):
        states.append(s)
        s = step(f, s, m, T0 + i + 1).state
    assert s.status == "completed"

    def answers(k: int) -> int:
        for _ in range(k):
            s, now = start, T0
            for m in msgs:
                now += 1000
                s = step(f, s, m, now).state
        return k * n

    def others(k: int) -> int:
        for _ in range(k):
            for s in states:
                step(f, s, wrong, T0 + 99_999)
                step(f, s, help_, T0 + 99_999)
        return k * 2 * n

    return answers, others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="40efd48", help="the commit to compare with (default 40efd48: two routes)")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    import flowkit.engine
    import flowkit.flow

    with tempfile.TemporaryDirectory() as tmp:
        old = workloads(*import_old(args.old, Path(tmp)))
        new = workloads(flowkit.engine, flowkit.flow)
        times: dict[tuple[str, int], list[float]] = {(w, j): [] for w in ("old", "new") for j in (0, 1)}
        for _ in range(args.rounds):
            for who, runs in (("old", old), ("new", new)):
                for j, k in ((0, 300), (1, 100)):
                    t0 = time.process_time()
                    count = runs[j](k)
                    times[(who, j)].append((time.process_time() - t0) / count * 1e6)
    print(f"CPU µs per event, {args.rounds} rounds interleaved; old = {args.old}, new = this tree")
    print("| event | old min / median | new min / median | new ÷ old (min) |")
    print("| --- | ---: | ---: | ---: |")
    for j, name in ((0, "answer (linear, 10 int asks)"), (1, "wrong answer and `help`")):
        o, n_ = times[("old", j)], times[("new", j)]
        print(f"| {name} | {min(o):.2f} / {statistics.median(o):.2f} | {min(n_):.2f} / {statistics.median(n_):.2f} | "
              f"{min(n_) / min(o):.2f}x |")


if __name__ == "__main__":
    main()
