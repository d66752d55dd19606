"""Hand-off and business-initiated starts end to end: a real `flowkit serve` subprocess, real
Redis, the Graph API imitation, and a real HTTP server as the agents' webhook receiver."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.runtime.agent_outbox import HEADER, verify
from flowkit.store import Store, connect
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI, GraphMessage
from tests.runtime.webutil import ROOT, signed, start_serve
from tests.waiting import DEADLINE, stop

AGENT_TOKEN = "agent-token-for-tests"
HOOK_SECRET = "agent-webhook-secret-for-tests"
_users = itertools.count(1)
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], log: Path, seconds: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy (a condition, with a deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


class Receiver:
    """The agents' side: a real HTTP server that records what flowkit posts to it."""

    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str]]] = []
        self.fail_next = 0  # answer 500 to this many posts first (a receiver having a bad moment)
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    refuse = outer.fail_next > 0
                    outer.fail_next -= refuse
                    if not refuse:
                        outer.posts.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(500 if refuse else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/flowkit-events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, sid: str) -> list[dict[str, Any]]:
        return [json.loads(b) for b, _ in list(self.posts) if json.loads(b).get("session_id") == sid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Env:
    def __init__(self, graph: FakeGraphAPI, receiver: Receiver) -> None:
        self.graph, self.receiver = graph, receiver

    def env(self) -> dict[str, str]:
        return dict(self.graph.env(), FLOWKIT_AGENT_TOKEN=AGENT_TOKEN, FLOWKIT_AGENT_WEBHOOK=self.receiver.url,
                    FLOWKIT_AGENT_WEBHOOK_SECRET=HOOK_SECRET)


@dataclass
class Served:
    base: str
    graph: FakeGraphAPI
    receiver: Receiver
    log: Path
    store: Store
    redis_url: str

    def say(self, who: str, text: str) -> None:
        body, headers = signed(text_payload(who, text, message_id=f"wamid.{who}.{time.monotonic_ns()}"))
        r = httpx.post(f"{self.base}/webhook", content=body, headers=headers, timeout=10)
        assert r.status_code == 200, r.text

    def agent(self, method: str, path: str, body: Any = None, token: str | None = AGENT_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.request(method, f"{self.base}{path}", json=body, headers=headers, timeout=10)

    def texts(self, who: str) -> list[str | None]:
        return [m.text for m in self.graph.to(who)]

    def until_sent(self, who: str, text: str) -> list[GraphMessage]:
        return wait_for(f"{text!r} sent to {who}",
                        lambda: self.graph.to(who) if any(m.text == text for m in self.graph.to(who)) else None,
                        self.log)


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    client = connect(redis_url)
    client.flushall()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    receiver = Receiver()
    with FakeGraphAPI() as graph:
        port = free_port()
        proc = start_serve(redis_url, _Env(graph, receiver), port, log)
        try:
            yield Served(f"http://127.0.0.1:{port}", graph, receiver, log, Store(client), redis_url)
        finally:
            stop(proc)
            receiver.close()
            client.close()


def user() -> str:
    return f"3190{next(_users):07d}"


def to_agent(s: Served, who: str) -> None:
    s.say(who, "support")
    s.until_sent(who, "What can we help with? 1) billing 2) delivery 3) account 4) other")
    s.say(who, "other")
    s.until_sent(who, "How urgent is it, from 1 (not really) to 5 (very)?")
    s.say(who, "5")
    s.until_sent(who, "Connecting you with a support agent now.")


def test_a_handoff_pauses_the_bot_forwards_messages_and_an_agent_answers_and_releases(served: Served) -> None:
    s, who = served, user()
    to_agent(s, who)
    assert s.store.load(who)["status"] == "handoff"
    handoff = wait_for("the hand-off event", lambda: s.receiver.events(who), s.log)
    assert handoff[0]["type"] == "handoff" and handoff[0]["flow"] == "support_triage"

    s.say(who, "hello? is anyone there")
    s.say(who, "my order never came")
    events = wait_for("both messages forwarded", lambda: e if len(e := s.receiver.events(who)) >= 3 else None, s.log)
    assert [e["type"] for e in events] == ["handoff", "message", "message"]
    assert [e["message"]["text"] for e in events[1:]] == ["hello? is anyone there", "my order never came"]
    for body, headers in s.receiver.posts:  # every post is signed like Meta signs its webhooks
        assert headers[HEADER.lower()].startswith("sha256=") and verify(body, headers[HEADER.lower()], HOOK_SECRET)
        assert not verify(body, headers[HEADER.lower()], "another secret")
    history = s.store.history(who)
    held = [h for h in history if h["status"] == "handoff" and h["event"] == "message"]
    assert len(held) >= 2 and all(h["to_step"] == "to_agent" for h in held)  # recorded for the transcript

    # the queue: who waits, since when, and what they said last
    queue = s.agent("GET", "/agent/sessions")
    assert queue.status_code == 200, queue.text
    mine = [q for q in queue.json() if q["session_id"] == who]
    assert mine and mine[0]["flow"] == "support_triage" and mine[0]["last_message"] == "my order never came"
    assert mine[0]["since"].endswith("Z") and mine[0]["waiting_s"] >= 0

    r = s.agent("POST", f"/agent/sessions/{who}/reply", {"text": "Hi, this is Ana. Let me check.", "agent": "ana"})
    assert r.status_code == 200, r.text
    sent = s.until_sent(who, "Hi, this is Ana. Let me check.")
    # the bot said nothing to the two messages: the agent's reply follows the hand-off message
    assert [m.text for m in sent][-2:] == ["Connecting you with a support agent now.", "Hi, this is Ana. Let me check."]
    metrics = httpx.get(f"{s.base}/metrics", timeout=10).text
    assert 'flowkit_handoffs_total{flow="support_triage"}' in metrics
    assert 'flowkit_handoff_first_reply_seconds_count{flow="support_triage"} 1.0' in metrics
    assert 'flowkit_agent_webhook_posts_total{outcome="delivered"}' in metrics
    reply_record = s.store.history(who)[-1]
    assert reply_record["actor"] == "agent" and json.loads(reply_record["input"])["args"]["agent"] == "ana"
    # the transcript reads as the conversation went: the two messages in, the person's reply out
    said = wait_for("the agent's reply in the transcript", lambda: [
        e for e in s.store.transcript(who) if e.get("dir") == "out" and e.get("actor") == "agent"], s.log)
    assert [e.get("text") for e in said] == ["Hi, this is Ana. Let me check."] and said[0].get("wamid"), s.store.transcript(who)

    r = s.agent("POST", f"/agent/sessions/{who}/release", {"to_step": "ask_details"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "waiting_input" and r.json()["step"] == "ask_details"
    s.until_sent(who, "Tell us what happened in a few words.")
    s.say(who, "the parcel is lost")  # the bot answers again
    wait_for("the bot's next question", lambda: any((t or "").startswith("Ticket ") for t in s.texts(who)), s.log)
    assert who not in [q["session_id"] for q in s.agent("GET", "/agent/sessions").json()]


def test_agent_endpoints_need_the_token(served: Served) -> None:
    s = served
    for token in (None, "wrong", AGENT_TOKEN + "x", AGENT_TOKEN[:-1]):
        r = s.agent("GET", "/agent/sessions", token=token)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = s.agent("POST", "/agent/sessions/31900000000/reply", {"text": "hi"}, token=token)
        assert r.status_code == 401


def test_bad_agent_requests_get_clear_errors_and_change_nothing(served: Served) -> None:
    s, who = served, user()
    r = s.agent("POST", f"/agent/sessions/{who}/reply", {"text": "hi"})
    assert r.status_code == 404 and "no session" in r.json()["detail"]
    s.say(who, "support")
    s.until_sent(who, "What can we help with? 1) billing 2) delivery 3) account 4) other")
    before = s.store.load(who)
    r = s.agent("POST", f"/agent/sessions/{who}/reply", {"text": "hi"})
    assert r.status_code == 409 and "not in hand-off" in r.json()["detail"]
    r = s.agent("POST", f"/agent/sessions/{who}/release", {})
    assert r.status_code == 409
    assert s.store.load(who) == before  # refused: nothing changed, the bot still runs the session
    s.say(who, "other")
    s.say(who, "5")
    s.until_sent(who, "Connecting you with a support agent now.")
    for body in ({"text": ""}, {"text": 5}, {}, {"text": "x" * 5000}):
        r = s.agent("POST", f"/agent/sessions/{who}/reply", body)
        assert r.status_code == 400, r.text
    r = httpx.post(f"{s.base}/agent/sessions/{who}/reply", content=b"not json",
                   headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = s.agent("POST", f"/agent/sessions/{who}/release", {"to_step": "nowhere"})
    assert r.status_code == 400 and "nowhere" in r.json()["detail"]
    assert s.store.load(who)["status"] == "handoff"
    r = s.agent("POST", f"/agent/sessions/{who}/release", {})  # no step: the session ends
    assert r.status_code == 200 and r.json()["status"] == "completed"


def test_a_business_start_outside_the_window_needs_a_template(served: Served) -> None:
    s, who = served, user()  # never wrote: no window
    r = s.agent("POST", f"/agent/sessions/{who}/start", {"flow": "support_triage"})
    assert r.status_code == 409 and "a template is needed" in r.json()["detail"]
    assert s.store.load(who) is None and s.graph.to(who) == []

    env = dict(os.environ, FLOWKIT_REDIS_URL=s.redis_url, FLOWKIT_FLOWS="examples/flows", **s.graph.env())
    cli = subprocess.run([str(Path(sys.executable).with_name("flowkit")), "start", "support_triage", "--to", who],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "a template is needed" in cli.stderr, cli.stderr

    body = {"flow": "support_triage", "key": f"campaign-1-{who}",
            "template": {"name": "support_followup", "language": "en_US", "params": {"1": "Ana"}}}
    r = s.agent("POST", f"/agent/sessions/{who}/start", body)
    assert r.status_code == 200 and r.json()["status"] == "started", r.text
    sent = wait_for("the template", lambda: s.graph.to(who), s.log)
    assert sent[0].type == "template" and sent[0].payload["template"]["name"] == "support_followup"
    assert s.store.load(who)["step"] == "ask_topic"
    again = s.agent("POST", f"/agent/sessions/{who}/start", body)
    assert again.status_code == 200 and again.json()["status"] == "skipped"
    assert [h["event"] for h in s.store.history(who)] == ["start"]
