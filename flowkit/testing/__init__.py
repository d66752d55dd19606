"""What a project's own tests need to prove its flows.

- :mod:`flowkit.testing.coverage`: model-based edge coverage (one generated conversation per
  edge of the flow graph, run through the real runtime on a real store);
- :mod:`flowkit.testing.stories`: conversation stories written by hand in YAML (the user says
  X, the bot answers Y, slots and status at the end), run through the real runtime;
- :mod:`flowkit.testing.pytest_plugin`: collects ``*.stories.yaml`` files as pytest tests;
- :mod:`flowkit.testing.fake_graph`: a local imitation of the WhatsApp Cloud API (Graph API)
  over real HTTP, with its limits, error codes, rate limits, delays and the 24-hour window,
  for tests that send for real without a real number (``FakeGraphAPI``; imported on use so
  the other helpers do not start a web stack).
"""

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

__all__ = ["Action", "Conversation", "ConversationResult", "CoverageReport", "Edge", "ScriptedServices", "Story",
           "StoryReport", "StoryResult", "Turn", "TurnResult", "answers", "flow_edges", "generate_conversations",
           "invalid_answers", "load_stories", "parse_stories", "record_moves", "run_conversation",
           "run_edge_coverage", "run_stories", "run_story", "service_values"]
