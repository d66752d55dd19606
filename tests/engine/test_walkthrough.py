"""A whole conversation through the pure engine on the pizza example."""

from pathlib import Path

from flowkit.engine import CallService, End, Reply, ServiceResult, Start, State, UserMessage, step
from flowkit.flow import load_flows

FLOWS = load_flows(Path(__file__).resolve().parents[2] / "examples" / "flows")
T0 = 1_790_000_000_000


def run(events):
    flow = FLOWS["order_pizza"]
    state = None
    out = []
    for i, ev in enumerate(events):
        if isinstance(ev, str) and ev == "RESULT":
            ev = ServiceResult(call_id=state.pending["call_id"], ok=True, value="ORD-7")
        t = step(flow, state, ev, T0 + i * 1000, flows=FLOWS, session_id="s1")
        state = t.state
        out.append(t)
    return out


EVENTS = [
    Start(flow="order_pizza", profile={"name": "Ana"}, message_id="m0", text="pizza"),
    UserMessage(text="huge", message_id="m1"),
    UserMessage(text="2", message_id="m2"),
    UserMessage(text="3", message_id="m3"),
    UserMessage(text="12 Main Street", message_id="m4"),
    "RESULT",
]


def test_order_walkthrough_records_and_effects() -> None:
    ts = run(EVENTS)
    recs = [t.record for t in ts]
    assert [r.version for r in recs] == [1, 2, 3, 4, 5, 6]
    assert recs[0].from_step is None and recs[0].path == ("welcome", "ask_size")
    assert recs[1].error == "invalid_input:not_an_option" and recs[1].path == ("ask_size",)
    assert recs[2].to_step == "ask_qty"  # "2" picked the second option, medium: no upsell
    assert recs[4].status == "waiting_service"
    call = next(e for e in ts[4].effects if isinstance(e, CallService))
    assert call.call_id == "s1/5/place_order" and call.args["qty"] == 3
    final = ts[-1]
    assert final.state.status == "completed" and final.state.slots["order_id"] == "ORD-7"
    assert any(isinstance(e, End) for e in final.effects)
    texts = [e.text for e in final.effects if isinstance(e, Reply)]
    assert texts == ["Order ORD-7 placed: 3 x medium pizza. Thank you!"]


def test_replay_is_deterministic_and_json_exact() -> None:
    a = run(EVENTS)
    b = run(EVENTS)
    assert [t.state.to_json() for t in a] == [t.state.to_json() for t in b]
    for t in a:
        assert State.from_json(t.state.to_json()) == t.state
