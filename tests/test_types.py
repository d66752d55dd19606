"""flowkit/types.py: the Protocols say what the runtime needs, and the shipped parts have it.

mypy checks the conformance statically (``_conformance`` in flowkit/types.py); these tests
check it again at run time, by signature, so a drift shows in the test run too, and check
that the runtime's sans-io core refuses an answer that does not fit its request."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from flowkit.engine import UserMessage
from flowkit.metrics import Metrics, RedisMetrics
from flowkit.runtime import AsyncRuntime, FlowRegistry, Runtime
from flowkit.runtime.channel import AsyncRecordingChannel, HeldChannel, RecordingChannel
from flowkit.store import AsyncStore, Store
from flowkit.store.values import CommitResult
from flowkit.types import (
    AsyncChannel,
    AsyncStoreProtocol,
    Channel,
    Commit,
    FlowSourceProtocol,
    Load,
    MetricsSink,
    Resolve,
    Sleep,
    StoreProtocol,
    WebMetrics,
)
from tests.engine.helpers import FLOWS

PAIRS = [
    (StoreProtocol, Store), (AsyncStoreProtocol, AsyncStore), (MetricsSink, RedisMetrics), (WebMetrics, Metrics),
    (FlowSourceProtocol, FlowRegistry), (Channel, RecordingChannel), (Channel, HeldChannel),
    (AsyncChannel, AsyncRecordingChannel),
]


def members(proto: type) -> dict[str, Any]:
    """A Protocol's own and inherited members (methods and properties)."""
    out: dict[str, Any] = {}
    for klass in reversed(proto.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if (not name.startswith("_") or name == "__call__") and (callable(value) or isinstance(value, property)):
                out[name] = value
    return out


def params(fn: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize(("proto", "cls"), PAIRS, ids=lambda x: x.__name__)
def test_the_shipped_parts_have_what_their_protocol_lists(proto: type, cls: type) -> None:
    wanted = members(proto)
    assert wanted, f"{proto.__name__} lists nothing"
    for name, spec in wanted.items():
        if isinstance(spec, property):  # a property, or an attribute its __init__ sets: both read the same
            assert inspect.getattr_static(cls, name, None) is not None or \
                f"self.{name} =" in inspect.getsource(cls.__init__), f"{cls.__name__} has no {name} ({proto.__name__})"
            continue
        assert inspect.getattr_static(cls, name, None) is not None, f"{cls.__name__} has no {name} ({proto.__name__})"
        got = getattr(cls, name)
        assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(spec), \
            f"{cls.__name__}.{name}: async in one, not in the other"
        assert params(got)[:len(params(spec))] == params(spec), f"{cls.__name__}.{name} drifted from {proto.__name__}"


def test_the_store_protocols_name_the_store_methods_the_runtime_calls() -> None:
    """A method the runtime calls that its Protocol does not list would type-check as missing."""
    sync, asyn = members(StoreProtocol), members(AsyncStoreProtocol)
    for name in ("load", "commit", "seen", "defer", "flush", "ack_effects", "pending_effects", "set_timeout",
                 "due_timeouts", "last_inbound", "sent_replies"):
        assert name in sync and name in asyn
    assert {"flow_definition", "flow_latest_versions", "lookup_sent"} <= set(asyn)


def test_the_core_refuses_an_answer_that_does_not_fit_its_request(store: Store) -> None:
    rt = Runtime(store, [FLOWS["order_pizza"]])
    gen = rt.process("31600000201", UserMessage(text="pizza", message_id="wamid.t1"))
    assert next(gen) == Load("31600000201", False)
    with pytest.raises(TypeError, match="a Load request was answered with CommitResult; a runtime driver is broken"):
        gen.send(CommitResult("ok", 1))
    gen = rt.process("31600000201", UserMessage(text="pizza", message_id="wamid.t1"))
    next(gen)
    op = gen.send(None)  # no session yet: a start, whose flow is resolved next
    assert isinstance(op, Resolve) and op.wants[0] == ("order_pizza", None)
    with pytest.raises(TypeError, match="a Resolve request was answered with NoneType"):
        gen.send(None)


def test_the_sync_driver_answers_every_request_kind_and_refuses_others(store: Store) -> None:
    rt = Runtime(store, [FLOWS["order_pizza"]])
    assert rt._answer(Load("31600000202", True)) is None  # no such session
    assert rt._answer(Sleep(0.0)) is None
    (flow,) = rt._answer(Resolve((("order_pizza", None),)))  # type: ignore[misc]
    assert flow is FLOWS["order_pizza"]
    out = rt.handle("31600000202", UserMessage(text="pizza", message_id="wamid.t2"))
    assert out.status == "applied"
    with pytest.raises(TypeError, match="unknown runtime request"):
        rt._answer("load please")  # type: ignore[arg-type]
    assert Commit.__dataclass_fields__.keys() == {"session_id", "expected", "transition", "previous", "message_id"}


def test_the_async_runtime_is_typed_on_the_async_store(store: Store) -> None:
    """AsyncRuntime's store annotation is the async Protocol (mypy holds every call to it)."""
    hints = inspect.get_annotations(AsyncRuntime.__init__, eval_str=True)
    assert hints["store"] is AsyncStoreProtocol
    assert inspect.get_annotations(Runtime.__init__, eval_str=True)["store"] is StoreProtocol
