"""Hand-off to a person in the engine: held (live, silent), agent replies, release, idle timeout."""

from __future__ import annotations

import pytest

from flowkit.engine import Command, Reply, ServiceResult, Start, Timeout, UserMessage, effect_from_dict
from flowkit.engine.transition import schedule
from flowkit.errors import EngineError
from flowkit.errors import FlowError as FlowLoadError

from .helpers import Session, flow

SUPPORT = """
flow: help
start: ask
timeout: 30m
handoff: {timeout: 2h, on_timeout: back}
steps:
  ask:
    ask: "Yes or no?"
    input: yes_no
    save: ok
    next: [{if: "ok", goto: agent}, {goto: done}]
  agent:
    say: "A person will answer you here."
    end: handoff
  back:
    say: "Nobody could answer in time, sorry. Anything else?"
    next: ask
  done:
    say: "Bye"
    end: completed
slots:
  ok: bool
"""


def held() -> Session:
    s = Session(flow(SUPPORT))
    s.send(Start(flow="help"))
    t = s.send("yes")
    assert t.state.status == "handoff" and not t.state.terminal
    assert t.state.pending is not None and t.state.pending["wait"] == "agent"
    assert s.texts(t) == ["A person will answer you here."]
    return s


def test_end_handoff_holds_the_session_and_the_bot_stays_silent() -> None:
    s = held()
    for text in ("hello?", "cancel", "restart", "help"):  # not even the commands: people answer
        t = s.send(text)
        assert t.changed and t.record is not None
        assert t.record.event == "message" and t.record.status == "handoff" and t.record.actor == "runtime"
        assert '"text"' in (t.record.input or "") and s.texts(t) == []
        assert t.state.status == "handoff"


def test_agent_reply_is_a_reply_recorded_as_the_agent() -> None:
    s = held()
    t = s.send(Command(name="agent_reply", args={"text": "Hi, Ana here", "agent": "ana"}, actor="agent"))
    assert s.texts(t) == ["Hi, Ana here"]
    assert t.record is not None and t.record.event == "command" and t.record.actor == "agent"
    assert "ana" in (t.record.input or "")
    assert t.state.status == "handoff"


@pytest.mark.parametrize("args", [{}, {"text": ""}, {"text": "  "}, {"text": 3}, {"text": "x" * 4097}])
def test_bad_agent_reply_is_refused_with_the_reason(args: dict[str, object]) -> None:
    s = held()
    with pytest.raises(EngineError, match="text"):
        s.send(Command(name="agent_reply", args=args, actor="agent"))


def test_release_to_a_step_resumes_the_bot_there() -> None:
    s = held()
    t = s.send(Command(name="release", args={"to_step": "ask"}, actor="agent"))
    assert t.record is not None and t.record.event == "command" and t.state.status == "waiting_input"
    assert s.texts(t) == ["Yes or no?"]
    t = s.send("no")
    assert t.state.status == "completed" and s.texts(t) == ["Bye"]


def test_release_without_a_step_ends_the_session_completed() -> None:
    s = held()
    t = s.send(Command(name="release", actor="agent"))
    assert t.state.status == "completed" and t.state.terminal and s.texts(t) == []


def test_release_to_an_unknown_step_names_the_steps() -> None:
    s = held()
    with pytest.raises(EngineError, match="no step 'nowhere'.*ask, back, done"):
        s.send(Command(name="release", args={"to_step": "nowhere"}, actor="agent"))


def test_agent_commands_need_a_held_session() -> None:
    s = Session(flow(SUPPORT))
    s.send(Start(flow="help"))
    for name in ("agent_reply", "release"):
        with pytest.raises(EngineError, match="not in hand-off"):
            s.send(Command(name=name, args={"text": "hi"}, actor="agent"))


def test_handoff_command_holds_a_live_session_where_it_is() -> None:
    s = Session(flow(SUPPORT))
    s.send(Start(flow="help"))
    t = s.send(Command(name="handoff", args={"reason": "asked for a person"}, actor="agent"))
    assert t.state.status == "handoff" and t.state.step == "ask"
    assert t.state.pending is not None and t.state.pending["reason"] == "asked for a person"
    assert not s.send(Command(name="handoff", actor="agent")).changed  # already held: nothing changes


def test_handoff_command_on_an_ended_session_is_refused() -> None:
    s = Session(flow(SUPPORT))
    s.send(Start(flow="help"))
    s.send("no")
    with pytest.raises(EngineError, match="has ended"):
        s.send(Command(name="handoff", actor="agent"))


