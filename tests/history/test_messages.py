"""The ``messages`` table of an export (flowkit/history/messages.py): the transcripts the
runtime wrote in a real Redis come back in every format, with statuses, trimmed like history."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flowkit.engine import UserMessage
from flowkit.errors import HistoryError
from flowkit.history.columns import read_meta
from flowkit.history.export import export_store
from flowkit.history.messages import MESSAGE_COLUMNS, read_messages
from flowkit.runtime import RecordingChannel, Runtime
from flowkit.store import Store, delivery
from tests.runtime.conftest import EXAMPLE_FLOWS, Clock


class WamidChannel(RecordingChannel):
    """The recording channel, answering with a wamid like Graph does (so statuses can name it)."""

    def send(self, session_id: str, reply: object) -> str:
        super().send(session_id, reply)  # type: ignore[arg-type]
        return f"wamid.out{len(self.sent)}"


def _conversation(store: Store) -> Runtime:
    rt = Runtime(store, EXAMPLE_FLOWS, channel=WamidChannel(), clock=Clock())
    rt.handle("u1", UserMessage(text="pizza", message_id="wamid.in1"))
    rt.handle("u1", UserMessage(text="small", message_id="wamid.in2"))
    rt.handle("u2", UserMessage(text="pizza", message_id="wamid.in3"))
    rt.drain()
    # WhatsApp's statuses for the first reply, as the webhook records them
    for status, ts in (("sent", 1_000), ("delivered", 2_000), ("read", 3_000)):
        store.defer(delivery.status_commands("u1", {"wamid": "wamid.out1", "status": status, "ts": ts}))
    store.defer(delivery.status_commands("u1", {"wamid": "wamid.out2", "status": "failed", "ts": 4_000,
                                                "error": "whatsapp:131026"}))
    store.flush()
    return rt


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_the_export_has_every_message_with_its_statuses(store: Store, tmp_path: Path, fmt: str) -> None:
    _conversation(store)
    meta = export_store(store, tmp_path / "out", fmt=fmt)  # type: ignore[arg-type]
    df = read_messages(tmp_path / "out")
    assert tuple(df.columns) == MESSAGE_COLUMNS
    assert meta["messages"]["rows"] == len(df) == len(store.transcript("u1")) + len(store.transcript("u2"))
    u1 = df[df.session_id == "u1"].reset_index(drop=True)
    assert u1.direction.tolist()[:3] == ["in", "out", "out"] and u1.actor.tolist()[:3] == ["user", "bot", "bot"]
    assert u1.wamid.tolist()[:4] == ["wamid.in1", "wamid.out1", "wamid.out2", "wamid.in2"]
    assert u1.text[0] == "pizza" and u1.version.tolist()[:4] == [1, 1, 1, 2]
    first = u1.iloc[1]
    assert first.status == "read" and first.status_ts == pd.Timestamp(3_000, unit="ms", tz="UTC")
    assert first.sent_ts == pd.Timestamp(1_000, unit="ms", tz="UTC") and pd.isna(first.failed_ts)
    assert u1.iloc[2].status == "failed" and u1.iloc[2].error == "whatsapp:131026"
    assert json.loads(u1.payload[2])["buttons"]  # the options the user was offered
    assert pd.isna(u1.iloc[3].status)  # an inbound message has no delivery status
    assert read_meta(tmp_path / "out")["messages_trimmed"] is False


def test_a_trimming_store_says_so_and_since_filters_messages(redis_client: object, tmp_path: Path) -> None:
    store = Store(redis_client, history_max_len=1)
    _conversation(store)
    meta = export_store(store, tmp_path / "out", fmt="jsonl", since=1_790_000_000_000)
    assert meta["messages_trimmed"] is True and meta["messages_at_cap"] == 1  # u1: 4 kept of 5
    df = read_messages(tmp_path / "out")
    assert len(df[df.session_id == "u1"]) == 4 and (df.ts >= pd.Timestamp(1_790_000_000_000, unit="ms", tz="UTC")).all()


def test_an_export_without_messages_is_explained(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text("")
    with pytest.raises(HistoryError, match="no messages table.*flowkit export"):
        read_messages(tmp_path)


def test_delivery_and_read_rates_per_flow_and_step(store: Store, tmp_path: Path) -> None:
    from flowkit.history.columns import read_history
    from flowkit.history.delivery import delivery_rates

    _conversation(store)
    export_store(store, tmp_path / "out")
    rates = delivery_rates(read_messages(tmp_path / "out"), read_history(tmp_path / "out"))
    first = rates[(rates.flow == "order_pizza") & (rates.step == "ask_size")].iloc[0]
    # u1 and u2 each got the welcome and "What size?": 4 sent; u1's first read, its second failed
    assert (first.sent, first.delivered, first.read, first.failed) == (4, 1, 1, 1)
    assert first.read_rate == 0.25 and first.failed_rate == 0.25
    assert rates.sent.sum() == (read_messages(tmp_path / "out").direction == "out").sum()


def test_flowkit_analytics_delivery(store: Store, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowkit.cli import app

    _conversation(store)
    export_store(store, tmp_path / "out")
    r = CliRunner().invoke(app, ["analytics", str(tmp_path / "out"), "-t", "delivery", "-f", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {"flow", "step", "sent", "delivered_rate", "read_rate"} <= set(rows[0])
    assert sum(row["sent"] for row in rows) == len(read_messages(tmp_path / "out").query("direction == 'out'"))
    r = CliRunner().invoke(app, ["analytics", str(tmp_path / "out"), "-t", "delivery", "--engine", "dask"])
    assert r.exit_code == 2 and "--engine pandas" in r.stderr
