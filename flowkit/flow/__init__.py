"""Flow model, loader, safe expressions, graph and rendering.

Names are imported on first use (PEP 562): the engine imports ``flowkit.flow.model``
without loading the YAML loader, networkx (graph) or graphviz (render).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit._lazy import exports

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from flowkit.flow.builder import FlowBuilder, when
    from flowkit.flow.expr import Expr, parse_expr
    from flowkit.flow.graph import edge_list, graph_json, to_networkx
    from flowkit.flow.loader import flow_files, flow_from_dict, load_flow, load_flows, parse_flow
    from flowkit.flow.model import (
        END_KINDS,
        INPUT_TYPES,
        SLOT_TYPES,
        STATUSES,
        TERMINAL_STATUSES,
        AskStep,
        BotMessage,
        Branch,
        BranchStep,
        Button,
        CallStep,
        Commands,
        EndStep,
        Flow,
        FlowStep,
        InputSpec,
        ListMenu,
        ListRow,
        ListSection,
        Loc,
        SayStep,
        SetStep,
        SlotSpec,
        SplitStep,
        Step,
        TemplateMessage,
        Variant,
        format_duration,
        parse_duration,
    )
    from flowkit.flow.render import render, render_to_file
    from flowkit.flow.template import Template, parse_template
    from flowkit.flow.validate import validate_flow, validate_flow_set


_LAZY = {
    'END_KINDS': 'flowkit.flow.model',
    'INPUT_TYPES': 'flowkit.flow.model',
    'SLOT_TYPES': 'flowkit.flow.model',
    'STATUSES': 'flowkit.flow.model',
    'TERMINAL_STATUSES': 'flowkit.flow.model',
    'AskStep': 'flowkit.flow.model',
    'Branch': 'flowkit.flow.model',
    'BranchStep': 'flowkit.flow.model',
    'Button': 'flowkit.flow.model',
    'CallStep': 'flowkit.flow.model',
    'Commands': 'flowkit.flow.model',
    'EndStep': 'flowkit.flow.model',
    'Flow': 'flowkit.flow.model',
    'FlowStep': 'flowkit.flow.model',
    'InputSpec': 'flowkit.flow.model',
    'ListMenu': 'flowkit.flow.model',
    'ListRow': 'flowkit.flow.model',
    'ListSection': 'flowkit.flow.model',
    'Loc': 'flowkit.flow.model',
    'BotMessage': 'flowkit.flow.model',
    'SayStep': 'flowkit.flow.model',
    'SetStep': 'flowkit.flow.model',
    'SlotSpec': 'flowkit.flow.model',
    'Step': 'flowkit.flow.model',
    'TemplateMessage': 'flowkit.flow.model',
    'SplitStep': 'flowkit.flow.model',
    'Variant': 'flowkit.flow.model',
    'format_duration': 'flowkit.flow.model',
    'parse_duration': 'flowkit.flow.model',
    'FlowBuilder': 'flowkit.flow.builder',
    'when': 'flowkit.flow.builder',
    'Expr': 'flowkit.flow.expr',
    'parse_expr': 'flowkit.flow.expr',
    'edge_list': 'flowkit.flow.graph',
    'graph_json': 'flowkit.flow.graph',
    'to_networkx': 'flowkit.flow.graph',
    'flow_files': 'flowkit.flow.loader',
    'flow_from_dict': 'flowkit.flow.loader',
    'load_flow': 'flowkit.flow.loader',
    'load_flows': 'flowkit.flow.loader',
    'parse_flow': 'flowkit.flow.loader',
    'render': 'flowkit.flow.render',
    'render_to_file': 'flowkit.flow.render',
    'Template': 'flowkit.flow.template',
    'parse_template': 'flowkit.flow.template',
    'validate_flow': 'flowkit.flow.validate',
    'validate_flow_set': 'flowkit.flow.validate',
}

# `Message` named both what the user sent and what the bot says; it is now BotMessage here.
__getattr__, __dir__ = exports(__name__, globals(), _LAZY, {"Message": "BotMessage"})


__all__ = [
    "END_KINDS", "INPUT_TYPES", "SLOT_TYPES", "STATUSES", "TERMINAL_STATUSES",
    "AskStep", "Branch", "BranchStep", "Button", "CallStep", "Commands", "EndStep", "Expr", "Flow",
    "FlowBuilder", "FlowStep", "InputSpec", "ListMenu", "ListRow", "ListSection", "Loc", "BotMessage",
    "SayStep", "SetStep", "SlotSpec", "Step", "Template", "TemplateMessage",
    "edge_list", "flow_files", "flow_from_dict", "format_duration", "graph_json", "load_flow", "load_flows",
    "parse_duration", "parse_expr", "parse_flow", "parse_template", "render", "render_to_file",
    "to_networkx", "validate_flow", "validate_flow_set", "when",
    "SplitStep", "Variant",
]
