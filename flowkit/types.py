"""What the runtime needs of the parts around it, as Protocols (in the manner of starlette's
``types.py``): the sync store, the async store, a channel, a metrics sink and a flow source;
and the I/O requests the runtime's sans-io core yields (:data:`Request`), with the answers
its drivers send back (:data:`RequestAnswer`).

Each Protocol lists exactly what the runtime calls, derived from the code that calls it
(flowkit/runtime/*, flowkit/web.py), so a store or a metrics sink of one's own needs only
these methods. The shipped classes are checked against them by mypy (tests/test_types.py
assigns each to its Protocol under ``TYPE_CHECKING``): a signature that drifts fails the
type check, not a user's deploy.

The raw Redis client a store carries stays ``Any`` (:data:`RedisClient`): redis-py's
standalone and cluster clients (sync and asyncio) share no base class, and the store's
own constructor takes ``Any`` for the same reason.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from flowkit.engine.events import Reply
from flowkit.engine.flowset import Want
from flowkit.engine.state import State
from flowkit.engine.transition import Transition
from flowkit.errors import UnknownFlowError
from flowkit.flow.model import Flow

if TYPE_CHECKING:
    from flowkit.store.delivery import SentMessage
    from flowkit.store.driver import Batch
    from flowkit.store.values import CommitResult

#: A ``redis.Redis``/``RedisCluster`` (or their asyncio twins): no common base to name.
RedisClient = Any

#: A session's state or history record in its JSON form (what the store loads and commits).
JSONDict = dict[str, Any]


class StoreProtocol(Protocol):
    """What :class:`~flowkit.runtime.Runtime` needs of a blocking store (:class:`flowkit.store.Store`)."""

    @property
    def client(self) -> RedisClient: ...

    @property
    def transcript_keep(self) -> int | None: ...

    @property
    def transcript_ttl_ms(self) -> int | None: ...

    def now_ms(self) -> int: ...

    def load(self, session_id: str) -> JSONDict | None: ...

    def commit(self, session_id: str, expected_version: int, state: JSONDict, record: JSONDict, *,
               previous: Mapping[str, Any] | None = None, message_id: str | None = None,
               effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None) -> CommitResult: ...

    def seen(self, session_id: str, message_id: str) -> int | None: ...

    def defer(self, cmds: Batch) -> None: ...

    def flush(self) -> None: ...

    def pending_effects(self, session_id: str) -> dict[int, list[JSONDict]]: ...

    def ack_effects(self, session_id: str, version: int, *, defer: bool = False) -> bool: ...

    def unacked_effects(self, older_than_ms: int = 30_000,
                        limit: int = 500) -> list[tuple[str, int, list[JSONDict]]]: ...

    def sent_replies(self, session_id: str, version: int, count: int) -> dict[int, str]: ...

    def last_inbound(self, session_id: str) -> int | None: ...

    def set_timeout(self, session_id: str, at_ms: int | None) -> bool: ...

    def due_timeouts(self, now_ms: int, limit: int = 100) -> list[str]: ...

    def expire_idle(self, now_ms: int | None = None, *, flow_timeouts: Mapping[str, int] | None = None,
                    default_ms: int | None = None, limit: int = 1000) -> list[str]: ...

    def quarantine_count(self) -> int: ...

    def iter_session_ids(self, batch: int = 1000) -> Iterator[str]: ...

    # the simulator's Redis restarts (flowkit/sim/simulator.py) need these too

    def next_timeout_at(self) -> int | None: ...

    def ping(self) -> bool: ...

    def reconcile(self, *, dry_run: bool = False, batch: int = 500) -> object: ...

    # the operators' bulk repairs (flowkit/runtime/bulk.py)

    def rollback(self, session_id: str, to_version: int, actor: str = "admin", *,
                 timeout_at_ms: int | None = None) -> CommitResult: ...

    def expire(self, session_id: str, *, actor: str = "admin", reason: str = "expired by an operator",
               now_ms: int | None = None) -> CommitResult | None: ...


class AsyncStoreProtocol(Protocol):
    """What :class:`~flowkit.runtime.AsyncRuntime` and the webhook app need of an asyncio store
    (:class:`flowkit.store.AsyncStore`); flows are read through it too, never a sync client."""

    @property
    def client(self) -> RedisClient: ...

    @property
    def transcript_keep(self) -> int | None: ...

    @property
    def transcript_ttl_ms(self) -> int | None: ...

    def now_ms(self) -> int: ...

    async def load(self, session_id: str) -> JSONDict | None: ...

    async def commit(self, session_id: str, expected_version: int, state: JSONDict, record: JSONDict, *,
                     previous: Mapping[str, Any] | None = None, message_id: str | None = None,
                     effects: Iterable[Mapping[str, Any]] = (), timeout_at_ms: int | None = None) -> CommitResult: ...

    async def seen(self, session_id: str, message_id: str) -> int | None: ...

    async def defer(self, cmds: Batch) -> None: ...

    async def flush(self) -> None: ...

    async def pending_effects(self, session_id: str) -> dict[int, list[JSONDict]]: ...

    async def ack_effects(self, session_id: str, version: int, *, defer: bool = False) -> bool: ...

    async def sent_replies(self, session_id: str, version: int, count: int) -> dict[int, str]: ...

    async def last_inbound(self, session_id: str) -> int | None: ...

    async def lookup_sent(self, wamid: str) -> SentMessage | None: ...

    async def set_timeout(self, session_id: str, at_ms: int | None) -> bool: ...

    async def due_timeouts(self, now_ms: int, limit: int = 100) -> list[str]: ...

    async def ping(self) -> bool: ...

    async def flow_definition(self, name: str, version: str | None) -> tuple[str, str] | None: ...

    async def flow_latest_versions(self) -> dict[str, str]: ...

class MetricsSink(Protocol):
    """The counts the runtime always reports (:class:`flowkit.metrics.Metrics`,
    :class:`flowkit.metrics.RedisMetrics`). Further counts (``delivery_failed``,
    ``whatsapp_alert``, ``handoff``, ...) are reported only to a sink that has them
    (``flowkit.runtime.sender.metric``)."""

    def handled(self, outcome: str, seconds: float) -> None: ...

    def applied(self, flow: str, record: Mapping[str, Any], replies: int) -> None: ...

    def sent(self, n: int = 1) -> None: ...

    def conflict(self) -> None: ...

    def engine_error(self) -> None: ...

    def send_failed(self) -> None: ...

    def service_called(self, service: str, ok: bool, seconds: float = 0.0) -> None: ...

    def recovered(self, action: str, n: int = 1) -> None: ...


class WebMetrics(MetricsSink, Protocol):
    """A metrics sink the webhook app (flowkit/web.py) also counts on and serves at ``/metrics``
    (:class:`flowkit.metrics.Metrics`, or a :class:`flowkit.metrics.Tee` of it)."""

    def webhook_unavailable(self) -> None: ...

    def webhook_rejected(self, reason: str) -> None: ...

    def delivery_status(self, status: str) -> None: ...

    async def exposition(self) -> tuple[bytes, str]: ...


class FlowSourceProtocol(Protocol):
    """What the runtime asks of its flows (:class:`flowkit.runtime.FlowRegistry`): lookups that
    may read Redis (sync paths only) and the in-memory ones the async paths use."""

    def get(self, name: str, version: str | None = None) -> Flow: ...

    def latest(self, name: str) -> Flow: ...

    def cached(self, name: str, version: str | None) -> Flow | None: ...

    def remember(self, flow: Flow, *, latest: bool) -> Flow: ...

    def names(self) -> list[str]: ...

    def flows(self) -> list[Flow]: ...

    def match_trigger(self, text: str, only: Collection[str] | None = None, *,
                      refresh: bool = True) -> Flow | None: ...

    def __call__(self, name: str, version: str | None) -> Flow: ...


class Channel(Protocol):
    """Where replies go (:class:`flowkit.runtime.WhatsAppChannel`, a recorder in tests).

    ``send`` returns the channel's message id (WhatsApp: the wamid its statuses name).
    A channel with a customer-service window declares it as ``window_ms`` (an attribute;
    absent means none): the runtime then sends free-form replies only inside it."""

    def send(self, to: str, reply: Reply) -> str | None: ...


class AsyncChannel(Protocol):
    """:class:`Channel` on asyncio (:class:`flowkit.runtime.AsyncWhatsAppChannel`)."""

    async def send(self, to: str, reply: Reply) -> str | None: ...


ChannelProtocol = Channel
AsyncChannelProtocol = AsyncChannel


# ---------------------------------------------------------------- the runtime's I/O requests
# The sans-io core (runtime/core.py ``_Core.process``) yields one of these and gets its answer
# sent back; Runtime answers with blocking calls, AsyncRuntime with awaits.


@dataclass(frozen=True)
class Load:
    """Load the session (answer: its state, from this process's cache unless ``fresh``, or None)."""

    session_id: str
    fresh: bool


@dataclass(frozen=True)
class Commit:
    """Commit ``transition`` if the session is still at ``expected`` (answer: the CommitResult)."""

    session_id: str
    expected: int
    transition: Transition
    previous: dict[str, Any] | None
    message_id: str | None


@dataclass(frozen=True)
class Sleep:
    """Back off before retrying a conflicting commit (answer: None)."""

    seconds: float


@dataclass(frozen=True)
class Resolve:
    """Resolve the flows a transition needs (answer: one :data:`FlowAnswer` per want)."""

    wants: tuple[Want, ...]


#: What a driver answers for one wanted flow: the flow, or why there is none.
FlowAnswer: TypeAlias = Flow | UnknownFlowError

Request: TypeAlias = Load | Commit | Sleep | Resolve

#: A loaded state (cached State or its JSON form, None: no session), a commit's result, the
#: flows resolved, or None (after a sleep).
RequestAnswer: TypeAlias = "State | JSONDict | CommitResult | tuple[FlowAnswer, ...] | None"



if TYPE_CHECKING:
    # The shipped parts conform: a signature that drifts from its Protocol fails mypy here.
    from flowkit.metrics import Metrics, RedisMetrics, Tee
    from flowkit.runtime.channel import (
        AsyncRecordingChannel,
        AsyncWhatsAppChannel,
        HeldChannel,
        RecordingChannel,
        WhatsAppChannel,
    )
    from flowkit.runtime.registry import FlowRegistry
    from flowkit.store import AsyncStore, Store

    def _conformance(store: Store, astore: AsyncStore, prom: Metrics, counters: RedisMetrics, tee: Tee,
                     registry: FlowRegistry, wa: WhatsAppChannel, awa: AsyncWhatsAppChannel,
                     rec: RecordingChannel, arec: AsyncRecordingChannel, held: HeldChannel) -> None:
        _store: StoreProtocol = store
        _astore: AsyncStoreProtocol = astore
        _prom: WebMetrics = prom
        _counters: MetricsSink = counters
        _tee: WebMetrics = tee
        _flows: FlowSourceProtocol = registry
        _channels: list[Channel] = [wa, rec, held]
        _achannels: list[AsyncChannel] = [awa, arec]


__all__ = ["AsyncChannel", "AsyncChannelProtocol", "AsyncStoreProtocol", "Channel", "ChannelProtocol", "Commit",
           "FlowAnswer", "FlowSourceProtocol", "JSONDict", "Load", "MetricsSink", "RedisClient", "Request",
           "RequestAnswer", "Resolve", "Sleep", "StoreProtocol", "WebMetrics"]
