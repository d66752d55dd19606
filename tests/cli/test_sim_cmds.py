"""`flowkit simulate`, `check` and `test` end to end on a real Redis: simulate -> check via
the --log file exits 0, JSON output shapes, exit codes 1 (violations) and 2 (bad input)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.history.export import export_store
from flowkit.store import Store
from flowkit.store import keys as K
from tests.runtime.conftest import ROOT

FLOWS = str(ROOT / "examples" / "flows")
runner = CliRunner()

HEADLINE = ["sessions started", "sessions completed", "sessions abandoned", "sessions failed", "messages",
            "conflicts retried", "duplicates absorbed", "msgs/s"]


def simulate(redis_url: str, *args: str) -> Any:
    return runner.invoke(app, ["simulate", FLOWS, "--redis", redis_url, *args])


def test_simulate_then_check_with_the_log_exits_0(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "sent.jsonl"
    r = simulate(redis_url, "--users", "40", "--concurrency", "4", "--seed", "5", "--duplicate-rate", "0.2",
                 "--out-of-order-rate", "0.1", "--crash-rate", "0.05", "--invalid-rate", "0.2", "--abandon-rate", "0.1",
                 "--log", str(log))
    assert r.exit_code == 0, r.output
    for row in HEADLINE:
        assert row in r.stdout
    assert "simulation: 40 users, concurrency 4, seed 5" in r.stdout
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {x["kind"] for x in lines} == {"in", "replies"} and len(lines) > 200
    c = runner.invoke(app, ["check", FLOWS, "--redis", redis_url, "--sent", str(log)])
    assert c.exit_code == 0, c.output
    assert "40 sessions" in c.stderr and "no violations" in c.stderr
    data = json.loads(runner.invoke(app, ["check", FLOWS, "--redis", redis_url, "--sent", str(log),
                                          "--format", "json"]).stdout)
    assert data["ok"] is True and data["sessions"] == 40 and data["violations"] == []
    assert data["messages_checked"] > 100 and data["replies_checked"] > 0


def test_simulate_json_summary_shape_and_same_seed_same_numbers(redis_url: str, redis_client: Any) -> None:
    args = ["--users", "25", "--seed", "9", "--duplicate-rate", "0.3", "--format", "json"]
    a = simulate(redis_url, *args)
    assert a.exit_code == 0, a.output
    first = json.loads(a.stdout)  # nothing but the JSON on stdout (no progress bar)
    assert {"users", "started", "completed", "abandoned", "failed", "messages", "conflicts", "duplicates_sent",
            "duplicates_absorbed", "out_of_order", "crashes", "messages_per_second", "users_per_second", "seconds",
            "virtual_seconds", "ended"} <= set(first)
    assert first["users"] == first["started"] == 25 and first["duplicates_absorbed"] > 0
    redis_client.flushall()
    again = json.loads(simulate(redis_url, *args, "--concurrency", "8").stdout)
    timing = ("seconds", "messages_per_second", "users_per_second", "conflicts")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in first.items() if k not in timing}


def test_simulate_realtime_with_speed(redis_url: str, redis_client: Any) -> None:
    r = simulate(redis_url, "--users", "5", "--realtime", "--speed", "500", "--seed", "1", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["started"] == 5 and data["still_active"] == 0
    assert abs(data["virtual_seconds"] - data["seconds"]) < 1.0  # on the wall clock


def test_simulate_rejects_bad_rates(redis_url: str, redis_client: Any) -> None:
    r = simulate(redis_url, "--users", "3", "--duplicate-rate", "1.5")
    assert r.exit_code == 2 and "between 0 and 1" in r.stderr
    r = simulate(redis_url, "--users", "3", "--crash-rate", "-0.1")
    assert r.exit_code == 2


def test_check_finds_a_damaged_session_and_exits_1(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "sent.jsonl"
    assert simulate(redis_url, "--users", "10", "--seed", "2", "--log", str(log), "--format", "json").exit_code == 0
    # a session with at least three records, so deleting the second leaves a gap (not a short tail)
    sid = next(s for s in sorted(Store(redis_client).iter_session_ids())
               if redis_client.llen(K.session_keys(s).hist) >= 3)
    hist = K.session_keys(sid).hist
    redis_client.lset(hist, 1, "gone")
    redis_client.lrem(hist, 1, "gone")  # a lost update: version 2 is gone
    r = runner.invoke(app, ["check", FLOWS, "--redis", redis_url, "--sent", str(log), "--format", "json"])
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["counts"].get("VERSION_GAP") == 1
    gap = next(v for v in data["violations"] if v["code"] == "VERSION_GAP")
    assert gap == {"code": "VERSION_GAP", "session_id": sid, "version": 2, "detail": gap["detail"]}
    text = runner.invoke(app, ["check", FLOWS, "--redis", redis_url])
    assert text.exit_code == 1 and f"VERSION_GAP {sid} v2" in text.stdout


def test_check_an_export_folder(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "sent.jsonl"
    assert simulate(redis_url, "--users", "12", "--seed", "4", "--log", str(log), "--format", "json").exit_code == 0
    export_store(Store(redis_client), tmp_path / "export", fmt="jsonl")
    redis_client.flushall()  # the export alone is enough
    r = runner.invoke(app, ["check", FLOWS, "--export", str(tmp_path / "export"), "--sent", str(log),
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["ok"] and data["sessions"] == 12 and data["source"].endswith("export")
    bad = runner.invoke(app, ["check", FLOWS, "--export", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "cannot read the export" in bad.stderr


def test_check_bad_sent_log_is_exit_2(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("nope\n")
    r = runner.invoke(app, ["check", FLOWS, "--redis", redis_url, "--sent", str(tmp_path / "bad.jsonl")])
    assert r.exit_code == 2 and "bad.jsonl:1" in r.stderr


def test_flowkit_test_with_values_file(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"payments.lookup": [{"amount": 20.0, "currency": "EUR"}]}))
    r = runner.invoke(app, ["test", FLOWS, "--redis", redis_url, "--values", str(values), "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["ok"] and data["covered"] == data["total"] > 50 and data["failed"] == []
    values.write_text("[1, 2]")
    assert runner.invoke(app, ["test", FLOWS, "--redis", redis_url, "--values", str(values)]).exit_code == 2
