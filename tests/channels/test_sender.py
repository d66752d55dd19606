"""WhatsAppSender and AsyncWhatsAppSender against the FakeGraphAPI over real HTTP.

Every behaviour test runs twice: with the sync sender, and with the async one driven
through ``asyncio.run`` (the ``send`` fixture hides which). Backoff sleeps are recorded,
not waited for.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit.channels.whatsapp import AsyncWhatsAppSender, WhatsAppConfig, WhatsAppSender
from flowkit.errors import ChannelError, ConfigError, GraphAPIError
from flowkit.testing.fake_graph import FakeGraphAPI

from .conftest import Sleeps

TO = "15551234567"
Send = Callable[..., Any]


class _AsyncAsSync:
    """Calls an AsyncWhatsAppSender method inside a fresh event loop (and a fresh client)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            async def go() -> Any:
                async with AsyncWhatsAppSender(**self.kwargs) as s:
                    return await getattr(s, name)(*args, **kw)
            return asyncio.run(go())
        return call


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest, sleeps: Sleeps) -> Iterator[Callable[..., Any]]:
    """``make(**sender_kwargs)`` -> an object with the sender's methods, sync or async underneath."""
    opened: list[WhatsAppSender] = []

    def factory(**kwargs: Any) -> Any:
        if request.param == "sync":
            s = WhatsAppSender(sleep=sleeps, **kwargs)
            opened.append(s)
            return s
        return _AsyncAsSync(sleep=sleeps.asleep, **kwargs)

    yield factory
    for s in opened:
        s.close()


@pytest.fixture
def send(make: Callable[..., Any], graph: FakeGraphAPI) -> Any:
    return make(config=graph.config())


# ---------------------------------------------------------------- every kind of message


def test_send_text(send: Any, graph: FakeGraphAPI) -> None:
    wamid = send.send_text(TO, "Hi there! https://example.com", preview_url=True)
    (m,) = graph.sent
    assert wamid == m.id and wamid.startswith("wamid.")
    assert m.payload == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO, "type": "text",
                         "text": {"preview_url": True, "body": "Hi there! https://example.com"}}


def test_send_buttons(send: Any, graph: FakeGraphAPI) -> None:
    wamid = send.send_buttons(TO, "What size?", [("small", "Small"), ("medium", "Medium"), ("large", "Large")])
    (m,) = graph.sent
    assert wamid == m.id and m.type == "interactive" and m.text == "What size?"
    assert m.payload["interactive"]["type"] == "button"
    assert m.payload["interactive"]["action"]["buttons"][2] == {"type": "reply", "reply": {"id": "large", "title": "Large"}}


def test_send_list(send: Any, graph: FakeGraphAPI) -> None:
    sections = [{"title": "Pizzas", "rows": [{"id": "marg", "title": "Margherita", "description": "Tomato, basil"},
                                              ("pepp", "Pepperoni")]},
                {"title": "Drinks", "rows": [("cola", "Cola", "330 ml")]}]
    wamid = send.send_list(TO, "Pick one", "Menu", sections)
    (m,) = graph.sent
    assert wamid == m.id
    action = m.payload["interactive"]["action"]
    assert m.payload["interactive"]["type"] == "list" and action["button"] == "Menu"
    assert action["sections"][0]["rows"][1] == {"id": "pepp", "title": "Pepperoni"}
    assert action["sections"][1] == {"title": "Drinks", "rows": [{"id": "cola", "title": "Cola", "description": "330 ml"}]}


