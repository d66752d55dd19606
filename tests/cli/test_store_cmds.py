"""`flowkit redis …`, `flowkit session …`, `backup`, `restore` and `reconcile` end to end on a
real Redis: text and ``--format json`` output, exit codes 0 (ok), 1 (findings / not
reachable), 2 (bad input), progress bars kept off stdout, and the embedded server started,
inspected and stopped by separate processes under ``$FLOWKIT_DATA_DIR``."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.engine import UserMessage
from flowkit.errors import FlowkitError
from flowkit.metrics.redis import shard_key, totals
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store, connect, stop_embedded
from flowkit.store import keys as K
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES
from tests.store.conftest import advance

runner = CliRunner()
FLOWKIT = str(Path(sys.executable).parent / "flowkit")
PIZZA = ["pizza", "large", "yes"]  # v1 ask_size, v2 upsell, v3 ask_qty


@pytest.fixture
def env(redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Commands find the (flushed) test Redis through $FLOWKIT_REDIS_URL."""
    monkeypatch.setenv("FLOWKIT_REDIS_URL", redis_url)
    return redis_url


@pytest.fixture
def runtime(store: Store, clock: Any) -> Runtime:
    return Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES, clock=clock)


@pytest.fixture
def u1(env: str, runtime: Runtime) -> str:
    """Session u1 of order_pizza at version 3 (step ask_qty, slots size=large, drink=true)."""
    for i, text in enumerate(PIZZA):
        assert runtime.handle("u1", UserMessage(text=text, message_id=f"m{i}")).status == "applied"
    return "u1"


def run(*args: str, code: int) -> Any:
    r = runner.invoke(app, list(args))
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
    if code != 0 and r.exception is not None:
        assert isinstance(r.exception, SystemExit), f"traceback instead of a message: {r.exception!r}"
    return r


def bad_input(*args: str, message: str) -> None:
    """Exit 2, nothing on stdout, one clean `error:` line on stderr (no traceback)."""
    r = run(*args, code=2)
    assert r.stdout == ""
    err = r.stderr.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err


