"""Testing flows with experiments: model-based tests take every variant's edge, and a story
can ask for a variant (the runner picks a session id the engine assigns it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowkit.errors import StoryError
from flowkit.flow import load_flows
from flowkit.runtime.registry import FlowRegistry
from flowkit.store import Store
from flowkit.testing import load_stories, parse_stories, run_edge_coverage, run_stories
from flowkit.testing.coverage import generate_conversations
from flowkit.testing.variants import search_ids, splits, variants_of

ROOT = Path(__file__).resolve().parents[2]
FLOWS = load_flows(ROOT / "examples" / "flows")
REGISTRY = FlowRegistry(FLOWS.values())
STORIES = ROOT / "examples" / "stories" / "feedback.stories.yaml"


def test_the_search_meets_every_variant() -> None:
    feedback = FLOWS["feedback"]
    ids = search_ids(feedback, REGISTRY, "search.feedback")
    found = splits(feedback, REGISTRY)
    assert {variants_of(i, found)["wording"] for i in ids} == {"short", "long"}
    taken = {dict(c.variants).get("wording") for c in generate_conversations(FLOWS, "feedback")}
    assert taken == {"short", "long"}


def test_model_based_tests_take_both_variants_through_the_real_runtime(store: Store) -> None:
    report = run_edge_coverage({"feedback": FLOWS["feedback"]}, store)
    assert report.ok, report.text()
    assert {(e.source, e.target, e.label) for e in report.covered} >= {
        ("wording", "ask_short", "variant short"), ("wording", "ask_long", "variant long")}


def test_stories_get_the_variant_they_ask_for(store: Store) -> None:
    stories, _ = load_stories(STORIES)
    report = run_stories(REGISTRY, store, stories, keep=True)
    assert report.ok, report.text()
    for result in report.results:
        state = store.load(result.session_id)
        assert state is not None and state["slots"]["experiments"] == dict(result.story.variants)


def test_a_story_naming_an_unknown_split_or_variant_is_refused(store: Store) -> None:
    [story] = parse_stories(textwrap.dedent("""\
        stories:
          - name: typo
            variants: {wordng: long}
            turns: [{user: feedback}]
        """), "s.yaml")[0]
    with pytest.raises(StoryError, match="'wordng', which is not a split step of the flows \\(split steps: wording\\)"):
        run_stories(REGISTRY, store, [story])
    [story] = parse_stories("stories:\n  - {name: v, variants: {wording: medium}, turns: [{user: feedback}]}\n", "s.yaml")[0]
    with pytest.raises(StoryError, match="split 'wording' has no variant 'medium' \\(variants: short, long\\)"):
        run_stories(REGISTRY, store, [story])


def test_a_malformed_variants_entry_is_located() -> None:
    with pytest.raises(StoryError) as info:
        parse_stories("stories:\n  - name: v\n    variants: [long]\n    turns: [{user: feedback}]\n", "s.yaml")
    [p] = info.value.problems
    assert (p.line, p.column) == (3, 15) and "maps split steps to variant names" in p.message
