"""``reconcile`` on a live deployment: its reads are not one snapshot, so a write landing
between them looks like drift for a moment. Drift is looked at again after ``settle`` and only
what is still there, unchanged, is reported or fixed. Here the write "in flight" lands during
the settle (its sleep is replaced by the write), deterministically."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.store import Store
from flowkit.store import keys as K
from tests.store.conftest import advance, make_record, make_state

runner = CliRunner()
R = importlib.import_module("flowkit.store.reconcile")  # (the package exports a function of that name)


def landing(monkeypatch: pytest.MonkeyPatch, write: Any) -> list[float]:
    """``write`` happens while reconcile settles; the settle times asked for are returned."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        write()

    monkeypatch.setattr(R, "time", SimpleNamespace(sleep=sleep))
    return slept


def with_effects(store: Store, sid: str) -> None:
    st = make_state(sid, 1, "ask")
    res = store.commit(sid, 0, st, make_record(st, None, event="start"), effects=[{"kind": "reply", "text": "hi"}])
    assert res.ok


def test_an_acknowledgement_half_landed_is_not_drift(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with_effects(store, "u1")
    k = K.session_keys("u1")
    store.client.hdel(k.fx, 1)  # the acknowledgement's first command has run, its second not yet
    slept = landing(monkeypatch, lambda: store.client.zrem(K.IDX_OUTBOX, K.outbox_member("u1", 1)))
    report = store.reconcile(dry_run=True)
    assert slept == [0.5] and report.fixed == 0


def test_a_fresh_index_entry_is_not_removed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    advance(store, "u1", None, "welcome")
    # the first pass reads the sessions before u2 exists and the index after its commit wrote it
    store.client.zadd(K.IDX_ACTIVE, {"u2": 1})
    landing(monkeypatch, lambda: advance(store, "u2", None, "welcome"))
    report = store.reconcile()
    assert report.fixed == 0
    assert store.client.zscore(K.IDX_ACTIVE, "u2") is not None  # the live session keeps its entry


def test_drift_still_there_after_the_settle_is_fixed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    advance(store, "u1", None, "welcome")
    store.client.zrem(K.IDX_ACTIVE, "u1")
    store.client.hincrby(K.counter_key("order_pizza"), "step:welcome", 5)
    slept = landing(monkeypatch, lambda: None)
    report = store.reconcile()
    assert slept == [0.5]
    assert report.fixes["active"]["added"] == 1 and report.fixes["counters"]["changed"] == 1
    assert store.client.zscore(K.IDX_ACTIVE, "u1") is not None
    assert store.reconcile(settle=0).fixed == 0


def test_drift_that_changes_between_the_passes_waits_for_the_next_run(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    advance(store, "u1", None, "welcome")
    key = K.counter_key("order_pizza")
    store.client.hincrby(key, "step:welcome", 5)
    landing(monkeypatch, lambda: store.client.hincrby(key, "step:welcome", 1))  # still moving
    assert store.reconcile().fixed == 0
    monkeypatch.undo()
    assert store.reconcile(settle=0).fixes["counters"]["changed"] == 1
    assert store.counters()["order_pizza"]["step"]["welcome"] == 1


def test_a_clean_store_is_read_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    advance(store, "u1", None, "welcome")
    slept = landing(monkeypatch, lambda: None)
    assert store.reconcile().fixed == 0 and slept == []


def test_check_with_a_write_in_flight_exits_0(store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with_effects(store, "u1")
    store.client.hdel(K.session_keys("u1").fx, 1)
    landing(monkeypatch, lambda: store.client.zrem(K.IDX_OUTBOX, K.outbox_member("u1", 1)))
    r = runner.invoke(app, ["reconcile", "--redis", redis_url, "--check"])
    assert r.exit_code == 0, r.output
    store.client.zadd(K.IDX_OUTBOX, {"ghost#1": 1})  # real drift: found twice
    r = runner.invoke(app, ["reconcile", "--redis", redis_url, "--check", "--settle", "0.05"])
    assert r.exit_code == 1 and "would fix 1" in r.stdout, r.output