def sh(*args: str, env: dict[str, str] | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([FLOWKIT, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    return p


# ---------------------------------------------------------------- flowkit session …


def test_session_show_current_and_past_versions(u1: str, store: Store) -> None:
    data = json.loads(run("session", "show", u1, "--format", "json", code=0).stdout)
    assert data == store.load(u1)
    assert (data["version"], data["step"], data["slots"]) == (3, "ask_qty", {"size": "large", "drink": True})
    v2 = json.loads(run("session", "show", u1, "--version", "2", "-f", "json", code=0).stdout)
    assert v2 == store.state_at(u1, 2)
    assert (v2["version"], v2["step"], v2["slots"]) == (2, "upsell", {"size": "large"})
    text = run("session", "show", u1, code=0).stdout
    assert "session u1 v3" in text and "ask_qty" in text and '"size": "large"' in text
    assert "2026-09-21T14:13:20.000Z" in text  # started_at/updated_at shown as ISO-8601 UTC, not epoch ms
    assert "session u1 v1" in run("session", "show", u1, "-v", "1", code=0).stdout


def test_session_show_bad_input_exits_2(u1: str) -> None:
    bad_input("session", "show", "nobody", message="no session 'nobody'")
    bad_input("session", "show", "nobody", "--version", "1", message="no session 'nobody'")
    for v in ("0", "4", "99"):
        bad_input("session", "show", u1, "--version", v, message=f"has versions 1..3, not {v}")
    assert run("session", "show", u1, "--version", "two", code=2).stdout == ""  # usage error


def test_session_history(u1: str, store: Store) -> None:
    records = json.loads(run("session", "history", u1, "-f", "json", code=0).stdout)
    assert records == store.history(u1)
    assert [(r["version"], r["event"], r["from_step"], r["to_step"], r["message_id"]) for r in records] == [
        (1, "start", None, "ask_size", "m0"), (2, "message", "ask_size", "upsell", "m1"),
        (3, "message", "upsell", "ask_qty", "m2")]
    part = json.loads(run("session", "history", u1, "--start", "2", "--end", "3", "-f", "json", code=0).stdout)
    assert [r["version"] for r in part] == [2, 3]
    one = json.loads(run("session", "history", u1, "--limit", "1", "-f", "json", code=0).stdout)
    assert [r["version"] for r in one] == [1]
    text = run("session", "history", u1, code=0).stdout
    assert "session u1: 3 records" in text and "start" in text and "runtime" in text
    # an existing session with no record in the range is an empty answer, not an error
    assert json.loads(run("session", "history", u1, "--start", "9", "-f", "json", code=0).stdout) == []


def test_session_history_of_unknown_session_exits_2(env: str) -> None:
    bad_input("session", "history", "nobody", message="no session 'nobody'")
    bad_input("session", "history", "nobody", "-f", "json", message="no session 'nobody'")


def test_an_empty_session_id_is_a_usage_error(env: str) -> None:
    # (it used to end in a ValueError traceback from the key builder)
    for command in ("show", "history", "transcript"):
        bad_input("session", command, "", message="session id")


def test_session_diff(u1: str) -> None:
    d = json.loads(run("session", "diff", u1, "1", "3", "-f", "json", code=0).stdout)
    assert (d["from_version"], d["to_version"]) == (1, 3)
    changes = {".".join(c["path"]): c for c in d["changes"]}
    assert changes["slots.size"] == {"path": ["slots", "size"], "op": "added", "to": "large"}
    assert changes["step"] == {"path": ["step"], "op": "changed", "from": "ask_size", "to": "ask_qty"}
    assert [e["version"] for e in d["events"]] == [2, 3]
    text = run("session", "diff", u1, "1", "3", code=0).stdout.splitlines()
    assert text[0] == f"session u1: v1 → v3, {len(d['changes'])} change(s), 2 commit(s) between"
    assert '+ slots.size = "large"' in text and '~ step: "ask_size" → "ask_qty"' in text
    back = run("session", "diff", u1, "3", "1", code=0).stdout.splitlines()
    assert '- slots.size (was "large")' in back
    same = json.loads(run("session", "diff", u1, "2", "2", "-f", "json", code=0).stdout)
    assert same["changes"] == [] and same["events"] == []


def test_session_diff_bad_input_exits_2(u1: str) -> None:
    bad_input("session", "diff", u1, "1", "99", message="not 99")
    bad_input("session", "diff", u1, "0", "2", message="not 0")
    bad_input("session", "diff", "nobody", "1", "2", message="no session 'nobody'")


def test_session_rollback_writes_a_new_version(u1: str, store: Store) -> None:
    v1 = store.state_at(u1, 1)
    r = run("session", "rollback", u1, "1", code=0)
    assert r.stdout.strip() == "session u1: version 4 now equals version 1"
    now = store.load(u1)
    assert now["version"] == 4
    assert {k: v for k, v in now.items() if k not in ("version", "updated_at")} == \
        {k: v for k, v in v1.items() if k not in ("version", "updated_at")}
    last = store.history(u1)[-1]
    assert (last["version"], last["event"], last["actor"]) == (4, "rollback", "admin")
    assert [h["version"] for h in store.history(u1)] == [1, 2, 3, 4]  # history kept, not rewritten
    out = json.loads(run("session", "rollback", u1, "3", "--actor", "simulator", "-f", "json", code=0).stdout)
    assert out == {"session_id": "u1", "rolled_back_to": 3, "outcome": "ok", "version": 5}
    assert store.load(u1)["step"] == "ask_qty" and store.history(u1)[-1]["actor"] == "simulator"


def test_session_rollback_bad_input_exits_2_and_changes_nothing(u1: str, store: Store) -> None:
    before = store.load(u1)
    bad_input("session", "rollback", u1, "99", message="not 99")
    bad_input("session", "rollback", u1, "0", message="not 0")
    bad_input("session", "rollback", u1, "3", message="at version 3 already")
    bad_input("session", "rollback", "nobody", "1", message="no session 'nobody'")
    bad_input("session", "rollback", u1, "1", "--actor", "ops:ana", message="unknown actor 'ops:ana'")
    assert store.load(u1) == before and len(store.history(u1)) == 3


def test_unreachable_redis_is_a_clean_exit_2(env: str) -> None:
    bad_input("session", "show", "u1", "--redis", "redis://127.0.0.1:1/0", message="Redis is unavailable")


# ---------------------------------------------------------------- backup / restore


@pytest.fixture
def many(u1: str, store: Store) -> dict[str, Any]:
    """u1 plus 250 engine-free sessions (more than one backup batch of 200)."""
    for j in range(250):
        advance(store, f"s{j:03d}", None, "ask_size")
    return {sid: (store.load(sid), store.history(sid)) for sid in [u1, *(f"s{j:03d}" for j in range(250))]}


def test_backup_then_restore_into_an_empty_redis(many: dict[str, Any], store: Store, redis_client: Any,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    rep = json.loads(run("backup", str(out), "-f", "json", code=0).stdout)
    assert rep == {"path": str(out), "sessions": 251, "resumed_from": 0, "skipped": []}
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "flowkit-backup"
    trailer = json.loads(lines[-1])
    assert trailer.keys() == {"end", "sessions", "lines", "sum"} and trailer["sessions"] == 251
    assert not out.with_name("b.jsonl.partial").exists()
    redis_client.flushall()
    rep = json.loads(run("restore", str(out), "-f", "json", code=0).stdout)
    assert rep == {"path": str(out), "sessions": 251, "restored": 251, "skipped_newer": 0}
    assert {sid: (store.load(sid), store.history(sid)) for sid in many} == many
    assert run("reconcile", "--check", code=0).stdout.startswith("251 sessions scanned; would fix 0")
    assert store.active_count() == 251  # derived indexes written by the restore itself
    # restoring again never goes back in time: everything is already there
    text = run("restore", str(out), code=0).stdout
    assert text.strip() == "0 sessions restored, 251 left alone (Redis had them at the same or a newer version)"


def test_restore_never_replaces_a_newer_version(u1: str, store: Store, runtime: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    run("backup", str(out), code=0)
    assert runtime.handle("u1", UserMessage(text="2", message_id="m3")).status == "applied"
    newer = store.load(u1)
    rep = json.loads(run("restore", str(out), "-f", "json", code=0).stdout)
    assert (rep["restored"], rep["skipped_newer"]) == (0, 1)
    assert store.load(u1) == newer


def test_backup_resumes_an_interrupted_run(many: dict[str, Any], tmp_path: Path) -> None:
    full = tmp_path / "full.jsonl"
    run("backup", str(full), code=0)
    head = full.read_text().splitlines(keepends=True)[:101]  # header + 100 sessions, no trailer
    out = tmp_path / "b.jsonl"
    out.with_name("b.jsonl.partial").write_text("".join(head) + '{"session_id": "torn')  # and a torn last line
    text = run("backup", str(out), code=0).stdout
    assert text.strip() == f"251 sessions written to {out} (continued after 100)"
    sids = [json.loads(x)["session_id"] for x in out.read_text().splitlines()[1:-1]]
    assert sorted(sids) == sorted(many) and len(sids) == 251
    out.with_name("b.jsonl.partial").write_text("".join(head))
    rep = json.loads(run("backup", str(out), "--no-resume", "-f", "json", code=0).stdout)
    assert (rep["sessions"], rep["resumed_from"]) == (251, 0)


def test_backup_to_an_unwritable_place_exits_2(u1: str, tmp_path: Path) -> None:
    bad_input("backup", str(tmp_path / "no" / "such" / "dir" / "b.jsonl"), message="cannot write the backup")


def test_restore_bad_files_exit_2_and_write_nothing(u1: str, store: Store, redis_client: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    run("backup", str(good), code=0)
    header, session, trailer = good.read_text().splitlines()
    redis_client.flushall()

    def f(name: str, text: str | bytes) -> str:
        p = tmp_path / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(p)

    tampered = json.loads(session)
    tampered["data"]["state"][tampered["data"]["state"].index("state") + 1] = \
        tampered["data"]["state"][tampered["data"]["state"].index("state") + 1].replace("large", "small")
    forged_count = trailer.replace('"sessions":1', '"sessions":2')
    future = header.replace('"version":2', '"version":3')
    cases = {
        str(tmp_path / "missing.jsonl"): "unreadable or incomplete",
        str(tmp_path): "unreadable or incomplete",  # a directory
        f("empty.jsonl", b""): "unreadable or incomplete",
        f("binary.jsonl", b"\xff\xfe\x00\x01garbage"): "unreadable or incomplete",
        f("truncated.jsonl", f"{header}\n{session}\n"): "no trailer: the backup is incomplete",
        f("not-backup.jsonl", f"hello\n{trailer}\n"): "is not a flowkit backup",
        f("list-header.jsonl", f"[1, 2]\n{trailer}\n"): "is not a flowkit backup",
        f("list-line.jsonl", f"{header}\n[1, 2]\n{trailer}\n"): "line 2 is not a session record",
        f("torn-line.jsonl", f"{header}\n{session[:80]}\n{trailer}\n"): "line 2 is not JSON",
        f("tampered.jsonl", f"{header}\n{json.dumps(tampered)}\n{trailer}\n"): "line 2 (session 'u1'): checksum mismatch",
        f("count.jsonl", f"{header}\n{session}\n{json.dumps(resummed(trailer, sessions=2))}\n"):
            "the trailer says 2 sessions",
        f("no-trailer-sum.jsonl", f"{header}\n{session}\n" + '{"end": true, "sessions": 1}\n'):
            "the trailer has no checksum",
        f("trailer-sum.jsonl", f"{header}\n{session}\n{forged_count}\n"):
            "the trailer fails its checksum",
        f("trailer-lines.jsonl", f"{header}\n{session}\n{json.dumps(resummed(trailer, lines='0' * 32))}\n"):
            "do not match the trailer's digest",
        f("future.jsonl", f"{future}\n{session}\n{trailer}\n"):
            "format version 3",
    }
    for path, message in cases.items():
        bad_input("restore", path, message=message)
        bad_input("restore", path, "-f", "json", message=message)
    assert store.load("u1") is None, "a failed restore wrote a session"
    assert json.loads(run("restore", str(good), "-f", "json", code=0).stdout)["restored"] == 1


def resummed(trailer: str, **changes: Any) -> dict[str, Any]:
    """The trailer with ``changes``, its own checksum recomputed (only the line digest can catch them)."""
    from flowkit.store.backup import _line_sum

    out = {**json.loads(trailer), **changes}
    out["sum"] = _line_sum(out)
    return out


def test_restore_verifies_the_whole_file_before_writing(many: dict[str, Any], redis_client: Any,
                                                       tmp_path: Path) -> None:
    """Damage in the second batch (line 240 of 251) must not leave the first 200 sessions restored."""
    out = tmp_path / "b.jsonl"
    run("backup", str(out), code=0)
    lines = out.read_text().splitlines(keepends=True)
    # a session line of the second batch (sessions come in SCAN order, which changes with
    # every server: pick one whose record has a version 1 to tamper with)
    at = next(i for i in range(240, len(lines)) if '"version":1' in lines[i])
    lines[at] = lines[at].replace('"version":1', '"version":7', 1)
    out.write_text("".join(lines))
    redis_client.flushall()
    bad_input("restore", str(out), message=f"line {at + 1}")
    assert redis_client.dbsize() == 0


def test_progress_bars_stay_off_stdout(many: dict[str, Any], redis_url: str, tmp_path: Path) -> None:
    """Even on a (forced) terminal, stdout holds only the report: parseable JSON, one text line."""
    env = {"FLOWKIT_REDIS_URL": redis_url, "FORCE_COLOR": "1", "COLUMNS": "100"}
    out = tmp_path / "b.jsonl"
    p = sh("backup", str(out), "--format", "json", env=env)
    assert json.loads(p.stdout)["sessions"] == 251
    p = sh("backup", str(out), env=env)
    assert p.stdout == f"251 sessions written to {out}\n"
    assert "backup" in p.stderr  # the bar was drawn, on stderr
    p = sh("restore", str(out), env=env)
    assert p.stdout == "0 sessions restored, 251 left alone (Redis had them at the same or a newer version)\n"
    p = sh("restore", str(out), "-f", "json", env=env)
    assert json.loads(p.stdout)["skipped_newer"] == 251


# ---------------------------------------------------------------- reconcile


def test_reconcile_check_finds_drift_exit_1_then_reconcile_fixes_it(u1: str, store: Store, redis_client: Any,
                                                                    runtime: Runtime) -> None:
    assert runtime.handle("u2", UserMessage(text="pizza", message_id="u2m0")).status == "applied"
    # the outbox acknowledgements are deferred (sent within 0.1 s, later on a busy machine): send
    # them now, or --check may count an entry whose acknowledgement is still on its way
    runtime.drain()
    clean = json.loads(run("reconcile", "--check", "-f", "json", code=0).stdout)
    assert (clean["sessions"], clean["fixed"], clean["dry_run"]) == (2, 0, True)
    assert run("reconcile", "--check", code=0).stdout.strip() == "2 sessions scanned; would fix 0 index entries"
    live = store.active_count()
    assert live == 2
    redis_client.delete(K.IDX_ACTIVE)
    redis_client.zadd(K.IDX_TIMEOUTS, {"ghost": 1})
    redis_client.hset(K.counter_key("order_pizza"), "sessions", 99)

    for _ in range(2):  # --check changes nothing: still drift the second time
        drift = json.loads(run("reconcile", "--check", "-f", "json", code=1).stdout)
        assert drift["fixes"]["active"] == {"added": 2, "removed": 0, "changed": 0}
        assert drift["fixes"]["timeouts"]["removed"] == 1 and drift["fixes"]["counters"]["changed"] == 1
        assert (drift["fixed"], drift["dry_run"]) == (4, True)
    text = run("reconcile", "--check", code=1).stdout.splitlines()
    assert text[0] == "2 sessions scanned; would fix 4 index entries"
    assert "  active: added 2" in text and "  timeouts: removed 1" in text and "  counters: changed 1" in text
    assert store.active_count() == 0

    text = run("reconcile", code=0).stdout.splitlines()
    assert text[0] == "2 sessions scanned; fixed 4 index entries"
    assert store.active_count() == 2 and "ghost" not in store.due_timeouts(10**15)
    assert store.counters("order_pizza")["order_pizza"]["sessions"] == 2
    assert json.loads(run("reconcile", "--check", "-f", "json", code=0).stdout)["fixed"] == 0


def test_reconcile_metrics_rebuilds_counters_from_history(u1: str, redis_client: Any) -> None:
    redis_client.hset(shard_key(0, "total"), "messages_in", 999)
    # --check is a dry run: the metrics are not touched either
    out = json.loads(run("reconcile", "--check", "--metrics", "-f", "json", code=0).stdout)
    assert "metrics" not in out and totals(redis_client)["messages_in"] == 999
    out = json.loads(run("reconcile", "--metrics", "-f", "json", code=0).stdout)
    assert out["metrics"]["messages_in"] == 3 and out["metrics"]["sessions_started|order_pizza"] == 1
    assert totals(redis_client)["messages_in"] == 3
    redis_client.hset(shard_key(0, "total"), "messages_in", 999)
    text = run("reconcile", "--metrics", code=0).stdout.splitlines()
    assert text[0].startswith("metrics rebuilt from history: 3 messages in, ")
    assert text[1] == "1 sessions scanned; fixed 0 index entries"
    assert totals(redis_client)["messages_in"] == 3


# ---------------------------------------------------------------- flowkit redis …


def test_redis_status_of_a_given_redis(u1: str, redis_url: str) -> None:
    st = json.loads(run("redis", "status", "-f", "json", code=0).stdout)
    assert st["reachable"] is True and st["url"] == redis_url and st["aof_enabled"] is True
    assert st["redis_version"].count(".") == 2
    assert (st["active_sessions"], st["flows"], st["quarantined"]) == (1, {"order_pizza": 1}, 0)
    text = run("redis", "status", code=0).stdout.splitlines()
    assert "reachable: True" in text and 'flows: {"order_pizza": 1}' in text and "active_sessions: 1" in text


def test_redis_status_unreachable_exits_1_bad_url_exits_2(env: str) -> None:
    r = run("redis", "status", "--redis", "redis://127.0.0.1:1/0", "-f", "json", code=1)
    assert json.loads(r.stdout) == {"url": "redis://127.0.0.1:1/0", "reachable": False}
    assert r.stderr.startswith("error: ")
    assert "reachable: False" in run("redis", "status", "--redis", "redis://127.0.0.1:1/0", code=1).stdout
    bad_input("redis", "status", "--redis", "bogus://host", message="unsupported Redis URL scheme 'bogus'")


def test_redis_status_hides_the_password(env: str, redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://nobody:s3cret-pw@")
    r = run("redis", "status", "--redis", url, "-f", "json", code=1)  # the user does not exist: not reachable
    assert "s3cret-pw" not in r.stdout + r.stderr
    assert json.loads(r.stdout)["reachable"] is False


def test_redis_cli_runs_on_the_flowkit_redis(u1: str, redis_url: str, redis_client: Any) -> None:
    env = {"FLOWKIT_REDIS_URL": redis_url}
    assert sh("redis", "cli", "PING", env=env).stdout.strip() == "PONG"
    assert sh("redis", "cli", "HGET", K.session_keys("u1").state, "step", env=env).stdout.strip() == "ask_qty"
    assert sh("redis", "cli", "--redis", redis_url, "HGET", K.session_keys("u1").state, "version").stdout.strip() == "3"
    redis_client.acl_setuser("cliuser", enabled=True, passwords=["+s3cret-pw"], commands=["+@all"], keys=["*"])
    try:
        user_url = redis_url.replace("redis://", "redis://cliuser:s3cret-pw@")
        p = sh("redis", "cli", "--redis", user_url, "ACL", "WHOAMI")
        assert p.stdout.strip() == "cliuser" and "s3cret-pw" not in p.stdout + p.stderr
    finally:
        redis_client.acl_deluser("cliuser")
    # redis-cli's own exit code comes back (here: it cannot connect)
    assert sh("redis", "cli", "--redis", "redis://127.0.0.1:1/0", "PING", code=1).returncode == 1


def ping(url: str) -> bool:
    try:
        with contextlib.closing(connect(url)) as c:
            return bool(c.ping())
    except (FlowkitError, redis.RedisError):
        return False


def test_embedded_redis_start_status_stop_across_processes(tmp_path: Path) -> None:
    """`flowkit redis start` leaves a server running under $FLOWKIT_DATA_DIR after it exits;
    other processes find it (status, session commands), `stop` ends it, and its AOF keeps the data."""
    data = tmp_path / "data"
    env = {"FLOWKIT_DATA_DIR": str(data), "FLOWKIT_REDIS_URL": ""}
    try:
        p = sh("redis", "status", "-f", "json", env=env, code=1)
        st = json.loads(p.stdout)
        assert st["reachable"] is False and st["embedded"]["running"] is False
        assert st["embedded"]["data_dir"] == str(data.resolve() / "redis")

        started = json.loads(sh("redis", "start", "-f", "json", env=env).stdout)
        assert started["running"] is True and started["persistent"] is True
        # the embedded server has a password (made at first start, kept 0600 in the data dir); never shown
        assert started["data_dir"] == str(data.resolve() / "redis") and started["url"].startswith("redis://:***@127.0.0.1:")
        password = (data / "redis" / "password").read_text().strip()
        assert len(password) >= 32 and stat.S_IMODE((data / "redis" / "password").stat().st_mode) == 0o600
        real_url = started["url"].replace("***", password)
        pid = started["pid"]
        assert ping(real_url)  # alive after the starting process exited
        assert not ping(started["url"].replace(":***@", ""))  # and refuses clients without the password

        st = json.loads(sh("redis", "status", "-f", "json", env=env).stdout)
        assert st["reachable"] is True and st["url"] == started["url"] and st["aof_enabled"] is True
        assert st["embedded"]["pid"] == pid
        text = sh("redis", "status", "--data-dir", str(data), env={"FLOWKIT_REDIS_URL": ""}).stdout
        assert f"url: {started['url']}" in text and "reachable: True" in text

        again = sh("redis", "start", env=env).stdout  # idempotent: the same server
        assert again.strip() == f"redis-server running at {started['url']} (pid {pid}, data in {data.resolve() / 'redis'})"

        client = connect(real_url)
        advance(Store(client), "e1", None, "ask_size")
        client.close()
        shown = json.loads(sh("session", "show", "e1", "-f", "json", env=env).stdout)  # no URL: the embedded one
        assert shown["version"] == 1

        assert sh("redis", "stop", env=env).stdout.strip() == "stopped"
        assert not ping(real_url)
        st = json.loads(sh("redis", "status", "-f", "json", env=env, code=1).stdout)
        assert st["reachable"] is False and st["embedded"]["running"] is False
        assert json.loads(sh("redis", "stop", "-f", "json", env=env).stdout) == {"stopped": False}

        restarted = json.loads(sh("redis", "start", "-f", "json", env=env).stdout)
        assert restarted["pid"] != pid
        shown = json.loads(sh("session", "show", "e1", "-f", "json", env=env).stdout)  # the AOF kept it
        assert (shown["session_id"], shown["version"]) == ("e1", 1)
        assert json.loads(sh("redis", "stop", "-f", "json", env=env).stdout) == {"stopped": True}
    finally:
        stop_embedded(data)
