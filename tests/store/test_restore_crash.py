"""`flowkit restore` killed (SIGKILL) part-way and run again leaves nothing behind.

A restore used to write a batch of sessions in one round trip and their index entries in a
second; killed in between, and run again (which skips sessions already at the backup's
version), the sessions stayed missing from the active and timeouts indexes: their timeouts
never fired until someone ran `reconcile`. Now each session is written with its index
entries and counters by one script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flowkit.store import Store, backup
from flowkit.store import keys as K
from tests.store.test_backup import populate

FLOWKIT = str(Path(sys.executable).parent / "flowkit")
SESSIONS = 3000


def _restore_killed_at(src: Path, redis_url: str, client: Any, keys_at_least: int) -> bool:
    """Start `flowkit restore`, SIGKILL it once Redis holds ``keys_at_least`` keys; True if it
    was killed before it finished (False: it completed first)."""
    proc = subprocess.Popen([FLOWKIT, "restore", str(src), "--batch", "500", "--format", "json"],
                            env={**os.environ, "FLOWKIT_REDIS_URL": redis_url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and client.dbsize() < keys_at_least:
            assert time.monotonic() < deadline, "the restore made no progress"
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_restore_run_again_leaves_indexes_and_counters_whole(store: Store, redis_url: str,
                                                                      tmp_path: Path) -> None:
    populate(store, SESSIONS)
    expected_timeouts = {m: int(sc) for m, sc in store.client.zrange(K.IDX_TIMEOUTS, 0, -1, withscores=True)}
    expected_counters = store.counters()
    out = tmp_path / "b.jsonl"
    backup(store, out)
    client = store.client
    client.flushall()
    killed = []
    for fraction in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85):
        # about 4 keys a session (state, hist, seen, some fx) plus the indexes
        killed.append(_restore_killed_at(out, redis_url, client, int(SESSIONS * 4 * fraction)))
    assert killed[0], "the first run finished before it could be killed: use more sessions"
    done = subprocess.run([FLOWKIT, "restore", str(out), "--format", "json"], capture_output=True, text=True,
                          env={**os.environ, "FLOWKIT_REDIS_URL": redis_url}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    check = subprocess.run([FLOWKIT, "reconcile", "--check", "--redis", redis_url], capture_output=True, text=True,
                           timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith(f"{SESSIONS} sessions scanned; would fix 0")
    timeouts = {m: int(sc) for m, sc in client.zrange(K.IDX_TIMEOUTS, 0, -1, withscores=True)}
    assert timeouts == expected_timeouts  # every live session wakes up when it should
    assert store.counters() == expected_counters
