"""Find the step a (possibly sub-flow-qualified) step name refers to."""

from __future__ import annotations

from collections.abc import Callable

from flowkit.errors import EngineError
from flowkit.flow.model import Flow, FlowStep, Step


def locate(root: Flow, qualified: str, flows: Callable[[str, str | None], Flow],
           versions: list[str | None] | None = None) -> tuple[Flow, Step]:
    """``("contact/ask_email")`` -> (the collect_contact flow, its ask_email step).

    ``flows(name, version)`` resolves sub-flows; ``versions`` optionally pins each level
    (from the state's stack), else the latest version is used.
    """
    parts = qualified.split("/")
    flow = root
    for depth, part in enumerate(parts[:-1]):
        st = flow.steps.get(part)
        if not isinstance(st, FlowStep):
            raise EngineError(f"{qualified!r}: {part!r} is not a sub-flow step of flow {flow.name!r}")
        version = versions[depth] if versions and depth < len(versions) else None
        flow = flows(st.flow, version)
    step = flow.steps.get(parts[-1])
    if step is None:
        raise EngineError(f"{qualified!r}: flow {flow.name!r} version {flow.version_id} has no step {parts[-1]!r}")
    return flow, step
