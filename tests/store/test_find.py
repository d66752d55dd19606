"""Session search on a real Redis: every name a query reads, the plan (index or scan, proven
from Redis' own command counts), evaluation errors, limits; and bulk repair (rollback,
migrate, fail, expire) through the real runtime, each change an admin record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.engine import UserMessage
from flowkit.errors import QueryError
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.runtime.bulk import bulk
from flowkit.store import Store
from flowkit.store.find import FindStats, compile_query, find_sessions
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES, Clock

runner = CliRunner()
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z


@pytest.fixture
def sessions(store: Store) -> tuple[Runtime, Clock]:
    """Eight pizza orders at known steps and times, and one finished appointment."""
    clock = Clock(T0)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), clock=clock, services=EXAMPLE_SERVICES)
    def say(sid: str, *texts: str) -> None:
        for i, t in enumerate(texts):
            rt.handle(sid, UserMessage(text=t, message_id=f"{sid}.{i}.{t}"))
    for n in range(4):  # p0..p3 wait at ask_address, one hour apart
        say(f"p{n}", "pizza", "large", "yes", str(n + 1))
        clock.advance(3600)
    for n in range(4, 8):  # p4..p7 wait at ask_size
        say(f"p{n}", "pizza")
    say("done", "pizza", "small", "2", "Main street 1")  # completed (the order service answers at once)
    clock.advance(600)
    return rt, clock


def run(store: Store, query: str, now: int, **kw: Any) -> list[dict[str, Any]]:
    return list(find_sessions(store, query, now_ms=now, **kw))


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["session_id"] for r in rows)


def calls(store: Store, command: str) -> int:
    return int(store.client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_every_name_a_query_reads(store: Store, sessions: tuple[Runtime, Clock]) -> None:
    _, clock = sessions
    now = clock()
    assert ids(run(store, "step == 'ask_address'", now)) == ["p0", "p1", "p2", "p3"]
    assert ids(run(store, "status == 'completed'", now)) == ["done"]
    assert ids(run(store, "flow == 'order_pizza' and version == 1", now)) == ["p4", "p5", "p6", "p7"]
    assert ids(run(store, "slots.qty >= 3", now)) == ["p2", "p3"]
    assert ids(run(store, "slots.size == 'large' and slots.drink", now)) == ["p0", "p1", "p2", "p3"]
    assert ids(run(store, "flow_version == '3' and status == 'completed'", now)) == ["done"]
    # p0 answered 4 hours (minus the last 10 minutes) before now; p3 just over 10 minutes
    assert ids(run(store, "idle > 2 * hours", now)) == ["p0", "p1", "p2"]
    assert ids(run(store, "step == 'ask_address' and idle < 90 * minutes", now)) == ["p3"]
    assert ids(run(store, "updated_at < " + str(T0 + 3600_000), now)) == ["p0"]
    row = run(store, "slots.qty == 1", now)[0]
    assert row == {"session_id": "p0", "flow": "order_pizza", "flow_version": "3", "step": "ask_address",
                   "status": "waiting_input", "version": 4, "updated_at": "2026-10-01T00:00:00.000Z",
                   "idle_s": 4 * 3600 + 600.0}


def test_live_queries_read_the_active_index_not_every_session(store: Store, sessions: tuple[Runtime, Clock]) -> None:
    _, clock = sessions
    q = compile_query("status in ['waiting_input', 'waiting_service'] and idle > 4 * hours")
    assert q.live_only and q.idle_over_s == 4 * 3600 and q.plan == "active index, idle > 14400s"
    scans, hmgets = calls(store, "scan"), calls(store, "hmget")
    stats = FindStats()
    assert ids(list(find_sessions(store, q, now_ms=clock(), stats=stats))) == ["p0"]
    assert calls(store, "scan") == scans, "no SCAN for a live-status query"
    assert calls(store, "hmget") - hmgets == 1 == stats.candidates, "only the sessions idle long enough are read"
    # a query that can match ended sessions must scan
    assert not compile_query("status != 'completed'").live_only
    assert not compile_query("status == 'waiting_input' or idle > 5").live_only
    scans = calls(store, "scan")
    assert ids(run(store, "status == 'completed' and idle > 5 * minutes", clock())) == ["done"]
    assert calls(store, "scan") > scans


def test_bad_queries_and_evaluation_errors_are_reported(store: Store, sessions: tuple[Runtime, Clock]) -> None:
    _, clock = sessions
    with pytest.raises(QueryError, match=r"unknown name\(s\) 'stauts'.*did you mean 'status'"):
        compile_query("stauts == 'x'")
    with pytest.raises(QueryError, match="cannot parse the query"):
        compile_query("step ==")
    stats = FindStats()
    # unset slots read as None: a comparison with a number cannot be evaluated on p4..p7
    assert ids(run(store, "slots.qty + 1 > 2", clock(), stats=stats)) == ["done", "p1", "p2", "p3"]
    assert stats.errors == 4 and stats.first_error is not None and "'+' needs a number but got no value" in stats.first_error
    assert len(run(store, "flow == 'order_pizza'", clock(), limit=3)) == 3


def test_bulk_fail_expire_rollback_record_an_admin_commit_each(store: Store, sessions: tuple[Runtime, Clock]) -> None:
    rt, clock = sessions
    q = "step == 'ask_address' and idle > 3 * hours"
    found = ids(run(store, q, clock()))
    dry = bulk(rt, "fail", found, query=q, dry_run=True)
    assert [o.result for o in dry.outcomes] == ["would", "would"] and store.load("p0")["status"] == "waiting_input"
    report = bulk(rt, "fail", found, query=q, reason="address service was down")
    assert [(o.session_id, o.result) for o in report.outcomes] == [("p0", "done"), ("p1", "done")]
    last = store.history("p0")[-1]
    assert (last["actor"], last["status"]) == ("admin", "failed")
    # a session that moved on between the search and its turn is judged again, and left alone
    rt.handle("p2", UserMessage(text="Main street 2", message_id="p2.moved"))
    report = bulk(rt, "expire", ["p2", "p3"], query="step == 'ask_address'", reason="campaign over")
    assert [(o.session_id, o.result) for o in report.outcomes] == [("p2", "skipped"), ("p3", "done")]
    assert store.history("p3")[-1]["error"] == "campaign over" and store.load("p3")["status"] == "expired"
    # rollback: one version back by default, or to a version
    before = store.load("p4")["version"]
    rt.handle("p4", UserMessage(text="medium", message_id="p4.m"))
    report = bulk(rt, "rollback", ["p4"], query="flow == 'order_pizza'")
    assert report.outcomes[0].result == "done" and store.load("p4")["step"] == "ask_size"
    assert store.load("p4")["version"] == before + 2
    assert bulk(rt, "rollback", ["p5"], query="flow == 'order_pizza'").outcomes[0].result == "skipped"


def test_bulk_migrate_moves_the_sessions_found(store: Store, sessions: tuple[Runtime, Clock]) -> None:
    rt, _ = sessions
    from flowkit.flow import parse_flow
    from tests.runtime.conftest import ROOT

    text = (ROOT / "examples" / "flows" / "order_pizza.yaml").read_text().replace('version: "3"', 'version: "4"')

    rt.registry.register(parse_flow(text, "order_pizza_v4.yaml"))
    report = bulk(rt, "migrate", ["p4", "p5", "done"], query="flow == 'order_pizza'", to_version="4")
    assert [(o.session_id, o.result) for o in report.outcomes] == [("p4", "done"), ("p5", "done"), ("done", "skipped")]
    assert store.load("p4")["flow_version"] == "4" and store.history("p4")[-1]["event"] == "migrate"


def test_cli_find_and_bulk(redis_url: str, store: Store, sessions: tuple[Runtime, Clock]) -> None:
    r = runner.invoke(app, ["session", "find", "step == 'ask_size'", "--redis", redis_url, "-f", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert sorted(x["session_id"] for x in rows) == ["p4", "p5", "p6", "p7"]
    assert set(rows[0]) >= {"session_id", "flow", "flow_version", "step", "status", "updated_at"}
    r = runner.invoke(app, ["session", "find", "step == 'nowhere'", "--redis", redis_url, "-f", "csv"])
    assert r.exit_code == 1 and r.output.startswith("session_id,flow,flow_version,step,status")
    assert runner.invoke(app, ["session", "find", "stp == 1", "--redis", redis_url]).exit_code == 2
    # no terminal to confirm on: refused without --yes, nothing changed
    r = runner.invoke(app, ["session", "bulk", "expire", "step == 'ask_size'", "--redis", redis_url])
    assert r.exit_code == 2 and "confirm with --yes" in r.output and store.load("p4")["status"] == "waiting_input"
    r = runner.invoke(app, ["session", "bulk", "expire", "step == 'ask_size'", "--redis", redis_url, "--dry-run"])
    assert r.exit_code == 0 and "would change 4 of 4" in r.output and store.load("p4")["status"] == "waiting_input"
    r = runner.invoke(app, ["session", "bulk", "expire", "step == 'ask_size'", "--redis", redis_url, "--yes",
                            "-f", "json", "--reason", "stale"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert (data["done"], data["sessions"]) == (4, 4) and store.load("p7")["status"] == "expired"


def test_idle_ranges_page_by_score_through_ties(store: Store) -> None:
    from flowkit.store import keys as K
    from flowkit.store.find import _idle_range

    members = {f"s{i:02d}": 1000 + (i // 10) for i in range(25)}  # scores 1000, 1001, 1002 with ten-way ties
    store.client.zadd(K.IDX_ACTIVE, members)
    pages = list(_idle_range(store.client, 1001, 4))
    got = [m for p in pages for m in p]
    assert sorted(got) == sorted(m for m, sc in members.items() if sc <= 1001) and len(got) == len(set(got)) == 20
    assert [members[m] for m in got] == sorted(members[m] for m in got)  # oldest first
