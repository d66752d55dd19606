"""Duplicate deliveries never leave a stale outbox index entry.

A duplicate's commit writes its index entries optimistically and undoes them after the script
said "duplicate". The acknowledgement of the original delivery is deferred: it rides in front
of the next round trip, which can be that undo. The undo used to re-add the entry (with the
time the script had seen) right after the acknowledgement removed it, and ``reconcile
--check`` then found an outbox entry without effects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.store import Store, ops
from flowkit.store import keys as K
from tests.runtime.conftest import ROOT
from tests.store.conftest import make_record, make_state

runner = CliRunner()
FLOWS = str(ROOT / "examples" / "flows")
EFFECTS = [{"type": "send_text", "text": "hi"}]


def _commit_v1(store: Store, mid: str) -> tuple[Any, dict[str, Any]]:
    """The generator of commit v1 (message ``mid``, with effects) and the arguments it was built from."""
    state = make_state("u1", 1)
    rec = make_record(state, None, event="start", message_id=mid)
    return ops.commit(store.config, "u1", 0, state, rec, message_id=mid, effects=EFFECTS), state


def test_ack_riding_on_a_duplicates_undo_is_not_undone(store: Store, redis_client: Any) -> None:
    first, _ = _commit_v1(store, "m1")
    assert store.driver.run(first).outcome == "ok"
    assert redis_client.zscore(K.IDX_OUTBOX, "u1#1") is not None

    # The duplicate delivery of m1: its first round trip (script + optimistic index writes) ...
    dup, _ = _commit_v1(store, "m1")
    replies = store.driver.execute(next(dup))
    # ... then the original's effects are sent and acknowledged (deferred, as the runtime does) ...
    store.ack_effects("u1", 1, defer=True)
    # ... and that acknowledgement rides in front of the duplicate's undo batch.
    try:
        undo = dup.send(replies)
        dup.send(store.driver.execute(undo))
    except StopIteration as stop:
        assert stop.value.outcome == "duplicate"
    store.flush()

    assert store.pending_effects("u1") == {}
    assert redis_client.zscore(K.IDX_OUTBOX, "u1#1") is None
    assert store.reconcile(dry_run=True).fixed == 0


def test_a_duplicate_keeps_the_original_entry_and_its_time(redis_client: Any, clock: Any) -> None:
    store = Store(redis_client, now_ms=clock)
    first, _ = _commit_v1(store, "m1")
    assert store.driver.run(first).outcome == "ok"
    at = redis_client.zscore(K.IDX_OUTBOX, "u1#1")
    clock.advance(5)
    dup, _ = _commit_v1(store, "m1")
    assert store.driver.run(dup).outcome == "duplicate"
    assert redis_client.zscore(K.IDX_OUTBOX, "u1#1") == at  # not moved to the duplicate's time
    assert store.reconcile(dry_run=True).fixed == 0


def test_simulation_with_duplicates_leaves_no_index_drift(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    for seed in ("1", "2"):
        redis_client.flushall()
        r = runner.invoke(app, ["simulate", FLOWS, "--redis", redis_url, "--users", "100", "--seed", seed,
                                "--duplicate-rate", "0.1", "--format", "json"])
        assert r.exit_code == 0, r.output
        check = runner.invoke(app, ["reconcile", "--check", "--redis", redis_url])
        assert check.exit_code == 0, (seed, check.output)
        assert "would fix 0 index entries" in check.output
