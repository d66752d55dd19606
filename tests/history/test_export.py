"""Export from a real Redis (standalone and Cluster): what the runtime committed comes
back exactly, in every format, atomically per session, with export.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flowkit.history.anomalies import analyze
from flowkit.history.columns import read_export, read_meta, sha256_file, to_ms
from flowkit.history.export import export_store
from flowkit.history.synthetic import Synthetic, load_into_store
from flowkit.store import Store
from flowkit.store.atomic_read import read_sessions_atomic


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.sort_values(["session_id", "version"]).reset_index(drop=True)
    b = b.sort_values(["session_id", "version"]).reset_index(drop=True)
    assert len(a) == len(b)
    for c in a.columns:
        left = a[c].astype(object).where(a[c].notna(), None).tolist()
        right = b[c].astype(object).where(b[c].notna(), None).tolist()
        if c == "path":
            left, right = [list(x) for x in left], [list(x) for x in right]
        assert left == right, c


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_export_returns_what_was_committed(store: Store, committed: Synthetic, tmp_path: Path, fmt: str) -> None:
    assert load_into_store(store, committed) == len(committed.history)
    calls: list[tuple[int, Any]] = []
    meta = export_store(store, tmp_path / "out", fmt=fmt, batch=37, progress=lambda d, t: calls.append((d, t)))  # type: ignore[arg-type]
    ex = read_export(tmp_path / "out")
    _same_rows(committed.history, ex.history)
    assert ex.sessions is not None
    snap = ex.sessions.sort_values("session_id").reset_index(drop=True)
    want = committed.sessions.sort_values("session_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(snap.astype(object), want.astype(object))
    assert calls[-1] == (len(committed.sessions), None) and len(calls) == -(-len(committed.sessions) // 37)
    assert meta["history"]["rows"] == len(committed.history) and meta["corrupt_states"] == 0
    on_disk = read_meta(tmp_path / "out")
    for name, digest in on_disk["history"]["files"].items():
        assert sha256_file(tmp_path / "out" / name) == digest
    assert on_disk["flowkit_version"] and on_disk["format"] == fmt
    # A clean store analyses clean (judged at the synthetic export time: nothing is stuck).
    report = analyze(tmp_path / "out", committed.flows, as_of=committed.exported_at)
    assert report.ok, report.anomalies[:3]


def test_filters_since_and_flow(store: Store, committed: Synthetic, tmp_path: Path) -> None:
    load_into_store(store, committed)
    h = committed.history
    cut = h["ts"].sort_values().iloc[len(h) // 2]
    meta = export_store(store, tmp_path / "since", since=to_ms(cut))
    got = read_export(tmp_path / "since")
    _same_rows(h[h["ts"] >= cut], got.history)
    assert meta["since"] is not None and read_meta(tmp_path / "since")["since"] == meta["since"]
    assert got.sessions is not None and set(got.sessions["session_id"]) == set(got.history["session_id"])
    # Histories that start after version 1 are expected in a --since export.
    assert not analyze(tmp_path / "since", committed.flows, as_of=committed.exported_at).counts()["VERSION_GAP"]
    export_store(store, tmp_path / "flow", flow="refund", fmt="jsonl")
    got = read_export(tmp_path / "flow")
    _same_rows(h[h["flow"] == "refund"], got.history)


def test_empty_store(store: Store, tmp_path: Path) -> None:
    meta = export_store(store, tmp_path / "e")
    assert meta["history"]["rows"] == 0 and meta["sessions"]["rows"] == 0
    ex = read_export(tmp_path / "e")
    assert len(ex.history) == 0 and ex.sessions is not None and len(ex.sessions) == 0
    assert analyze(tmp_path / "e").ok


def test_each_session_is_read_atomically(store: Store, committed: Synthetic) -> None:
    load_into_store(store, committed)
    sids = sorted(committed.commits or {})[:5]
    for sid, state, why, records in read_sessions_atomic(store, sids):
        assert why is None and state is not None
        assert records == store.history(sid)  # the same decoding as the store's own reads
        assert state["version"] == records[-1]["version"] and state["step"] == records[-1]["to_step"]


def test_corrupt_state_is_left_out_of_the_snapshot(store: Store, committed: Synthetic, tmp_path: Path) -> None:
    load_into_store(store, committed)
    sid = sorted(committed.commits or {})[0]
    store.client.hset(f"fk:{{s:{sid}}}:state", "state", json.dumps({"broken": True}))
    meta = export_store(store, tmp_path / "c")
    assert meta["corrupt_states"] == 1 and meta["corrupt_sessions"] == [sid]
    report = analyze(tmp_path / "c", committed.flows, as_of=committed.exported_at)
    assert [(a.code, a.session_id) for a in report.anomalies] == [("STATE_MISMATCH", sid)]


def test_export_from_a_redis_cluster(cluster_client: Any, committed: Synthetic, tmp_path: Path) -> None:
    store = Store(cluster_client)
    load_into_store(store, committed, batch=50)
    export_store(store, tmp_path / "k")
    ex = read_export(tmp_path / "k")
    _same_rows(committed.history, ex.history)  # every primary was scanned