def test_idle_handoff_times_out_to_the_configured_step() -> None:
    s = held()
    s.send("anyone?", dt_ms=60_000)  # activity restarts the idle clock
    deadline = s.state.pending["deadline"]  # type: ignore[index,union-attr]
    assert deadline == s.now + 2 * 3600 * 1000
    # the flow's 30m inactivity timeout does not apply to a session held by people
    assert schedule(s.state.pending, s.root, s.now).at == deadline  # type: ignore[union-attr]
    assert not s.send(Timeout(), dt_ms=3600 * 1000).changed
    t = s.send(Timeout(), dt_ms=3600 * 1000)
    assert t.record is not None and t.record.event == "timeout" and t.record.error == "handoff_timeout"
    assert t.state.status == "waiting_input" and t.state.step == "ask"
    assert s.texts(t) == ["Nobody could answer in time, sorry. Anything else?", "Yes or no?"]


def test_without_a_policy_a_handoff_has_no_deadline_and_a_stale_result_changes_nothing() -> None:
    # (without the policy, step `back` is unreachable: lint would say so)
    f = flow(SUPPORT.replace("handoff: {timeout: 2h, on_timeout: back}\n", ""), validate=False)
    s = Session(f)
    s.send(Start(flow="help"))
    t = s.send("yes")
    assert t.state.pending is not None and t.state.pending["deadline"] is None
    assert schedule(t.state.pending, f, s.now).reason == "none"
    assert not s.send(Timeout(), dt_ms=10 * 86400 * 1000).changed
    assert not s.send(ServiceResult(call_id="x", ok=True, value=1)).changed
    assert not s.send(UserMessage(type="welcome", message_id="w")).changed


def test_a_start_while_held_is_refused() -> None:
    s = held()
    with pytest.raises(EngineError, match="still in flow"):
        s.send(Start(flow="help"))


def test_policy_round_trips_and_is_validated() -> None:
    f = flow(SUPPORT)
    assert f.handoff is not None and f.handoff.timeout == 7200 and f.handoff.on_timeout == "back"
    assert f.to_dict()["handoff"] == {"timeout": "2h", "on_timeout": "back"}
    with pytest.raises(FlowLoadError, match="handoff.on_timeout"):
        flow(SUPPORT.replace("on_timeout: back", "on_timeout: bak"))
    with pytest.raises(FlowLoadError, match="handoff"):
        flow(SUPPORT.replace("handoff: {timeout: 2h, on_timeout: back}", "handoff: {timeout: 2h}"))
    with pytest.raises(FlowLoadError, match="handoff.timeout"):
        flow(SUPPORT.replace("timeout: 2h,", "timeout: soon,"))


def test_agent_reply_effect_is_plain_text_said_by_the_agent() -> None:
    s = held()
    t = s.send(Command(name="agent_reply", args={"text": "ok"}, actor="agent"))
    assert [e for e in t.effects if isinstance(e, Reply)] == [Reply(text="ok", actor="agent")]
    # (the outbox round trip keeps who said it, for the transcript)
    assert effect_from_dict(Reply(text="ok", actor="agent").to_dict()) == Reply(text="ok", actor="agent")
    assert "actor" not in Reply(text="ok").to_dict()


def test_a_migration_re_pins_a_held_session_and_leaves_it_with_people() -> None:
    s = held()
    v2 = flow(SUPPORT.replace("flow: help", "flow: help\nversion: '2'"))
    t = s.send(Command(name="migrate", args={"step": "ask"}, actor="admin"), root=v2)
    assert t.state.flow_version == "2" and t.state.status == "handoff" and s.texts(t) == []
    assert t.state.pending is not None and t.state.pending["wait"] == "agent"


NESTED_ROOT = """
flow: desk
start: ask
handoff: {timeout: 2h, on_timeout: back}
steps:
  ask:
    flow: triage
    next: done
  back:
    say: "Nobody could answer in time, sorry."
    end: completed
  done:
    say: "Bye"
    end: completed
"""
NESTED_CHILD = """
flow: triage
start: q
steps:
  q:
    ask: "Need a person?"
    input: yes_no
    save: ok
    next: [{if: "ok", goto: agent}, {goto: fine}]
  agent:
    say: "A person will answer you here."
    end: handoff
  fine:
    end: completed
slots:
  ok: bool
"""


def test_a_handoff_inside_a_sub_flow_times_out_along_an_edge_of_the_expanded_graph() -> None:
    from flowkit.history.flowset import FlowSet

    root, child = flow(NESTED_ROOT), flow(NESTED_CHILD)
    s = Session(root, {"desk": root, "triage": child})
    s.send(Start(flow="desk"))
    t = s.send("yes")
    assert t.state.status == "handoff"
    t = s.send(Timeout(), dt_ms=2 * 3600 * 1000)
    assert t.record is not None and t.record.error == "handoff_timeout" and t.state.status == "completed"
    moves = list(zip((t.record.from_step, *t.record.path), t.record.path, strict=False))
    edges = FlowSet([root, child]).graph("desk").edges
    assert moves and all(m in edges for m in moves), (moves, sorted(edges))
