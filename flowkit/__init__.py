"""flowkit: design, run, simulate and debug WhatsApp conversation flows whose state lives
in Redis and never silently loses an update.

The layers (docs/design.md): ``flowkit.flow`` (model, loader, graph) -> ``flowkit.engine``
(pure transitions) -> ``flowkit.store`` (Redis) -> ``flowkit.runtime`` (the Flow Handler)
-> edges (``flowkit.channels``, ``flowkit.web``, ``flowkit.history``, ``flowkit.cli``).
"""

from flowkit.engine import (
    CallService,
    Command,
    End,
    Message,
    Record,
    Reply,
    Schedule,
    ServiceResult,
    Start,
    State,
    Timeout,
    Transition,
    step,
)
from flowkit.errors import (
    ChannelError,
    CheckError,
    ConflictError,
    CorruptStateError,
    EngineError,
    ExpressionError,
    FlowError,
    FlowkitError,
    HistoryError,
    PatternError,
    Problem,
    ServiceError,
    StateValidationError,
    StoreError,
    StoreUnavailable,
    WebhookError,
)
from flowkit.flow import Flow, FlowBuilder, load_flow, load_flows, parse_flow, render, to_networkx, when
from flowkit.runtime import (
    AsyncRuntime,
    FlowRegistry,
    Outcome,
    RecordingChannel,
    Runtime,
    ServiceRegistry,
    WhatsAppChannel,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncRuntime", "CallService", "ChannelError", "CheckError", "Command", "ConflictError", "CorruptStateError", "End",
    "EngineError", "ExpressionError", "Flow", "FlowBuilder", "FlowError", "FlowRegistry", "FlowkitError",
    "HistoryError", "Message", "Outcome", "PatternError", "Problem", "Record", "RecordingChannel", "Reply", "Runtime",
    "Schedule", "ServiceError", "ServiceRegistry", "ServiceResult", "Start", "State", "StateValidationError",
    "StoreError", "StoreUnavailable", "Timeout", "Transition", "WebhookError", "WhatsAppChannel",
    "__version__", "load_flow", "load_flows", "parse_flow", "render", "step", "to_networkx", "when",
]
