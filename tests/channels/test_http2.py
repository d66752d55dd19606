"""The Graph API client speaks HTTP/2 where Graph does (TLS, ALPN h2): the replies of many
sessions share one connection. Against FakeGraphAPI(tls=True), hypercorn serving the fake's
own endpoint over TLS with a certificate the test's CA signed."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.channels.whatsapp.sender import AsyncWhatsAppSender, WhatsAppConfig, WhatsAppSender
from flowkit.errors import ConfigError, GraphAPIError
from flowkit.store import Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import signed, start_serve
from tests.waiting import DEADLINE, stop, wait_for


@pytest.fixture(scope="module")
def tls_graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(tls=True) as g:
        yield g


@pytest.fixture(autouse=True)
def _fresh(tls_graph: FakeGraphAPI) -> None:
    tls_graph.reset()


def test_concurrent_replies_share_one_http2_connection(tls_graph: FakeGraphAPI) -> None:
    async def main() -> list[str]:
        sender = AsyncWhatsAppSender(config=tls_graph.config())
        try:
            return await asyncio.gather(*(sender.send_text(f"1555000{i:04d}", f"hi {i}") for i in range(40)))
        finally:
            await sender.aclose()

    wamids = asyncio.run(main())
    assert len(set(wamids)) == 40 and len(tls_graph.sent) == 40
    assert {version for version, _ in tls_graph.transport} == {"2"}
    assert len({port for _, port in tls_graph.transport}) == 1  # one connection, 40 streams


def test_the_blocking_sender_too_and_http2_can_be_turned_off(tls_graph: FakeGraphAPI) -> None:
    with WhatsAppSender(config=tls_graph.config()) as sender:
        sender.send_text("15550001111", "over h2")
    with WhatsAppSender(config=dataclasses.replace(tls_graph.config(), http2=False)) as sender:
        sender.send_text("15550001111", "over http/1.1")
    assert [version for version, _ in tls_graph.transport] == ["2", "1.1"]
    assert [m.text for m in tls_graph.sent] == ["over h2", "over http/1.1"]


def test_graph_errors_and_retries_over_http2(tls_graph: FakeGraphAPI) -> None:
    """Real failure modes keep their meaning on HTTP/2: a 429 with Retry-After is waited out
    and retried on the same connection; a 400 is Graph's error, not retried."""
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async def main() -> tuple[str, GraphAPIError]:
        sender = AsyncWhatsAppSender(config=tls_graph.config(), sleep=sleep)
        try:
            tls_graph.fail_next(1, 429, retry_after=2)
            wamid = await sender.send_text("15550002222", "after a rate limit")
            tls_graph.fail_next(1, 400)
            with pytest.raises(GraphAPIError) as bad:
                await sender.send_text("15550002222", "refused")
            return wamid, bad.value
        finally:
            await sender.aclose()

    wamid, error = asyncio.run(main())
    assert wamid and slept == [2.0] and tls_graph.to("15550002222")[0].text == "after a rate limit"
    assert error.status == 400 and error.code == 100
    assert {version for version, _ in tls_graph.transport} == {"2"} and len({p for _, p in tls_graph.transport}) == 1


def test_an_untrusted_certificate_is_refused(tls_graph: FakeGraphAPI) -> None:
    """TLS is verified: without the fake's CA (the system's only), nothing is sent."""
    with WhatsAppSender(config=dataclasses.replace(tls_graph.config(), ca_file=None), max_attempts=1) as sender:
        with pytest.raises(GraphAPIError, match="CERTIFICATE_VERIFY_FAILED"):
            sender.send_text("15550003333", "x")
    assert tls_graph.sent == []


def test_the_environment_names_http2_and_the_ca_file(tmp_path: Path) -> None:
    base = {"WHATSAPP_TOKEN": "t", "WHATSAPP_PHONE_NUMBER_ID": "123"}
    assert WhatsAppConfig.from_env(base).http2 is True  # on by default: Graph speaks it
    assert WhatsAppConfig.from_env({**base, "WHATSAPP_HTTP2": "0"}).http2 is False
    assert WhatsAppConfig.from_env({**base, "WHATSAPP_HTTP2": "Off"}).http2 is False
    with pytest.raises(ConfigError, match="WHATSAPP_HTTP2 must be 1 or 0"):
        WhatsAppConfig.from_env({**base, "WHATSAPP_HTTP2": "ture"})
    with pytest.raises(ConfigError, match="WHATSAPP_CA_FILE names .* cannot be read as PEM"):
        WhatsAppConfig.from_env({**base, "WHATSAPP_CA_FILE": str(tmp_path / "missing.pem")})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="WHATSAPP_CA_FILE names .* cannot be read as PEM"):
        WhatsAppConfig(token="t", phone_number_id="123", ca_file=str(junk))  # built directly: checked too
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    assert WhatsAppConfig.from_env({**base, "WHATSAPP_CA_FILE": str(ca)}).ca_file == str(ca)


def test_a_client_still_connected_does_not_hold_the_stop(tmp_path: Path) -> None:
    """stop() with a sender still connected leaves nothing serving: nothing on the port, no key
    on disk (run in a thread, hypercorn waited for the client and outlived stop() by 20 s)."""
    graph = FakeGraphAPI(tls=True).start()
    port, keys = int(graph.url.rsplit(":", 1)[1]), Path(graph.ca_file or "").parent
    sender = WhatsAppSender(config=graph.config())
    try:
        sender.send_text("15550004444", "keeps its connection open")
        graph.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
        assert not keys.exists() and graph.ca_file is None
    finally:
        sender.close()


def test_serve_sends_every_reply_over_http2(redis_url: str, store: Store, tmp_path: Path, tls_graph: FakeGraphAPI) -> None:
    """`flowkit serve` configured from the environment (WHATSAPP_API_URL https, WHATSAPP_CA_FILE):
    the replies of 8 users go out over HTTP/2 on one connection."""
    log = tmp_path / "serve.log"
    port = free_port()
    proc = start_serve(redis_url, tls_graph, port, log, flows="examples/tally.yaml")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE) as client:
            for i in range(8):
                for n, text in enumerate(["tally", "one", "two"]):
                    body, headers = signed(text_payload(f"3180{i:07d}", text, message_id=f"wamid.h2.{i}.{n}"))
                    assert client.post("/webhook", content=body, headers=headers).status_code == 200
        wait_for(lambda: all(len(tls_graph.to(f"3180{i:07d}")) >= 3 for i in range(8)), "every user's replies")
    finally:
        stop(proc)
    assert tls_graph.transport and {version for version, _ in tls_graph.transport} == {"2"}
    assert len({p for _, p in tls_graph.transport}) == 1, tls_graph.transport
