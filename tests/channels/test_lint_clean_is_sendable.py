"""A flow that `flowkit lint` passes without errors or warnings never produces a message the
Graph API refuses for size or shape.

Hypothesis writes flows with messages near and over every limit (texts, bodies, buttons,
lists, headers, footers, media, cta buttons, choice options of every length, templated
texts bounded by a slot's max_length). The ones lint accepts are run through the real
engine (each question answered wrongly once, for the re-prompt, then rightly); every
reply goes through the real WhatsApp channel, sender and builders over HTTP to the Graph
API imitation, which must accept every one.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowkit.channels.whatsapp import WhatsAppSender
from flowkit.engine import Reply, Start, UserMessage, step
from flowkit.errors import FlowError
from flowkit.flow import Flow, flow_from_dict
from flowkit.flow.validate import flow_warnings
from flowkit.runtime.channel import WhatsAppChannel
from flowkit.testing.fake_graph import FakeGraphAPI

TO = "15550001111"
T0 = 1_790_000_000_000
ANSWER_LEN = 40  # what the first question's answer (slot `who`) is filled with: its max_length

# Lengths around every limit: 20 (titles), 24 (rows), 60 (header/footer), 72, 256, 1024, 4096.
_EDGES = [1, 5, 19, 20, 21, 23, 24, 25, 59, 60, 61, 72, 73, 200, 257, 1000, 1024, 1025, 4000, 4096, 4097]


@st.composite
def text(draw: st.DrawFn, *, template: bool = True) -> str:
    n = draw(st.sampled_from(_EDGES))
    body = draw(st.sampled_from("abcxyz")) * n
    if template and draw(st.booleans()):
        body = body[: max(1, n - 12)] + "{{ who }}"
    return body


@st.composite
def label(draw: st.DrawFn) -> str:
    # short labels that may repeat, or long ones near the limits
    return draw(st.one_of(st.sampled_from(["Yes", "No", "Maybe", "Later"]),
                          st.builds(lambda c, n: c * n, st.sampled_from("pqr"), st.sampled_from(_EDGES[:9]))))


@st.composite
def message(draw: st.DrawFn) -> dict[str, Any]:
    m: dict[str, Any] = {"text": draw(text())}
    shape = draw(st.sampled_from(["plain", "buttons", "list", "cta", "media"]))
    if shape == "buttons":
        m["buttons"] = [{"id": draw(label()), "title": draw(label())} for _ in range(draw(st.integers(1, 3)))]
    elif shape == "list":
        rows = [{"id": draw(label()), "title": draw(label())} for _ in range(draw(st.integers(1, 10)))]
        if draw(st.booleans()):
            rows[0]["description"] = "d" * draw(st.sampled_from([10, 72, 73]))
        m["list"] = {"button": draw(label()), "rows": rows}
    elif shape == "cta":
        m["cta"] = {"text": draw(label()), "url": "https://example.com/t/{{ who }}"}
    elif shape == "media":
        kind = draw(st.sampled_from(["image", "video", "document", "audio", "sticker"]))
        m["media"] = {"type": kind, "url": f"https://example.com/f.{kind}"} if draw(st.booleans()) else {"type": kind, "id": "4490709327"}
        if kind in ("audio", "sticker") and draw(st.booleans()):
            del m["text"]
    if draw(st.booleans()):
        m["header"] = draw(text(template=False))[:draw(st.sampled_from([10, 60, 61]))]
    if draw(st.booleans()):
        m["footer"] = "f" * draw(st.sampled_from([10, 60, 61]))
    return m


@st.composite
def question(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "yes_no", "choice", "location"]))
    msg: Any = draw(message()) if draw(st.booleans()) else draw(text())
    step_: dict[str, Any] = {"ask": msg}
    if kind == "choice":
        n = draw(st.integers(1, 12))
        size = draw(st.sampled_from([3, 20, 21, 24, 25, 200, 201]))
        step_["input"] = {"type": "choice", "options": [f"{i}" + "o" * (size - len(str(i))) for i in range(n)]}
    else:
        step_["input"] = kind
    return step_


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    steps: dict[str, Any] = {"first": {"ask": "Your name?", "input": "text", "save": "who", "next": "s0"}}
    n = draw(st.integers(1, 4))
    for i in range(n):
        body = draw(question()) if draw(st.booleans()) else {"say": draw(st.one_of(text(), message()))}
        steps[f"s{i}"] = {**body, "next": f"s{i + 1}" if i + 1 < n else "done"}
    steps["done"] = {"end": "completed"}
    return {"flow": "gen", "start": "first", "slots": {"who": {"type": "text", "max_length": ANSWER_LEN}},
            "steps": steps}


def _answers(flow: Flow, step_name: str) -> list[UserMessage]:
    """A wrong answer (so the re-prompt is sent) and a right one for the step's question."""
    spec = flow.steps[step_name].input  # type: ignore[attr-defined]
    if spec.type == "location":
        return [UserMessage(text="here", message_id="w"),
                UserMessage(type="location", location={"latitude": 1.0, "longitude": 2.0}, message_id="r")]
    if spec.type == "yes_no":
        return [UserMessage(text="perhaps", message_id="w"), UserMessage(text="yes", message_id="r")]
    if spec.type == "choice":
        return [UserMessage(text="none of these", message_id="w"), UserMessage(text="1", message_id="r")]
    return [UserMessage(text="w" * ANSWER_LEN, message_id="r")]


def _replies(flow: Flow) -> list[Reply]:
    """Every reply of one run through the flow."""
    now = T0
    t = step(flow, None, Start(flow="gen", message_id="start"), now, session_id="s")
    out = [e for e in t.effects if isinstance(e, Reply)]
    state = t.state
    while not state.terminal:
        for answer in _answers(flow, state.step):
            now += 1000
            t = step(flow, state, answer, now)
            out += [e for e in t.effects if isinstance(e, Reply)]
            state = t.state
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=flows())
def test_every_reply_of_a_lint_clean_flow_is_accepted(graph: FakeGraphAPI, data: dict[str, Any]) -> None:
    try:
        flow = flow_from_dict(data)
    except FlowError:
        assume(False)  # lint refused it: not a flow that could run
        return
    assume(flow_warnings(flow) == [])
    graph.reset()
    replies = _replies(flow)
    with WhatsAppSender(config=graph.config(), max_attempts=1) as sender:
        channel = WhatsAppChannel(sender)
        for reply in replies:
            channel.send(TO, reply)  # raises GraphAPIError (or ChannelError) if refused
    assert len(graph.to(TO)) == len(replies)
