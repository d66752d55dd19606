"""History export and analysis for analysts (docs/design.md, "History export" and "Analysis").

- :mod:`~flowkit.history.columns`: the export format (columns, dtypes, reading and writing
  Parquet, JSONL and CSV, validation), re-exported from :mod:`~flowkit.history.schema`,
  :mod:`~flowkit.history.normalizing`, :mod:`~flowkit.history.reading` and
  :mod:`~flowkit.history.writing`;
- :mod:`~flowkit.history.export`: streaming export from Redis;
- :mod:`~flowkit.history.anomalies`: the anomaly codes, vectorised (report:
  :mod:`~flowkit.history.anomaly_report`; checks: :mod:`~flowkit.history.anomaly_pandas`,
  :mod:`~flowkit.history.anomaly_duckdb`);
- :mod:`~flowkit.history.analytics`: funnels, drop-off, dwell, rates, retries, variants, DFG;
- :mod:`~flowkit.history.experiments`: A/B tests of ``split`` steps (rates, difference, CI, p-value);
- :mod:`~flowkit.history.plots`: charts and the flow heatmap;
- :mod:`~flowkit.history.replay`: what-if replay against a new flow version;
- :mod:`~flowkit.history.impact`: change impact and the step mapping for migrations;
- :mod:`~flowkit.history.synthetic`: synthetic histories with known injected anomalies.

    from flowkit.history import read_export, find_anomalies, funnel
    ex = read_export("out/")
    report = find_anomalies(ex.history, ex.sessions, "flows/", exported_at=ex.exported_at)
    report.to_frame()
"""

from flowkit.history.analytics import (
    dfg,
    drop_off,
    dwell,
    funnel,
    journeys,
    rates,
    retries,
    summary,
    variants,
)
from flowkit.history.anomalies import CODES, AnalysisReport, Anomaly, analyze, find_anomalies
from flowkit.history.chat import chat_lines, chat_text, why_text
from flowkit.history.columns import (
    HISTORY_COLUMNS,
    SESSION_COLUMNS,
    Export,
    normalize,
    read_export,
    read_history,
    read_sessions,
    write_export,
)
from flowkit.history.delivery import delivery_rates
from flowkit.history.experiments import assignments, experiment_results
from flowkit.history.export import export_store
from flowkit.history.flowset import FlowGraph, FlowSet, expanded_graph
from flowkit.history.impact import ImpactReport, change_impact
from flowkit.history.messages import MESSAGE_COLUMNS, read_messages
from flowkit.history.plots import heatmap
from flowkit.history.replay import WhatIfReport, whatif
from flowkit.history.synthetic import Synthetic, SyntheticConfig, generate

__all__ = [
    "CODES", "HISTORY_COLUMNS", "MESSAGE_COLUMNS", "SESSION_COLUMNS",
    "AnalysisReport", "Anomaly", "Export", "FlowGraph", "FlowSet", "ImpactReport", "Synthetic", "SyntheticConfig",
    "WhatIfReport",
    "analyze", "assignments", "change_impact", "dfg", "drop_off", "dwell", "expanded_graph", "experiment_results",
    "export_store", "find_anomalies",
    "funnel", "generate", "heatmap", "journeys", "normalize", "rates", "read_export", "read_history", "read_sessions",
    "retries", "summary", "variants", "whatif", "write_export",
    "chat_lines", "chat_text", "delivery_rates", "read_messages", "why_text",
]
