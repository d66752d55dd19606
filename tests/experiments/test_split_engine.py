"""The engine's side of experiments: which variant a session gets (pure, sticky, in the
proportions of the weights), where it is recorded, and that it survives restarts,
sub-flows, changed weights and the state's JSON form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from flowkit.engine import Command, Start, State, UserMessage, check_slots, step
from flowkit.engine.experiments import EXPERIMENTS, assign, bucket
from flowkit.errors import StateValidationError
from flowkit.flow import Flow, SplitStep
from tests.engine.helpers import T0, Session, flow, flows_of

SPLIT = """\
flow: exp
start: ask_name
slots:
  name: text
  size: text
steps:
  ask_name:
    ask: "Name?"
    input: text
    save: name
    next: pick
  pick:
    split:
      - {variant: short, weight: %d, goto: ask_a}
      - {variant: long, weight: %d, goto: ask_b}
  ask_a:
    ask: "Size?"
    input: text
    save: size
    next: bye
  ask_b:
    ask: "Which size would you like (S, M, L)?"
    input: text
    save: size
    next: bye
  bye:
    end: completed
"""


def split_flow(short: int = 50, long: int = 50) -> Flow:
    return flow(SPLIT % (short, long))


def variant_of(sid: str, f: Flow) -> str:
    s = Session(f, sid=sid)
    s.send(Start(flow="exp"))
    t = s.send("Ana")
    return str(t.state.slots[EXPERIMENTS]["pick"])


def test_the_variant_goes_where_it_says_and_is_recorded_in_state() -> None:
    f = split_flow()
    s = Session(f, sid="15550001")
    s.send(Start(flow="exp"))
    t = s.send("Ana")
    chosen = t.state.slots[EXPERIMENTS]["pick"]
    assert chosen in ("short", "long")
    assert t.state.step == ("ask_a" if chosen == "short" else "ask_b")
    assert t.record is not None and t.record.path == ("pick", t.state.step)
    assert State.from_json(t.state.to_json()).slots[EXPERIMENTS] == {"pick": chosen}
    assert json.loads(t.record.why or "{}")["splits"] == [{"step": "pick", "variant": chosen}]  # and in history
    t = s.send("M")
    assert t.state.status == "completed" and t.state.slots[EXPERIMENTS] == {"pick": chosen}


@pytest.mark.parametrize(("short", "long", "share"), [(50, 50, 0.5), (1, 3, 0.25), (9, 1, 0.9)])
def test_variants_come_in_the_proportions_of_the_weights(short: int, long: int, share: float) -> None:
    st = split_flow(short, long).steps["pick"]
    assert isinstance(st, SplitStep)
    n = 4000
    counts = Counter(assign(f"1555{i:07d}", "exp", "pick", st.split).name for i in range(n))
    # a binomial share of 4000 lies within 4 standard deviations (<= 0.032) of its mean
    assert abs(counts["short"] / n - share) < 0.032, counts


def test_the_assignment_is_the_same_in_another_process() -> None:
    """Python's own hash() is salted per process; the assignment must not be."""
    code = "from flowkit.engine.experiments import bucket; print(repr(bucket('15550001', 'exp', 'pick')))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert float(out.stdout) == bucket("15550001", "exp", "pick")
    assert bucket("15550001", "exp", "pick") != bucket("15550001", "exp", "other_split")


def test_a_user_gets_the_same_variant_after_restarting_and_after_starting_again() -> None:
    f = split_flow()
    for sid in (f"1555000{i}" for i in range(6)):
        s = Session(f, sid=sid)
        s.send(Start(flow="exp"))
        first = s.send("Ana").state.slots[EXPERIMENTS]["pick"]
        s.send(Command(name="restart"))
        assert s.send("Ana").state.slots[EXPERIMENTS]["pick"] == first
        s.send("M")
        assert s.state is not None and s.state.status == "completed"
        s.send(Start(flow="exp"))  # a new journey of the same user (a fresh state)
        assert s.send("Bea").state.slots[EXPERIMENTS]["pick"] == first


def test_a_recorded_variant_wins_over_a_new_assignment() -> None:
    """Sticky even if the weights changed: a session keeps the variant it was first given."""
    f = split_flow()
    sid = next(f"1555{i:07d}" for i in range(100) if variant_of(f"1555{i:07d}", f) == "short")
    s = Session(f, sid=sid)
    s.send(Start(flow="exp"))
    assert s.state is not None
    s.state = s.state.evolve(slots={**s.state.slots, EXPERIMENTS: {"pick": "long"}})
    t = s.send("Ana")
    assert t.state.step == "ask_b" and t.state.slots[EXPERIMENTS] == {"pick": "long"}


def test_a_recorded_variant_that_no_longer_exists_is_reassigned() -> None:
    f = split_flow()
    s = Session(f, sid="15550001")
    s.send(Start(flow="exp"))
    assert s.state is not None
    s.state = s.state.evolve(slots={**s.state.slots, EXPERIMENTS: {"pick": "medium", "other": "x"}})
    t = s.send("Ana")
    assert t.state.slots[EXPERIMENTS]["pick"] in ("short", "long")
    assert t.state.slots[EXPERIMENTS]["other"] == "x"  # other splits' variants are kept


def test_a_split_inside_a_sub_flow_is_recorded_under_its_qualified_name_and_kept_on_return() -> None:
    child = flow("""\
        flow: child
        start: pick
        steps:
          pick:
            split:
              - {variant: a, weight: 1, goto: ask}
              - {variant: b, weight: 1, goto: ask}
          ask:
            ask: "Anything?"
            input: text
            next: done
          done:
            end: completed
        """)
    root = flow("""\
        flow: root
        start: sub
        steps:
          sub:
            flow: child
            next: bye
          bye:
            end: completed
        """)
    s = Session(root, flows_of(root, child), sid="15550042")
    t = s.send(Start(flow="root"))
    chosen = t.state.slots[EXPERIMENTS]["sub/pick"]
    assert t.state.step == "sub/ask"
    t = s.send("nothing")
    assert t.state.status == "completed" and t.state.slots[EXPERIMENTS] == {"sub/pick": chosen}


def test_the_experiments_slot_is_checked_like_the_profile() -> None:
    check_slots({EXPERIMENTS: {"pick": "short"}}, {}, where="state")
    for bad in ("short", {"pick": 3}, [["pick", "short"]]):
        with pytest.raises(StateValidationError, match="slot 'experiments' must map split steps to variant names"):
            check_slots({EXPERIMENTS: bad}, {}, where="state")


def test_a_malformed_experiments_slot_fails_the_check_unless_a_split_rewrites_it() -> None:
    f = split_flow()
    t = step(f, None, Start(flow="exp"), T0, session_id="15550001")
    broken = t.state.evolve(slots={EXPERIMENTS: "short"})
    # the split records a proper mapping in its place (what was there named no variant)
    t2 = step(f, broken, UserMessage(text="Ana"), T0 + 1000)
    assert t2.state.slots[EXPERIMENTS] == {"pick": variant_of("15550001", f)}
    # a state that keeps the malformed value is refused with the slot's name
    finished = t2.state.evolve(slots={**t2.state.slots, EXPERIMENTS: "short"})
    with pytest.raises(StateValidationError, match="experiments"):
        step(f, finished, UserMessage(text="M"), T0 + 2000)
