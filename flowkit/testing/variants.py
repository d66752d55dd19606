"""Model-based tests through ``split`` steps: session ids that reach every variant.

The engine assigns a session's variant from a hash of its id (flowkit/engine/experiments.py),
so a test can only choose the variant by choosing the session id. The search runs once per
session id of :func:`search_ids` (enough ids to meet every variant of every split the flow
can reach), each conversation remembers the variants it took, and the runtime replays it
as a session id of :func:`replay_id` that the engine assigns those same variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flowkit.engine.experiments import assign
from flowkit.errors import Problem, StoryError
from flowkit.flow.model import Flow, FlowStep, SplitStep
from flowkit.history.flowset import expanded_graph
from flowkit.runtime.registry import FlowRegistry

if TYPE_CHECKING:
    from flowkit.testing.stories import Story

MAX_TRIES = 2_000  # ids tried per conversation; a variant of weight w in W is missed with chance (1 - w/W)^2000


def splits(root: Flow, registry: FlowRegistry) -> dict[str, tuple[str, SplitStep]]:
    """Every split step a session of ``root`` can meet: qualified name -> (owning flow, step)."""
    graph = expanded_graph(root, registry.get)
    out: dict[str, tuple[str, SplitStep]] = {}
    for q, st in graph.steps.items():
        if isinstance(st, SplitStep):
            caller = graph.steps.get(q.rpartition("/")[0])
            out[q] = (caller.flow if isinstance(caller, FlowStep) else root.name, st)
    return out


def variants_of(session_id: str, found: Mapping[str, tuple[str, SplitStep]]) -> dict[str, str]:
    """What the engine gives ``session_id`` at each split: qualified split -> variant."""
    return {q: assign(session_id, owner, st.name, st.split).name for q, (owner, st) in found.items()}


def search_ids(root: Flow, registry: FlowRegistry, base: str) -> list[str]:
    """``base``, then ``base.1``, ``base.2``, ... as far as needed to meet every variant."""
    found = splits(root, registry)
    want = {(q, v.name) for q, (_, st) in found.items() for v in st.split}
    have = set(variants_of(base, found).items())
    out = [base]
    for k in range(1, MAX_TRIES):
        if want <= have:
            break
        sid = f"{base}.{k}"
        new = set(variants_of(sid, found).items()) - have
        if new:
            out.append(sid)
            have |= new
    return out


def replay_id(base: str, taken: Mapping[str, str], root: Flow, registry: FlowRegistry) -> str:
    """``base`` or the first ``base.k`` the engine assigns the variants ``taken`` (qualified split ->
    variant); ``base`` itself when no id up to MAX_TRIES does (the run then reports the moves it missed)."""
    if not taken:
        return base
    found = {q: s for q, s in splits(root, registry).items() if q in taken}
    for k in range(MAX_TRIES):
        sid = base if k == 0 else f"{base}.{k}"
        if variants_of(sid, found) == dict(taken):
            return sid
    return base


def story_session_id(base: str, story: Story, registry: FlowRegistry) -> str:
    """The session id a story runs as: ``base``, or one the engine gives the story's ``variants``
    (split step -> variant; a split is looked up by its qualified name in every flow)."""
    wanted: Mapping[str, str] = story.variants
    if not wanted:
        return base
    found: dict[str, tuple[str, SplitStep]] = {}
    for root in registry.flows():
        found.update(splits(root, registry))
    for q, variant in wanted.items():
        if q not in found:
            raise StoryError(Problem(story.file, story.line, 1, "unknown-split",
                                     f"story {story.name!r} sets the variant of {q!r}, which is not a split step of the "
                                     f"flows (split steps: {', '.join(sorted(found)) or 'none'})"))
        if variant not in {v.name for v in found[q][1].split}:
            raise StoryError(Problem(story.file, story.line, 1, "unknown-variant",
                                     f"story {story.name!r}: split {q!r} has no variant {variant!r} (variants: "
                                     f"{', '.join(v.name for v in found[q][1].split)})"))
    chosen = {q: found[q] for q in wanted}
    for k in range(MAX_TRIES):
        sid = base if k == 0 else f"{base}.{k}"
        if variants_of(sid, chosen) == dict(wanted):
            return sid
    raise StoryError(Problem(story.file, story.line, 1, "unknown-variant",  # pragma: no cover - weights near 0
                             f"story {story.name!r}: no session id among {MAX_TRIES} gets variants {dict(wanted)}"))
