"""Two WhatsApp numbers on one deployment, end to end: a real `flowkit serve` with a numbers
file, real Redis, the Graph API imitation (which knows only these two numbers, so a send from
any other number fails), `flowkit worker` firing a timeout and `flowkit start` writing first.

Sales runs the pizza and feedback flows, Support the triage, refund and callback flows.
Sales is listed first (the primary number): its sessions keep the bare user id."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from flowkit.channels.whatsapp.payloads import message_payload, text_payload
from flowkit.store import Store, connect
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI, GraphMessage
from tests.runtime.webutil import ROOT, signed, start_serve
from tests.waiting import stop

SALES, SUPPORT, STRANGER = "111000111000", "222000222000", "999000999000"
AGENT_TOKEN = "agent-token-for-number-tests"
NUMBERS = f"""\
numbers:
  "{SALES}": {{name: Sales, flows: [order_pizza, feedback]}}
  "{SUPPORT}": {{name: Support, flows: [support_triage, refund, callback], rate: 40}}
"""
CALLBACK = """\
flow: callback
version: "1"
start: ask_time
triggers: [callback]
timeout: 1h
slots:
  when: {type: text, max_length: 100}
steps:
  ask_time:
    ask: "When should we call you back?"
    input: {type: text, max_length: 100}
    save: when
    timeout: 1s
    on_timeout: gave_up
    next: done
  gave_up:
    say: "Support here: we did not hear back. Write again any time."
    end: cancelled
  done:
    say: "We'll call you {{ when }}."
    end: completed
