"""The review's symptoms end to end: hostile answers through the real runtime on a real Redis.

Before: an answer whose ``set`` evaluated to NaN or infinity made every commit of the session
fail (the store refuses a state it cannot write as JSON), so every later answer was an error
too; a backtracking slot pattern held the whole process for seconds. Now the session fails
visibly once (``engine_error``), or the answer is re-prompted, and the user can go on.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from flowkit.engine import UserMessage
from flowkit.flow import parse_flow
from flowkit.runtime import RecordingChannel, Runtime

FLOW = parse_flow(textwrap.dedent("""
    flow: calc
    start: code
    slots:
      code: {type: text, pattern: "([A-Za-z]+)+"}
      raw: {type: text}
      x: {type: number}
    steps:
      code:
        ask: Your code?
        input: {type: text}
        save: code
        next: raw
      raw:
        ask: A number?
        input: {type: text}
        save: raw
        next: compute
      compute:
        set: {x: "float(raw)"}
        next: done
      done:
        say: "Got {{ x }}."
        end: completed
"""))


@pytest.fixture
def runtime(store: Any) -> Runtime:
    now = iter(range(1_790_000_000_000, 1_790_000_000_000 + 10**9, 1000))
    return Runtime(store, {"calc": FLOW}, channel=RecordingChannel(), default_flow="calc", clock=lambda: next(now))


@pytest.mark.timeout(120)
def test_a_backtracking_slot_pattern_is_answered_at_once(runtime: Runtime, store: Any) -> None:
    assert runtime.handle("u1", UserMessage(text="hi", message_id="m0")).status == "applied"
    start = time.thread_time()  # CPU time of this thread: the bound is about work done, and a loaded machine's other processes do not count
    out = runtime.handle("u1", UserMessage(text="a" * 25 + "!", message_id="m1"))  # 8.5 s with Python's re
    assert time.thread_time() - start < 0.5
    assert out.status == "applied" and store.load("u1")["step"] == "code"
    assert runtime.handle("u1", UserMessage(text="abc", message_id="m2")).status == "applied"
    assert store.load("u1")["step"] == "raw"


@pytest.mark.parametrize("text", ["nan", "inf", "-1e309"])
def test_a_non_finite_number_fails_the_session_once_and_the_user_goes_on(runtime: Runtime, store: Any,
                                                                         text: str) -> None:
    for i, answer in enumerate(["hi", "abc", text]):
        out = runtime.handle("u1", UserMessage(text=answer, message_id=f"m{i}"))
        assert out.status == "applied", out
    state = store.load("u1")
    assert state["status"] == "failed" and "x" not in state["slots"]
    last = store.history("u1")[-1]
    assert last["error"].startswith("engine_error") and "finite" in last["error"]
    # the next message starts afresh instead of failing again (the 500 loop)
    out = runtime.handle("u1", UserMessage(text="hello again", message_id="m9"))
    assert out.status == "applied", out
    assert store.load("u1")["status"] == "waiting_input"
