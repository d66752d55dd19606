"""Flow model, loader, safe expressions, graph and rendering."""

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
    Message,
    SayStep,
    SetStep,
    SlotSpec,
    Step,
    TemplateMessage,
    format_duration,
    parse_duration,
)
from flowkit.flow.render import render, render_to_file
from flowkit.flow.template import Template, parse_template
from flowkit.flow.validate import validate_flow, validate_flow_set

__all__ = [
    "END_KINDS", "INPUT_TYPES", "SLOT_TYPES", "STATUSES", "TERMINAL_STATUSES",
    "AskStep", "Branch", "BranchStep", "Button", "CallStep", "Commands", "EndStep", "Expr", "Flow",
    "FlowBuilder", "FlowStep", "InputSpec", "ListMenu", "ListRow", "ListSection", "Loc", "Message",
    "SayStep", "SetStep", "SlotSpec", "Step", "Template", "TemplateMessage",
    "edge_list", "flow_files", "flow_from_dict", "format_duration", "graph_json", "load_flow", "load_flows",
    "parse_duration", "parse_expr", "parse_flow", "parse_template", "render", "render_to_file",
    "to_networkx", "validate_flow", "validate_flow_set", "when",
]
