"""What a project's own tests need to prove its flows.

- :mod:`flowkit.testing.coverage`: model-based edge coverage (one generated conversation per
  edge of the flow graph, run through the real runtime on a real store);
- :mod:`flowkit.testing.stories`: conversation stories written by hand in YAML (the user says
  X, the bot answers Y, slots and status at the end), run through the real runtime;
- :mod:`flowkit.testing.pytest_plugin`: collects ``*.stories.yaml`` files as pytest tests
  (installed with flowkit through the ``pytest11`` entry point);
- :mod:`flowkit.testing.fake_graph`: a local imitation of the WhatsApp Cloud API (Graph API)
  over real HTTP, with its limits, error codes, rate limits, delays and the 24-hour window,
  for tests that send for real without a real number (``FakeGraphAPI``).

Names are imported on first use (PEP 562): pytest loads the plugin, and with it this
package, in every run of a project that has flowkit installed, so importing it must cost
nothing until a story file or one of these names is used. docs/testing.md shows them at work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit._lazy import exports

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from flowkit.testing.coverage import (
        Action,
        Conversation,
        ConversationResult,
        CoverageReport,
        Edge,
        ScriptedServices,
        answers,
        flow_edges,
        generate_conversations,
        invalid_answers,
        record_moves,
        run_conversation,
        run_edge_coverage,
        service_values,
    )
    from flowkit.testing.fake_graph import FakeGraphAPI, GraphMessage
    from flowkit.testing.stories import (
        Story,
        StoryReport,
        StoryResult,
        Turn,
        TurnResult,
        load_stories,
        parse_stories,
        run_stories,
        run_story,
    )

_COVERAGE = ("Action", "Conversation", "ConversationResult", "CoverageReport", "Edge", "ScriptedServices", "answers",
             "flow_edges", "generate_conversations", "invalid_answers", "record_moves", "run_conversation",
             "run_edge_coverage", "service_values")
_STORIES = ("Story", "StoryReport", "StoryResult", "Turn", "TurnResult", "load_stories", "parse_stories", "run_stories",
            "run_story")
_LAZY = {**dict.fromkeys(_COVERAGE, "flowkit.testing.coverage"), **dict.fromkeys(_STORIES, "flowkit.testing.stories"),
         "FakeGraphAPI": "flowkit.testing.fake_graph", "GraphMessage": "flowkit.testing.fake_graph"}

__getattr__, __dir__ = exports(__name__, globals(), _LAZY)

__all__ = ["Action", "Conversation", "ConversationResult", "CoverageReport", "Edge", "FakeGraphAPI", "GraphMessage",
           "ScriptedServices", "Story", "StoryReport", "StoryResult", "Turn", "TurnResult", "answers", "flow_edges",
           "generate_conversations", "invalid_answers", "load_stories", "parse_stories", "record_moves",
           "run_conversation", "run_edge_coverage", "run_stories", "run_story", "service_values"]
