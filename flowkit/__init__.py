"""flowkit: design, run, simulate and debug WhatsApp conversation flows whose state lives
in Redis and never silently loses an update.

The layers (docs/design.md): ``flowkit.flow`` (model, loader, graph) -> ``flowkit.engine``
(pure transitions) -> ``flowkit.store`` (Redis) -> ``flowkit.runtime`` (the Flow Handler)
-> edges (``flowkit.channels``, ``flowkit.web``, ``flowkit.history``, ``flowkit.cli``).

Names are imported on first use (PEP 562), so ``import flowkit.engine`` does not load
the runtime, Redis, networkx or graphviz.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit._lazy import exports

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from flowkit.engine import (
        CallService,
        Command,
        End,
        Record,
        Reply,
        Schedule,
        ServiceResult,
        Start,
        State,
        Timeout,
        Transition,
        UserMessage,
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

_LAZY = {
    'CallService': 'flowkit.engine',
    'Command': 'flowkit.engine',
    'End': 'flowkit.engine',
    'UserMessage': 'flowkit.engine',
    'Record': 'flowkit.engine',
    'Reply': 'flowkit.engine',
    'Schedule': 'flowkit.engine',
    'ServiceResult': 'flowkit.engine',
    'Start': 'flowkit.engine',
    'State': 'flowkit.engine',
    'Timeout': 'flowkit.engine',
    'Transition': 'flowkit.engine',
    'step': 'flowkit.engine',
    'ChannelError': 'flowkit.errors',
    'CheckError': 'flowkit.errors',
    'ConflictError': 'flowkit.errors',
    'CorruptStateError': 'flowkit.errors',
    'EngineError': 'flowkit.errors',
    'ExpressionError': 'flowkit.errors',
    'FlowError': 'flowkit.errors',
    'FlowkitError': 'flowkit.errors',
    'HistoryError': 'flowkit.errors',
    'PatternError': 'flowkit.errors',
    'Problem': 'flowkit.errors',
    'ServiceError': 'flowkit.errors',
    'StateValidationError': 'flowkit.errors',
    'StoreError': 'flowkit.errors',
    'StoreUnavailable': 'flowkit.errors',
    'WebhookError': 'flowkit.errors',
    'AsyncRuntime': 'flowkit.runtime',
    'FlowRegistry': 'flowkit.runtime',
    'Outcome': 'flowkit.runtime',
    'RecordingChannel': 'flowkit.runtime',
    'Runtime': 'flowkit.runtime',
    'ServiceRegistry': 'flowkit.runtime',
    'WhatsAppChannel': 'flowkit.runtime',
    'Flow': 'flowkit.flow',
    'FlowBuilder': 'flowkit.flow',
    'load_flow': 'flowkit.flow',
    'load_flows': 'flowkit.flow',
    'parse_flow': 'flowkit.flow',
    'render': 'flowkit.flow',
    'to_networkx': 'flowkit.flow',
    'when': 'flowkit.flow',
}

# `Message` named both what the user sent and what the bot says; it is now UserMessage here.
__getattr__, __dir__ = exports(__name__, globals(), _LAZY, {"Message": "UserMessage"})


__all__ = [
    "AsyncRuntime", "CallService", "ChannelError", "CheckError", "Command", "ConflictError", "CorruptStateError", "End",
    "EngineError", "ExpressionError", "Flow", "FlowBuilder", "FlowError", "FlowRegistry", "FlowkitError",
    "HistoryError", "UserMessage", "Outcome", "PatternError", "Problem", "Record", "RecordingChannel", "Reply", "Runtime",
    "Schedule", "ServiceError", "ServiceRegistry", "ServiceResult", "Start", "State", "StateValidationError",
    "StoreError", "StoreUnavailable", "Timeout", "Transition", "WebhookError", "WhatsAppChannel",
    "__version__", "load_flow", "load_flows", "parse_flow", "render", "step", "to_networkx", "when",
]
