"""The FakeGraphAPI itself, spoken to with plain HTTP: it must answer like Graph."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from flowkit.testing.fake_graph import FakeGraphAPI
from tests.waiting import wait_for

TO = "15551234567"


def post(graph: FakeGraphAPI, body: Any, *, token: str | None = "test-token", path: str | None = None,
         auth: str | None = None) -> httpx.Response:
    headers = {"Authorization": auth or f"Bearer {token}"} if token is not None else {}
    url = graph.url + (path or "/v21.0/106540352242922/messages")
    if isinstance(body, bytes):
        return httpx.post(url, content=body, headers=headers)
    return httpx.post(url, json=body, headers=headers)


TEXT = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "hi"}}


def test_success_body_is_graphs(graph: FakeGraphAPI) -> None:
    r = post(graph, TEXT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["messaging_product"] == "whatsapp" and body["contacts"] == [{"input": TO, "wa_id": TO}]
    (msg,) = body["messages"]
    assert msg["id"].startswith("wamid.") and graph.sent[0].id == msg["id"]
    assert graph.sent[0].to == TO and graph.sent[0].phone_number_id == "106540352242922"
    assert graph.sent[0].text == "hi"


@pytest.mark.parametrize(("token", "auth"), [(None, None), ("wrong", None), ("x", "Basic dGVzdC10b2tlbg=="),
                                             ("x", "test-token")])
def test_bad_token_is_401_oauth_exception(graph: FakeGraphAPI, token: str | None, auth: str | None) -> None:
    r = post(graph, TEXT, token=token, auth=auth)
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]
    err = r.json()["error"]
    assert (err["type"], err["code"]) == ("OAuthException", 190) and err["fbtrace_id"]
    assert graph.sent == [] and graph.requests == 1


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "(#100) The request body must be a JSON object"),
    ([1, 2], "(#100) The request body must be a JSON object"),
    ({"to": TO, "type": "text", "text": {"body": "x"}}, "(#100) The parameter messaging_product is required."),
    ({**TEXT, "messaging_product": "sms"}, "(#100) Param messaging_product must be 'whatsapp'."),
    ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, "(#100) The parameter to is required."),
    ({**TEXT, "text": {"body": ""}}, "(#100) The parameter text['body'] is required."),
    ({**TEXT, "text": {"body": "x" * 4097}}, "(#100) Param text['body'] must be at most 4096 characters long."),
    ({**TEXT, "type": "hologram"}, None),
    ({"messaging_product": "whatsapp", "to": TO, "type": "template", "template": {"name": "x"}},
     "(#100) The parameter template['language']['code'] is required."),
    ({"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {}},
     "(#100) The parameter image['id'] or image['link'] is required."),
    ({"messaging_product": "whatsapp", "to": TO, "type": "interactive", "interactive": {
        "type": "list", "body": {"text": "b"}, "action": {"button": "Menu", "sections": [
            {"rows": [{"id": f"r{i}", "title": "t"} for i in range(11)]}]}}},
     "(#100) Total row count exceed max allowed count: 10"),
    ({"messaging_product": "whatsapp", "to": TO, "type": "interactive", "interactive": {
        "type": "button", "body": {"text": "b"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]}}},
     "(#100) Param interactive['action']['buttons'][0]['reply']['title'] must be at most 20 characters long."),
    ({"messaging_product": "whatsapp", "status": "read"}, "(#100) The parameter message_id is required."),
])
def test_invalid_requests_are_400_code_100(graph: FakeGraphAPI, body: Any, message: str | None) -> None:
    r = post(graph, body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == 100 and err["type"] == "OAuthException"
    if message is not None:
        assert err["message"] == message
    assert graph.sent == []


def test_other_message_types_are_accepted(graph: FakeGraphAPI) -> None:
    base = {"messaging_product": "whatsapp", "to": TO}
    for body in ({**base, "type": "location", "location": {"latitude": 1.0, "longitude": 2.0}},
                 {**base, "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}},
                 {**base, "type": "document", "document": {"link": "https://example.com/a.pdf"}},
                 {**base, "type": "contacts", "contacts": [{"name": {"formatted_name": "A"}}]},
                 {**base, "text": {"body": "type defaults to text"}}):
        assert post(graph, body).status_code == 200, body
    assert [m.type for m in graph.sent] == ["location", "reaction", "document", "contacts", "text"]


def test_read_receipt(graph: FakeGraphAPI) -> None:
    r = post(graph, {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert graph.read_receipts == ["wamid.IN"]


def test_unknown_paths_and_methods(graph: FakeGraphAPI) -> None:
    assert post(graph, TEXT, path="/v21.0/106540352242922/media").status_code == 400
    r = httpx.get(graph.url + "/v21.0/106540352242922/messages", headers={"Authorization": "Bearer test-token"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100


def test_fail_next_then_recover(graph: FakeGraphAPI) -> None:
    graph.fail_next(2, 429, retry_after=1.5)
    graph.fail_next(1, 500)
    first, second, third = (post(graph, TEXT) for _ in range(3))
    assert (first.status_code, first.headers["retry-after"], first.json()["error"]["code"]) == (429, "1.5", 130429)
    assert second.status_code == 429
    assert third.status_code == 500 and third.json()["error"]["is_transient"] is True
    assert post(graph, TEXT).status_code == 200 and graph.requests == 4


def test_fail_next_needs_a_valid_token_first(graph: FakeGraphAPI) -> None:
    graph.fail_next(1, 500)
    assert post(graph, TEXT, token="wrong").status_code == 401
    assert post(graph, TEXT).status_code == 500


def test_reset_forgets_everything(graph: FakeGraphAPI) -> None:
    post(graph, TEXT)
    post(graph, {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"})
    graph.fail_next(3)
    graph.reset()
    assert (graph.sent, graph.read_receipts, graph.requests) == ([], [], 0)
    assert post(graph, TEXT).status_code == 200


def test_to_filters_by_recipient(graph: FakeGraphAPI) -> None:
    post(graph, TEXT)
    post(graph, {**TEXT, "to": "15550000000"})
    assert [m.to for m in graph.to(TO)] == [TO]


def test_concurrent_senders_are_all_recorded_with_unique_ids(graph: FakeGraphAPI) -> None:
    def worker(n: int) -> None:
        with httpx.Client() as client:
            for i in range(25):
                r = client.post(graph.url + "/v21.0/1/messages", headers={"Authorization": "Bearer test-token"},
                                json={**TEXT, "to": f"1555{n:03d}{i:04d}"})
                assert r.status_code == 200

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = graph.sent
    assert len(sent) == 200 and len({m.id for m in sent}) == 200 and graph.requests == 200


def test_lifecycle_and_env() -> None:
    fake = FakeGraphAPI(token="abc")
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.url
    with fake:
        url = fake.url
        assert url.startswith("http://127.0.0.1:")
        assert fake.env("42") == {"WHATSAPP_TOKEN": "abc", "WHATSAPP_PHONE_NUMBER_ID": "42", "WHATSAPP_API_URL": url}
        assert fake.config("42").messages_url == f"{url}/v21.0/42/messages"
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/v21.0/1/messages", json=TEXT)
    fake.stop()  # stopping twice is harmless
    with fake:  # and it can start again
        assert post(fake, TEXT, token="abc").status_code == 200


# ---------------------------------------------------------------- richer messages, the window, delays

def _interactive(**interactive: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": TO, "type": "interactive", "interactive": interactive}


_BUTTONS = {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}


@pytest.mark.parametrize(("body", "message"), [
    (_interactive(type="button", body={"text": "b"}, action=_BUTTONS, header={"type": "text", "text": "h" * 61}),
     "(#100) Param interactive['header']['text'] must be at most 60 characters long."),
    (_interactive(type="button", body={"text": "b"}, action=_BUTTONS, footer={"text": "f" * 61}),
     "(#100) Param interactive['footer']['text'] must be at most 60 characters long."),
    (_interactive(type="list", body={"text": "b"}, header={"type": "image", "image": {"link": "https://e.com/a.png"}},
                  action={"button": "Go", "sections": [{"rows": [{"id": "a", "title": "A"}]}]}),
     "(#100) Param interactive['header']['type'] must be one of {text}."),
    (_interactive(type="list", body={"text": "b"}, action={"button": "Go", "sections": [
        {"rows": [{"id": "a", "title": "Same"}, {"id": "b", "title": "Same"}]}]}),
     "(#100) Row titles must be unique."),
    (_interactive(type="cta_url", body={"text": "b"},
                  action={"name": "cta_url", "parameters": {"display_text": "x" * 21, "url": "https://e.com"}}),
     "(#100) Param interactive['action']['parameters']['display_text'] must be at most 20 characters long."),
    (_interactive(type="cta_url", body={"text": "b"},
                  action={"name": "cta_url", "parameters": {"display_text": "Go", "url": "ftp://e.com"}}),
     "(#100) Param interactive['action']['parameters']['url'] must be a valid URL."),
    (_interactive(type="location_request_message", body={"text": "b" * 1025}, action={"name": "send_location"}),
     "(#100) Param interactive['body']['text'] must be at most 1024 characters long."),
    (_interactive(type="location_request_message", body={"text": "b"}, action={"name": "send_location"},
                  footer={"text": "f"}),
     "(#100) Param interactive['footer'] is not supported for location_request_message."),
    ({"messaging_product": "whatsapp", "to": TO, "type": "sticker", "sticker": {"id": "1", "caption": "hi"}},
     "(#100) Param sticker['caption'] is not supported for sticker messages."),
    ({"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"id": "1", "caption": "c" * 1025}},
     "(#100) Param image['caption'] must be at most 1024 characters long."),
    ({"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"id": "1", "link": "https://e.com/a"}},
     "(#100) Param image must have either 'id' or 'link', not both."),
    ({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.1", "typing_indicator": {"type": "dots"}},
     "(#100) Param typing_indicator['type'] must be 'text'."),
])
def test_new_message_kinds_are_checked_like_graph(graph: FakeGraphAPI, body: Any, message: str) -> None:
    r = post(graph, body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["code"], err["type"], err["message"]) == (100, "OAuthException", message)
    assert graph.sent == [] and graph.read_receipts == []


def test_window_refuses_free_form_messages_after_24_hours_but_not_templates() -> None:
    with FakeGraphAPI(window=True) as graph:
        graph.set_time(1_800_000_000)
        r = post(graph, TEXT)  # the user never wrote
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == 131047 and err["message"] == "(#131047) Re-engagement message"
        assert "more than 24 hours have passed" in err["error_data"]["details"]

        graph.user_wrote(TO)
        assert post(graph, TEXT).status_code == 200
        graph.advance(24 * 3600 - 1)
        assert post(graph, TEXT).status_code == 200
        graph.advance(1)
        assert post(graph, TEXT).json()["error"]["code"] == 131047
        template = {"messaging_product": "whatsapp", "to": TO, "type": "template",
                    "template": {"name": "hello_world", "language": {"code": "en_US"}}}
        assert post(graph, template).status_code == 200
        graph.user_wrote(TO, at=graph.now() - 3600)  # wrote an hour ago: open again
        assert post(graph, TEXT).status_code == 200
        assert [m.type for m in graph.sent] == ["text", "text", "template", "text"]


def test_window_is_off_unless_asked(graph: FakeGraphAPI) -> None:
    assert post(graph, TEXT).status_code == 200


def test_rate_limit_answers_carry_retry_after() -> None:
    with FakeGraphAPI(rate_limit=2) as graph:
        assert [post(graph, TEXT).status_code for _ in range(2)] == [200, 200]
        r = post(graph, TEXT)
        assert r.status_code == 429 and r.json()["error"]["code"] == 130429
        assert r.headers["Retry-After"] == "1"
    with FakeGraphAPI(pair_limit=(1, 30)) as graph:
        assert post(graph, TEXT).status_code == 200
        r = post(graph, TEXT)
        assert r.json()["error"]["code"] == 131056 and 29 <= int(r.headers["Retry-After"]) <= 30


def test_delays_are_programmable(graph: FakeGraphAPI) -> None:
    graph.delay_next([0.3, 0])
    with httpx.Client(timeout=0.1) as client:
        headers = {"Authorization": "Bearer test-token"}
        url = graph.url + "/v21.0/106540352242922/messages"
        with pytest.raises(httpx.ReadTimeout):
            client.post(url, json=TEXT, headers=headers)
        assert client.post(url, json=TEXT, headers=headers, timeout=30).status_code == 200  # the scripted 0
    graph.fail_next(1, 503, delay=0.3)
    with httpx.Client(timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.post(graph.url + "/v21.0/106540352242922/messages", json=TEXT, headers={"Authorization": "Bearer test-token"})
    # both delayed requests were answered in the end: the first one was accepted, the failure consumed
    wait_for(lambda: len(graph.sent) >= 2, "both delayed requests to be answered")
    assert len(graph.sent) == 2
    assert post(graph, TEXT).status_code == 200
