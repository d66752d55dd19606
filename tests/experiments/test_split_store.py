"""The variant lives in the stored state, so the store's own tools keep it: time travel,
rollback (and the user continuing after it), backup and restore. Real Redis, real runtime."""

from __future__ import annotations

from pathlib import Path

from flowkit.engine import UserMessage
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store
from flowkit.store.backup import backup, restore
from tests.runtime.conftest import EXAMPLE_FLOWS, EXAMPLE_SERVICES

SID = "31655500001"


def talk(store: Store, texts: list[str]) -> Runtime:
    rt = Runtime(store, EXAMPLE_FLOWS, channel=RecordingChannel(), services=EXAMPLE_SERVICES)
    for i, text in enumerate(texts):
        rt.handle(SID, UserMessage(text=text, message_id=f"wamid.exp.{len(store.history(SID)) + i}"))
    return rt


def test_time_travel_rollback_backup_and_restore_keep_the_variant(store: Store, redis_client: object,
                                                                     tmp_path: Path) -> None:
    talk(store, ["feedback", "2"])
    state = store.load(SID)
    assert state is not None and state["step"] == "offer_call"
    variant = state["slots"]["experiments"]
    assert set(variant) == {"wording"} and variant["wording"] in ("short", "long")
    assert store.state_at(SID, 1)["slots"]["experiments"] == variant  # recorded at the start, in version 1

    store.rollback(SID, 1)
    rolled = store.load(SID)
    assert rolled is not None and rolled["slots"]["experiments"] == variant
    assert rolled["step"] == ("ask_long" if variant["wording"] == "long" else "ask_short")
    talk(store, ["10"])  # the user goes on from the rolled-back question
    done = store.load(SID)
    assert done is not None and done["status"] == "completed" and done["slots"]["experiments"] == variant

    assert backup(store, tmp_path / "b.jsonl").sessions == 1
    store.client.flushall()
    assert restore(store, tmp_path / "b.jsonl").restored == 1
    again = store.load(SID)
    assert again is not None and again["slots"]["experiments"] == variant and again["version"] == done["version"]