def test_send_template(send: Any, graph: FakeGraphAPI) -> None:
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]
    wamid = send.send_template(TO, "order_ready", "de", components)
    (m,) = graph.sent
    assert wamid == m.id
    assert m.payload["template"] == {"name": "order_ready", "language": {"code": "de"}, "components": components}
    send.send_template(TO, "hello_world")
    assert graph.sent[1].payload["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_mark_read(send: Any, graph: FakeGraphAPI) -> None:
    assert send.mark_read("wamid.IN1") == "wamid.IN1"
    assert graph.read_receipts == ["wamid.IN1"] and graph.sent == []


def test_send_payload_for_other_kinds(send: Any, graph: FakeGraphAPI) -> None:
    wamid = send.send_payload({"messaging_product": "whatsapp", "to": TO, "type": "location",
                               "location": {"latitude": 52.5, "longitude": 13.4, "name": "Office"}})
    assert graph.sent[0].id == wamid and graph.sent[0].type == "location"


# ---------------------------------------------------------------- errors from Graph


def test_401_surfaces_graph_error_and_is_not_retried(make: Callable[..., Any], graph: FakeGraphAPI,
                                                     sleeps: Sleeps) -> None:
    s = make(config=graph.config(token="expired-token"))
    with pytest.raises(GraphAPIError) as err:
        s.send_text(TO, "hi")
    e = err.value
    assert (e.status, e.code, e.attempts, e.retryable) == (401, 190, 1, False)
    assert e.fbtrace_id and e.fbtrace_id in str(e)
    assert e.graph_message and "Invalid OAuth access token" in e.graph_message
    assert "check WHATSAPP_TOKEN" in str(e) and "expired-token" not in str(e)
    assert graph.requests == 1 and sleeps == []


def test_400_invalid_request_surfaces_code_and_message(send: Any, graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    with pytest.raises(GraphAPIError) as err:
        send.send_payload({"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {}})
    e = err.value
    assert (e.status, e.code) == (400, 100)
    assert e.graph_message == "(#100) The parameter text['body'] is required."
    assert "text['body']" in str(e) and "fix the field" in str(e)
    assert graph.requests == 1 and sleeps == []


def test_400_unknown_phone_number_id_says_what_to_check(make: Callable[..., Any]) -> None:
    with FakeGraphAPI(phone_number_ids=["111"]) as graph:
        s = make(config=graph.config(phone_number_id="222"))
        with pytest.raises(GraphAPIError) as err:
            s.send_text(TO, "hi")
    assert (err.value.status, err.value.code, err.value.subcode) == (400, 100, 33)
    assert "check WHATSAPP_PHONE_NUMBER_ID" in str(err.value)


def test_429_honours_retry_after_then_succeeds(send: Any, graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    graph.fail_next(1, 429, retry_after=2)
    wamid = send.send_text(TO, "hi")
    assert sleeps == [2.0]
    assert graph.requests == 2 and [m.id for m in graph.sent] == [wamid]


def test_500_twice_then_success_with_exponential_backoff(send: Any, graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    graph.fail_next(2, 500)
    send.send_text(TO, "hi")
    assert graph.requests == 3 and len(graph.sent) == 1
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # 0.5 s doubling, jitter 0.5-1x


def test_persistent_500_fails_after_max_attempts(make: Callable[..., Any], graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    s = make(config=graph.config(), max_attempts=3)
    graph.fail_next(10, 503)
    with pytest.raises(GraphAPIError) as err:
        s.send_text(TO, "hi")
    e = err.value
    assert (e.status, e.code, e.attempts, e.retryable) == (503, 2, 3, True)
    assert "after 3 attempts" in str(e) and "try again later" in str(e)
    assert graph.requests == 3 and len(sleeps) == 2 and graph.sent == []


def test_backoff_is_capped(make: Callable[..., Any], graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    s = make(config=graph.config(), max_attempts=6, backoff=1.0, max_backoff=3.0)
    graph.fail_next(5, 500)
    s.send_text(TO, "hi")
    assert len(sleeps) == 5 and max(sleeps) <= 3.0 and sleeps[-1] >= 1.5


def test_rate_limit_code_with_http_400_is_retried(send: Any, graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    # Graph often reports throughput limits as HTTP 400 with code 130429.
    graph.fail_next(1, 400, code=130429, message="(#130429) Rate limit hit")
    send.send_text(TO, "hi")
    assert graph.requests == 2 and len(sleeps) == 1


def test_retry_after_too_long_is_raised_not_waited(make: Callable[..., Any], graph: FakeGraphAPI,
                                                   sleeps: Sleeps) -> None:
    s = make(config=graph.config(), max_retry_after=30)
    graph.fail_next(1, 429, retry_after=3600)
    with pytest.raises(GraphAPIError) as err:
        s.send_text(TO, "hi")
    assert (err.value.status, err.value.retry_after, err.value.retryable) == (429, 3600.0, True)
    assert sleeps == [] and graph.requests == 1


def test_pair_rate_limit_from_the_fake(make: Callable[..., Any]) -> None:
    with FakeGraphAPI(pair_limit=(2, 60)) as graph:
        s = make(config=graph.config(), max_attempts=2)
        s.send_text(TO, "1")
        s.send_text(TO, "2")
        s.send_text("15557654321", "another user is fine")
        with pytest.raises(GraphAPIError) as err:
            s.send_text(TO, "3")
    assert (err.value.status, err.value.code, err.value.retryable) == (429, 131056, True)
    assert "pair rate limit" in str(err.value) and "rate limiting" in str(err.value)


def test_throughput_rate_limit_from_the_fake(make: Callable[..., Any]) -> None:
    with FakeGraphAPI(rate_limit=2, rate_limit_status=400) as graph:
        s = make(config=graph.config(), max_attempts=1)
        s.send_text("1", "a")
        s.send_text("2", "b")
        with pytest.raises(GraphAPIError) as err:
            s.send_text("3", "c")
    assert (err.value.status, err.value.code) == (400, 130429)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connect_errors_are_retried_then_raised(make: Callable[..., Any], sleeps: Sleeps) -> None:
    config = WhatsAppConfig(token="t", phone_number_id="1", api_url=f"http://127.0.0.1:{_closed_port()}")
    s = make(config=config, max_attempts=3)
    with pytest.raises(GraphAPIError) as err:
        s.send_text(TO, "hi")
    assert err.value.status is None and err.value.attempts == 3 and err.value.retryable
    assert "cannot reach the WhatsApp API" in str(err.value) and len(sleeps) == 2


def test_timeout_after_sending_is_not_retried(make: Callable[..., Any], sleeps: Sleeps) -> None:
    # The request may have been delivered; WhatsApp has no idempotency key, so no retry.
    with FakeGraphAPI(latency=0.5) as graph:
        s = make(config=graph.config(), timeout=0.1)
        with pytest.raises(GraphAPIError) as err:
            s.send_text(TO, "hi")
        assert graph.requests == 1
    assert "may or may not have been delivered" in str(err.value) and not err.value.retryable and sleeps == []


def test_token_never_reaches_logs_or_errors(make: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    token = "EAAG-super-secret-token-123"
    with FakeGraphAPI(token=token) as graph:
        config = graph.config()
        s = make(config=config, max_attempts=2)
        graph.fail_next(5, 500)
        with caplog.at_level(logging.DEBUG), pytest.raises(GraphAPIError) as err:
            s.send_text(TO, "hi")
    assert caplog.records, "retries are logged"
    for record in caplog.records:
        assert token not in record.getMessage() and token not in repr(record.__dict__)
    assert token not in str(err.value) and token not in repr(config) and token not in repr(s)


# ---------------------------------------------------------------- validation before sending


@pytest.mark.parametrize(("call", "match"), [
    (lambda s: s.send_buttons(TO, "Pick", [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]), "1 to 3 buttons, got 4"),
    (lambda s: s.send_buttons(TO, "Pick", []), "1 to 3 buttons, got 0"),
    (lambda s: s.send_buttons(TO, "Pick", [("a", "Extra large with cheese")]), "23 characters; WhatsApp allows at most 20"),
    (lambda s: s.send_buttons(TO, "Pick", [("a", "A"), ("a", "B")]), "button ids must be unique; repeated: 'a'"),
    (lambda s: s.send_buttons(TO, "Pick", [("a", "Same"), ("b", "Same")]), "button titles must be unique"),
    (lambda s: s.send_buttons(TO, "", [("a", "A")]), "button message text must be a non-empty string"),
    (lambda s: s.send_buttons(TO, "x" * 1025, [("a", "A")]), "1025 characters; WhatsApp allows at most 1024"),
    (lambda s: s.send_buttons(TO, "Pick", ["ab"]), r"button 0 must be an \(id, title\) pair"),
    (lambda s: s.send_list(TO, "Pick", "Menu", [{"rows": [(f"r{i}", f"Row {i}") for i in range(11)]}]),
     "at most 10 rows in all sections, got 11"),
    (lambda s: s.send_list(TO, "Pick", "Menu", [{"title": "A", "rows": [(f"a{i}", "x") for i in range(6)]},
                                                {"title": "B", "rows": [(f"b{i}", "y") for i in range(5)]}]),
     "at most 10 rows in all sections, got 11"),
    (lambda s: s.send_list(TO, "Pick", "Menu", [{"rows": [("r", "A title that is far too long")]}]),
     "at most 24"),
    (lambda s: s.send_list(TO, "Pick", "Menu", [{"rows": [("a", "A")]}, {"rows": [("b", "B")]}]),
     "section 0 title must be a non-empty string"),
    (lambda s: s.send_list(TO, "Pick", "Menu", [{"title": "S", "rows": []}]), "section 0 needs a non-empty list of rows"),
    (lambda s: s.send_list(TO, "Pick", "A very long button label", [{"rows": [("a", "A")]}]), "list button label is 24"),
    (lambda s: s.send_list(TO, "Pick", "Menu", [{"rows": [("a", "A"), ("a", "B")]}]), "row ids must be unique"),
    (lambda s: s.send_text(TO, ""), "text must be a non-empty string"),
    (lambda s: s.send_text(TO, "x" * 4097), "4097 characters; WhatsApp allows at most 4096"),
    (lambda s: s.send_text("", "hi"), "recipient must be a phone number"),
    (lambda s: s.send_template(TO, ""), "template name must be a non-empty string"),
    (lambda s: s.mark_read(""), "message_id must be a non-empty string"),
])
def test_limits_are_checked_before_sending(send: Any, graph: FakeGraphAPI, call: Callable[[Any], Any],
                                           match: str) -> None:
    with pytest.raises(ChannelError, match=match) as err:
        call(send)
    assert not isinstance(err.value, GraphAPIError)
    assert graph.requests == 0


def test_the_fake_enforces_the_same_limits(send: Any, graph: FakeGraphAPI) -> None:
    buttons = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(4)]
    with pytest.raises(GraphAPIError) as err:
        send.send_payload({"messaging_product": "whatsapp", "to": TO, "type": "interactive", "interactive": {
            "type": "button", "body": {"text": "Pick"}, "action": {"buttons": buttons}}})
    assert err.value.code == 100 and "1 to 3" in str(err.value)


# ---------------------------------------------------------------- configuration


def test_config_from_env_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"WHATSAPP_TOKEN": "tok", "WHATSAPP_PHONE_NUMBER_ID": "123", "WHATSAPP_API_URL": "http://localhost:9/",
           "WHATSAPP_API_VERSION": "20.0"}
    c = WhatsAppConfig.from_env(env)
    assert (c.token, c.phone_number_id, c.api_url, c.api_version) == ("tok", "123", "http://localhost:9", "v20.0")
    assert c.messages_url == "http://localhost:9/v20.0/123/messages"
    c2 = WhatsAppConfig.from_env(env, phone_number_id="456", api_version="v22.0")
    assert (c2.phone_number_id, c2.api_version, c2.token) == ("456", "v22.0", "tok")
    d = WhatsAppConfig.from_env({"WHATSAPP_TOKEN": "t", "WHATSAPP_PHONE_NUMBER_ID": "1"})
    assert (d.api_url, d.api_version) == ("https://graph.facebook.com", "v21.0")
    assert "tok" not in repr(c)


@pytest.mark.parametrize(("env", "match"), [
    ({"WHATSAPP_PHONE_NUMBER_ID": "1"}, "WHATSAPP_TOKEN is not set"),
    ({"WHATSAPP_TOKEN": "t"}, "WHATSAPP_PHONE_NUMBER_ID is not set"),
    ({"WHATSAPP_TOKEN": "t", "WHATSAPP_PHONE_NUMBER_ID": "1", "WHATSAPP_API_URL": "graph.facebook.com"},
     "must start with http"),
])
def test_config_errors_say_what_to_set(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WhatsAppConfig.from_env(env)


def test_sender_reads_the_environment_and_arguments_win(monkeypatch: pytest.MonkeyPatch, graph: FakeGraphAPI) -> None:
    monkeypatch.setenv("WHATSAPP_TOKEN", "wrong")
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "777")
    monkeypatch.setenv("WHATSAPP_API_URL", graph.url)
    with WhatsAppSender(token=graph.token) as s:
        s.send_text(TO, "from env")
        assert s.config.phone_number_id == "777"
    assert graph.sent[0].phone_number_id == "777"
    with WhatsAppSender(config=graph.config(), phone_number_id="888") as s2:
        s2.send_text(TO, "override")
    assert graph.sent[1].phone_number_id == "888"


# ---------------------------------------------------------------- async specifics


def test_async_sender_sends_concurrently_on_one_client(graph: FakeGraphAPI) -> None:
    async def main() -> list[str]:
        async with AsyncWhatsAppSender(config=graph.config()) as s:
            return list(await asyncio.gather(*(s.send_text(f"1555000{i:04d}", f"m{i}") for i in range(30))))

    ids = asyncio.run(main())
    assert len(set(ids)) == 30 and {m.id for m in graph.sent} == set(ids)


def test_async_sender_retries_with_awaited_sleep(graph: FakeGraphAPI, sleeps: Sleeps) -> None:
    graph.fail_next(2, 429)

    async def main() -> str:
        async with AsyncWhatsAppSender(config=graph.config(), sleep=sleeps.asleep) as s:
            return await s.send_buttons(TO, "Pick", [("y", "Yes"), ("n", "No")])

    assert asyncio.run(main()) == graph.sent[0].id
    assert len(sleeps) == 2 and graph.requests == 3


def test_injected_client_is_not_closed(graph: FakeGraphAPI) -> None:
    import httpx

    with httpx.Client() as client:
        with WhatsAppSender(config=graph.config(), client=client) as s:
            s.send_text(TO, "a")
        assert not client.is_closed
        WhatsAppSender(config=graph.config(), client=client).send_text(TO, "b")
    assert len(graph.sent) == 2