"""
PIZZA_HELLO = "Let's get you a pizza."
SUPPORT_QUESTION = "What can we help with? 1) billing 2) delivery 3) account 4) other"
_users = itertools.count(1)
T = TypeVar("T")


@dataclass
class Served:
    base: str
    graph: FakeGraphAPI
    log: Path
    store: Store
    env: dict[str, str]
    flows: Path

    def say(self, who: str, text: str, number: str) -> httpx.Response:
        payload = text_payload(who, text, message_id=f"wamid.{who}.{time.monotonic_ns()}", phone_number_id=number)
        body, headers = signed(payload)
        return httpx.post(f"{self.base}/webhook", content=body, headers=headers, timeout=10)

    def wait(self, what: str, probe: Callable[[], T | None], seconds: float = 20) -> T:
        """Poll ``probe`` until it returns something truthy (a condition, with a deadline)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if got := probe():
                return got
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def until_sent(self, who: str, text: str) -> GraphMessage:
        return self.wait(f"{text!r} sent to {who}",
                         lambda: next((m for m in self.graph.to(who) if m.text and text in m.text), None))

    def flowkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        flowkit = Path(sys.executable).with_name("flowkit")
        return subprocess.run([str(flowkit), *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=120)


@dataclass
class _Env:
    """What start_serve asks of a Graph API: its environment (here with the numbers file)."""

    values: dict[str, str]

    def env(self) -> dict[str, str]:
        return dict(self.values)


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    client = connect(redis_url)
    client.flushall()
    tmp = tmp_path_factory.mktemp("numbers")
    flows = tmp / "flows"
    flows.mkdir()
    for name in ("order_pizza", "feedback", "support_triage", "refund"):
        shutil.copy(ROOT / "examples" / "flows" / f"{name}.yaml", flows)
    (flows / "callback.yaml").write_text(CALLBACK)
    numbers = tmp / "numbers.yaml"
    numbers.write_text(NUMBERS)
    log = tmp / "serve.log"
    with FakeGraphAPI(phone_number_ids=[SALES, SUPPORT]) as graph:
        # the numbers file alone says which numbers are ours: WHATSAPP_PHONE_NUMBER_ID is empty
        ours = _Env(graph.env() | {"WHATSAPP_PHONE_NUMBER_ID": "", "FLOWKIT_NUMBERS": str(numbers),
                                   "FLOWKIT_READ_RECEIPTS": "1", "FLOWKIT_AGENT_TOKEN": AGENT_TOKEN})
        env = {**os.environ, **ours.env(), "FLOWKIT_REDIS_URL": redis_url}
        port = free_port()
        proc = start_serve(redis_url, ours, port, log, "--scheduler", "0", flows=str(flows))
        try:
            yield Served(f"http://127.0.0.1:{port}", graph, log, Store(client), env, flows)
        finally:
            stop(proc)
            client.close()


def user() -> str:
    return f"3160{next(_users):07d}"


def test_each_number_runs_its_own_flows_and_replies_from_itself(served: Served) -> None:
    s, ana, bob = served, user(), user()
    assert s.say(ana, "pizza", SALES).status_code == 200
    assert s.say(bob, "support", SUPPORT).status_code == 200
    assert s.until_sent(ana, PIZZA_HELLO).phone_number_id == SALES
    assert s.until_sent(bob, SUPPORT_QUESTION).phone_number_id == SUPPORT
    # each message was marked read by the number it was sent to
    receipts = s.wait("both read receipts", lambda: r if len(r := s.graph.read_receipts_from) >= 2 else None)
    assert {number for number, _ in receipts} == {SALES, SUPPORT}
    assert {number for number, mid in receipts if ana in mid} == {SALES}
    assert s.store.load(ana)["flow"] == "order_pizza"
    assert s.store.load(f"{bob}@{SUPPORT}")["flow"] == "support_triage"


def test_a_number_starts_only_its_own_flows_and_offers_only_them(served: Served) -> None:
    s, who = served, user()
    assert s.say(who, "support", SALES).status_code == 200  # Support's trigger, written to Sales
    offer = s.until_sent(who, "I can help with")
    assert offer.phone_number_id == SALES
    assert offer.text == "Hi! I can help with: feedback, pizza. Send one of these words to start."
    assert s.store.load(who) is None  # nothing started
    assert s.say(who, "pizza", SUPPORT).status_code == 200  # and Sales' trigger, written to Support
    offer = s.wait("Support's offer", lambda: next((m for m in s.graph.to(who) if m.phone_number_id == SUPPORT), None))
    assert offer.text == "Hi! I can help with: callback, refund, help me. Send one of these words to start."
    assert s.store.load(f"{who}@{SUPPORT}") is None


def test_a_message_for_a_number_not_configured_is_skipped_and_nothing_is_stored(served: Served) -> None:
    s, who = served, user()
    r = s.say(who, "pizza", STRANGER)
    assert r.status_code == 200 and r.json()["ignored"] == 1 and r.json()["applied"] == 0
    assert [sid for sid in s.store.iter_session_ids() if who in sid] == []
    # the same user on a number of ours is answered: nothing of the skipped message got through
    assert s.say(who, "pizza", SALES).status_code == 200
    s.until_sent(who, PIZZA_HELLO)
    assert all(m.phone_number_id == SALES for m in s.graph.to(who))
    assert len([h for h in s.store.history(who) if h["event"] == "start"]) == 1


def test_the_same_user_on_both_numbers_has_two_sessions(served: Served) -> None:
    s, who = served, user()
    s.say(who, "pizza", SALES)
    s.say(who, "support", SUPPORT)
    s.until_sent(who, PIZZA_HELLO)
    s.until_sent(who, SUPPORT_QUESTION)
    s.say(who, "2", SUPPORT)  # an answer on Support moves only the Support session
    s.until_sent(who, "What's your order reference?")
    pizza, support = s.store.load(who), s.store.load(f"{who}@{SUPPORT}")
    assert (pizza["flow"], support["flow"]) == ("order_pizza", "support_triage")
    assert pizza["step"] != support["step"]
    by_number = {m.phone_number_id for m in s.graph.to(who) if m.text and "pizza" in m.text.lower()}
    assert by_number == {SALES}
    assert {m.phone_number_id for m in s.graph.to(who) if m.text and "order reference" in m.text} == {SUPPORT}


def test_a_timeout_fired_by_the_worker_replies_from_the_number_the_user_wrote_to(served: Served) -> None:
    s, who = served, user()
    s.say(who, "callback", SUPPORT)
    s.until_sent(who, "When should we call you back?")
    sid = f"{who}@{SUPPORT}"

    def fired() -> GraphMessage | None:
        # the worker's own sender is configured with Sales (the primary number)
        done = s.flowkit("worker", str(s.flows), "--once", "--format", "json")
        assert done.returncode == 0, done.stderr
        return next((m for m in s.graph.to(who) if m.text and "did not hear back" in m.text), None)

    sent = s.wait("the timeout's message", fired, seconds=60)
    assert sent.phone_number_id == SUPPORT
    assert s.store.load(sid)["status"] == "cancelled"


def test_an_agent_reply_leaves_from_the_number_the_user_wrote_to(served: Served) -> None:
    s, who = served, user()
    for said, answer in (("support", SUPPORT_QUESTION), ("other", "How urgent is it"),
                         ("5", "Connecting you with a support agent now.")):
        s.say(who, said, SUPPORT)
        s.until_sent(who, answer)
    sid = f"{who}@{SUPPORT}"
    assert s.store.load(sid)["status"] == "handoff"
    r = httpx.post(f"{s.base}/agent/sessions/{sid}/reply", json={"text": "Hi, this is Ana.", "agent": "ana"},
                   headers={"Authorization": f"Bearer {AGENT_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert s.until_sent(who, "Hi, this is Ana.").phone_number_id == SUPPORT
    assert all(m.phone_number_id == SUPPORT for m in s.graph.to(who))


def test_a_business_initiated_start_writes_from_the_number_asked(served: Served) -> None:
    s, who = served, user()
    done = s.flowkit("start", "refund", "--to", who, "--from", SUPPORT, "--template", "refund_followup",
                     "--flows", str(s.flows), "--format", "json")
    assert done.returncode == 0, done.stderr
    first = s.wait("the start's template", lambda: s.graph.to(who))[0]
    assert first.phone_number_id == SUPPORT and first.type == "template"
    assert s.store.load(f"{who}@{SUPPORT}")["flow"] == "refund" and s.store.load(who) is None

    refused = s.flowkit("start", "refund", "--to", user(), "--from", SALES, "--template", "refund_followup",
                        "--flows", str(s.flows))
    assert refused.returncode == 2
    assert f"number {SALES} (Sales) does not run flow 'refund'" in refused.stderr, refused.stderr
    stranger = s.flowkit("start", "refund", "--to", user(), "--from", STRANGER, "--template", "x",
                         "--flows", str(s.flows))
    assert stranger.returncode == 2 and f"--from {STRANGER} is not one of this deployment's numbers" in stranger.stderr


def test_the_agent_api_starts_a_flow_only_on_a_number_that_runs_it(served: Served) -> None:
    s, who = served, user()

    def start(sid: str) -> httpx.Response:
        return httpx.post(f"{s.base}/agent/sessions/{sid}/start", timeout=10,
                          json={"flow": "refund", "template": {"name": "refund_followup", "language": "en_US"}},
                          headers={"Authorization": f"Bearer {AGENT_TOKEN}"})

    refused = start(who)  # the bare id is the Sales session, and Sales does not run refund
    assert refused.status_code == 400, refused.text
    assert "its number does not run flow 'refund'" in refused.json()["detail"]
    assert s.store.load(who) is None and s.graph.to(who) == []
    started = start(f"{who}@{SUPPORT}")
    assert started.status_code == 200, started.text
    assert s.wait("the template", lambda: s.graph.to(who))[0].phone_number_id == SUPPORT


def test_a_number_change_ends_the_session_on_the_number_it_was_reported_to(served: Served) -> None:
    s, who = served, user()
    s.say(who, "pizza", SALES)
    s.say(who, "support", SUPPORT)
    s.until_sent(who, PIZZA_HELLO)
    s.until_sent(who, SUPPORT_QUESTION)
    payload = json.loads((ROOT / "tests" / "data" / "whatsapp" / "meta_docs__system_user_changed_number.json")
                         .read_text(encoding="utf-8"))
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = SUPPORT
    value["messages"][0].update({"from": who, "id": f"wamid.changed.{who}"})
    body, headers = signed(payload)
    assert httpx.post(f"{s.base}/webhook", content=body, headers=headers, timeout=10).status_code == 200
    ended = s.wait("the Support session ended", lambda: (st := s.store.load(f"{who}@{SUPPORT}")) and
                   st["status"] == "failed" and st)
    assert ended["flow"] == "support_triage"
    assert s.store.load(who)["status"] == "waiting_input"  # the Sales session was not told: it goes on


def test_a_reaction_to_one_number_joins_that_numbers_transcript(served: Served) -> None:
    s, who = served, user()
    s.say(who, "support", SUPPORT)
    question = s.until_sent(who, SUPPORT_QUESTION)
    payload = message_payload(who, "reaction", {"message_id": question.id, "emoji": "\U0001f44d"},
                              message_id=f"wamid.reaction.{who}", phone_number_id=SUPPORT)
    body, headers = signed(payload)
    r = httpx.post(f"{s.base}/webhook", content=body, headers=headers, timeout=10)
    assert r.status_code == 200 and r.json()["ignored"] == 1
    s.wait("the reaction in the Support transcript", lambda: [
        e for e in s.store.transcript(f"{who}@{SUPPORT}") if e.get("kind") == "reaction"])
    assert s.store.transcript(who) == []  # not the Sales conversation's
