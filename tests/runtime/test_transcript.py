"""Transcripts of both directions (flowkit/store/transcript.py, flowkit/runtime/transcript.py):
through the real web app, the background sender, the Graph API imitation over HTTP and a real Redis."""

from __future__ import annotations

import httpx

from flowkit.channels.whatsapp.payloads import message_payload, status_payload
from flowkit.engine import Reply, UserMessage
from flowkit.runtime import AsyncRuntime, Runtime
from flowkit.runtime.transcript import outbound_entry, reply_kind
from flowkit.store import Store
from flowkit.store import keys as K
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.conftest import EXAMPLE_FLOWS
from tests.runtime.test_sending import run, until
from tests.runtime.webutil import deliver, say

WA = "31600000101"


def test_both_directions_with_statuses_and_non_answers(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            assert (await say(client, WA, "pizza", message_id="wamid.in1")).status_code == 200
            await until(lambda: len(graph.to(WA)) == 2, "both replies")
            await rt.drain()
            first, second = graph.to(WA)
            for st in ("sent", "delivered", "read"):
                await deliver(client, status_payload(first.id, WA, st, timestamp=1_790_000_100))
            await deliver(client, status_payload(first.id, WA, "delivered", timestamp=1_790_000_100))  # redelivered
            await deliver(client, status_payload(second.id, WA, "failed", timestamp=1_790_000_200))
            reaction = message_payload(WA, "reaction", {"message_id": first.id, "emoji": "👍"}, message_id="wamid.r1")
            await deliver(client, reaction)
            await deliver(client, reaction)  # WhatsApp redelivers: still one reaction
            await rt.drain()

        run(redis_url, graph, scenario)
        sent = graph.to(WA)
        msgs = store.transcript(WA)
        assert [(m["dir"], m["kind"]) for m in msgs] == [("in", "text"), ("out", "text"), ("out", "interactive"),
                                                         ("in", "reaction")]
        inbound, out1, out2, react = msgs
        assert inbound["wamid"] == "wamid.in1" and inbound["text"] == "pizza" and inbound["actor"] == "user"
        assert inbound["version"] == store.history(WA)[0]["version"] == 1
        assert [m["wamid"] for m in (out1, out2)] == [s.id for s in sent]
        assert out1["text"] == sent[0].text and out2["text"] == sent[1].text
        assert out1["actor"] == out2["actor"] == "bot" and out1["version"] == out2["version"] == 1
        assert (out1["index"], out2["index"]) == (0, 1)
        graph_buttons = sent[1].payload["interactive"]["action"]["buttons"]
        assert [b[0] for b in out2["payload"]["buttons"]] == [b["reply"]["id"] for b in graph_buttons]  # its options
        assert [s["status"] for s in out1["statuses"]] == ["sent", "delivered", "read"]
        assert out1["status"] == "read" and out1["status_ts"] == 1_790_000_100_000 and out1["error"] is None
        assert out2["status"] == "failed" and out2["error"] == "whatsapp:131026"
        assert react["text"] == "👍" and react["payload"]["refers_to"] == sent[0].id and react["version"] is None


def test_an_unrouted_message_and_its_help_text_are_in_the_transcript(redis_url: str, store: Store) -> None:
    with FakeGraphAPI() as graph:
        async def scenario(client: httpx.AsyncClient, rt: AsyncRuntime) -> None:
            await say(client, WA + "2", "hello?", message_id="wamid.hello")
            await until(lambda: len(graph.to(WA + "2")) == 1, "the help text")
            await rt.drain()

        run(redis_url, graph, scenario)
        msgs = store.transcript(WA + "2")
        assert [(m["dir"], m["version"]) for m in msgs] == [("in", None), ("out", None)]
        assert msgs[1]["wamid"] == graph.to(WA + "2")[0].id and "I can help with" in (msgs[1]["text"] or "")


def test_the_transcript_is_trimmed_like_the_history(redis_client: object, channel: object, clock: object) -> None:
    store = Store(redis_client, history_max_len=2)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=channel, clock=clock)  # type: ignore[arg-type]
    rt.handle("u1", UserMessage(text="pizza", message_id="m1"))
    for i, answer in enumerate(["small", "2", "thin", "Main St 1"]):
        rt.handle("u1", UserMessage(text=answer, message_id=f"m{i + 2}"))
    rt.drain()
    keep = store.transcript_keep
    assert keep == 8
    msgs = store.transcript("u1")
    assert len(msgs) == keep and msgs[-1]["dir"] == "out"
    assert redis_client.llen(K.transcript_key("u1")) == keep  # type: ignore[attr-defined]


def test_a_duplicate_delivery_is_recorded_once_and_delete_erases_the_transcript(store: Store, runtime: Runtime) -> None:
    runtime.handle("u2", UserMessage(text="pizza", message_id="m1"))
    runtime.handle("u2", UserMessage(text="pizza", message_id="m1"))  # WhatsApp redelivered it
    runtime.drain()
    assert [m["dir"] for m in store.transcript("u2")].count("in") == 1
    assert store.delete_session("u2")
    assert store.transcript("u2") == []


def test_reply_kinds_and_the_actor_of_an_outbound_message() -> None:
    assert reply_kind(Reply(text="hi")) == "text"
    assert reply_kind(Reply(text="pick", buttons=(("a", "A"),))) == "interactive"
    assert reply_kind(Reply(template=("order_ready", "en", ("Ann",)))) == "template"
    assert reply_kind(Reply(text="menu", media=("image", "https://x/y.png"))) == "media"
    e = outbound_entry(Reply(template=("order_ready", "en", ("Ann",))), wamid="w", ts=1, version=3, index=0,
                       actor="agent")
    assert e["actor"] == "agent" and e["text"] == "[template order_ready: Ann]"
    assert e["payload"] == {"template": ["order_ready", "en", ["Ann"]]}


def test_a_lone_surrogate_is_recorded_and_never_blocks_the_next_commit(store: Store, runtime: Runtime) -> None:
    runtime.handle("u3", UserMessage(text="pizza", message_id="m1"))
    runtime.handle("u3", UserMessage(text="\ud800", message_id="m2"))  # no UTF-8 form: an invalid answer
    assert runtime.handle("u3", UserMessage(text="small", message_id="m3")).status == "applied"
    runtime.drain()
    texts = [m["text"] for m in store.transcript("u3") if m["dir"] == "in"]
    assert texts == ["pizza", "\ud800", "small"]


def test_with_a_terminal_ttl_the_transcript_expires_like_the_session(redis_client: object, channel: object,
                                                                    clock: object) -> None:
    store = Store(redis_client, terminal_ttl_ms=60_000)
    rt = Runtime(store, EXAMPLE_FLOWS, channel=channel, clock=clock)  # type: ignore[arg-type]
    rt.handle("u5", UserMessage(text="pizza", message_id="m1"))
    rt.drain()
    assert 0 < redis_client.pttl(K.transcript_key("u5")) <= 60_000  # type: ignore[attr-defined]
    keep_all = Runtime(Store(redis_client), EXAMPLE_FLOWS, channel=channel, clock=clock)  # type: ignore[arg-type]
    keep_all.handle("u6", UserMessage(text="pizza", message_id="m1"))
    keep_all.drain()
    assert redis_client.pttl(K.transcript_key("u6")) == -1  # type: ignore[attr-defined]  # no TTL: kept like history
