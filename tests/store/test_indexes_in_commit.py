"""Issue #17: on a single Redis server the commit script (and timeout.lua) write the derived
indexes and counters themselves, so a commit is one command with nothing beside it: a kill -9
at any point leaves the indexes either untouched or right, never stale. A cluster keeps the
optimistic writes beside the script (tests/store/test_cluster.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

from flowkit.store import Store
from flowkit.store import keys as K
from tests.store.conftest import CountingConnection, advance, make_record, make_state


def _clean(store: Store) -> None:
    report = store.reconcile(dry_run=True)
    assert report.fixed == 0, report


def test_every_outcome_is_one_command_and_leaves_the_indexes_right(store: Store, counting_client: Any) -> None:
    counted = Store(counting_client)
    assert counted.config.indexes_in_commit
    s1 = advance(counted, "u1", None, "welcome", message_id="m1")
    s2 = advance(counted, "u1", s1, "ask_size", message_id="m2")
    CountingConnection.commands = []
    stale = make_state("u1", 2, "ask_qty")
    assert counted.commit("u1", 1, stale, make_record(stale, "welcome"), previous=s1).outcome == "conflict"
    dup = make_state("u1", 3, "ask_qty")
    assert counted.commit("u1", 2, dup, make_record(dup, "ask_size"), previous=s2,
                          message_id="m2").outcome == "duplicate"
    assert CountingConnection.commands == ["EVALSHA", "EVALSHA"]  # no undo: nothing was written beside
    _clean(store)
    done = make_state("u1", 3, "done", status="completed")
    assert counted.commit("u1", 2, done, make_record(done, "ask_size"), previous=s2,
                          effects=[{"type": "send", "text": "bye"}]).ok
    assert store.client.zscore(K.IDX_ACTIVE, "u1") is None and store.client.zscore(K.IDX_TIMEOUTS, "u1") is None
    assert store.client.zscore(K.IDX_OUTBOX, K.outbox_member("u1", 3)) is not None
    _clean(store)
    assert counted.set_timeout("u1", 5) is False  # ended: no timeout, and the index says so
    CountingConnection.commands = []
    other = advance(counted, "u2", None, "welcome")
    assert counted.set_timeout("u2", other["updated_at"] + 5)
    assert counted.set_timeout("u2", None) is False
    assert CountingConnection.commands == ["EVALSHA"] * 3
    _clean(store)


def test_a_previous_that_is_not_the_stored_state_still_counts_right(store: Store) -> None:
    """The script counts from the stored state, not from the caller's ``previous``."""
    s1 = advance(store, "u1", None, "welcome")
    s2 = advance(store, "u1", s1, "ask_size")
    s3 = make_state("u1", 3, "ask_qty")
    assert store.commit("u1", 2, s3, make_record(s3, "ask_size"), previous=dict(s2, step="other")).ok
    s4 = make_state("u1", 4, "ask_address")
    assert store.commit("u1", 3, s4, make_record(s4, "ask_qty")).ok  # no previous at all
    _clean(store)
    assert store.counters("order_pizza")["order_pizza"]["step"] == {"ask_address": 1}


_KILLER = textwrap.dedent("""
    import sys
    from flowkit.store import Store, connect
    from tests.store.conftest import make_record, make_state
    store = Store(connect(sys.argv[1]))
    print("ready", flush=True)
    for n in range(10**9):
        sid = f"{sys.argv[2]}-{n}"
        s1 = make_state(sid, 1, "welcome")
        assert store.commit(sid, 0, s1, make_record(s1, None, event="start"), timeout_at_ms=s1["updated_at"] + 9).ok
        # a conflicting commit (a stale expected version): the path that used to undo its index writes
        s2 = make_state(sid, 1, "ask_size", status="completed")
        assert store.commit(sid, 0, s2, make_record(s2, None, event="start")).outcome == "conflict"
        s2 = make_state(sid, 2, "ask_size")
        assert store.commit(sid, 1, s2, make_record(s2, "welcome"), previous=s1, timeout_at_ms=s2["updated_at"] + 9).ok
        s3 = make_state(sid, 3, "done", status="completed")
        assert store.commit(sid, 2, s3, make_record(s3, "ask_size"), previous=s2).ok
""")


def test_a_kill_at_any_point_leaves_no_stale_entry(store: Store, redis_url: str) -> None:
    """A writer killed with SIGKILL mid-traffic (ok and conflicting commits): `reconcile`
    finds nothing to fix, without having been run first."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for i in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _KILLER, redis_url, f"w{i}"], stdout=subprocess.PIPE, cwd=root,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])})
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        before = store.client.dbsize()
        deadline = time.monotonic() + 30
        while store.client.dbsize() < before + 40:  # let it write some sessions, then kill it mid-flight
            assert time.monotonic() < deadline, "the writer wrote nothing"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert store.client.zcard(K.IDX_ACTIVE) > 0
    _clean(store)
