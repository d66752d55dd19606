"""The canonical form of a flow that its content hash reads (:attr:`Flow.content_hash`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkit.flow.messages import BotMessage
from flowkit.flow.steps import AskStep, CallStep, EndStep, FlowStep, SayStep, SetStep, Step

if TYPE_CHECKING:
    from flowkit.flow.model import Flow


def _canonical_message(msg: BotMessage, data: Any) -> Any:
    if isinstance(data, str):
        return msg.text.canonical() if msg.text is not None else data
    if msg.text is not None:
        data["text"] = msg.text.canonical()
    if msg.template is not None and msg.template.params:
        data["template"]["params"] = [p.canonical() for p in msg.template.params]
    for key in ("header", "footer"):
        if getattr(msg, key) is not None:
            data[key] = getattr(msg, key).canonical()
    if msg.cta is not None:
        data["cta"]["url"] = msg.cta.url.canonical()
    return data


def canonical_body(flow: Flow) -> dict[str, Any]:
    """``flow.to_dict()`` in the form the content hash reads: no version label, expressions
    and templates in canonical spelling, and ``set`` as a list of pairs (it assigns in
    order, so its order is meaning and must survive ``sort_keys``)."""
    body = flow.to_dict()
    body.pop("version", None)
    if flow.help is not None:
        body["help"] = flow.help.canonical()
    for name, step in flow.steps.items():
        _canonical_step(step, body["steps"][name])
    return body


def _canonical_step(step: Step, d: dict[str, Any]) -> None:
    """``d`` (``step.to_dict()``) with its expressions and templates in canonical spelling."""
    if isinstance(d.get("next"), list):
        for b, bd in zip(step.next, d["next"], strict=True):
            if b.when is not None:
                bd["if"] = b.when.canonical()
    if isinstance(step, SetStep):
        d["set"] = [[k, e.canonical()] for k, e in step.assign]
    if isinstance(step, (CallStep, FlowStep)) and step.args:
        d["args"] = {k: e.canonical() for k, e in step.args}
    if isinstance(step, (SayStep, EndStep)) and step.say is not None:
        d["say"] = _canonical_message(step.say, d["say"])
    if isinstance(step, AskStep):
        d["ask"] = _canonical_message(step.ask, d["ask"])
        if step.invalid is not None:
            d["invalid"] = step.invalid.canonical()
