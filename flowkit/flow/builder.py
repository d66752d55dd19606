"""Build flows in Python. The builder writes the same data a YAML file holds and loads it
through the same parser, so a flow built in code gets exactly the same checks and
model, and ``flow.to_yaml()`` saves it as a file that loads back equal.

    b = FlowBuilder("greet", start="ask_name")
    b.slot("name", "text")
    b.ask("ask_name", "Your name?", input="text", save="name", next="bye")
    b.end("bye", say="Hi {{ name }}!")
    flow = b.build()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowkit.flow.loader import flow_from_dict
from flowkit.flow.model import Flow

Next = str | Sequence[str | Mapping[str, str]]


def when(condition: str, goto: str) -> dict[str, str]:
    """A conditional branch for ``next``: go to ``goto`` when ``condition`` holds."""
    return {"if": condition, "goto": goto}


def _next(next: Next | None) -> Any:
    if next is None or isinstance(next, str):
        return next
    return [({"goto": b} if isinstance(b, str) else dict(b)) for b in next]


class FlowBuilder:
    """Collects slots and steps, then :meth:`build` validates them into a :class:`Flow`."""

    def __init__(self, name: str, *, start: str | None = None, version: str | None = None,
                 description: str | None = None, triggers: Sequence[str] = (), timeout: str | float | None = None,
                 commands: Mapping[str, Sequence[str]] | None = None, help: str | None = None) -> None:
        self._data: dict[str, Any] = {"flow": name}
        if version is not None:
            self._data["version"] = str(version)
        if description:
            self._data["description"] = description
        self._start = start
        if triggers:
            self._data["triggers"] = list(triggers)
        if timeout is not None:
            self._data["timeout"] = timeout
        if commands:
            self._data["commands"] = {k: list(v) for k, v in commands.items()}
        if help:
            self._data["help"] = help
        self._slots: dict[str, Any] = {}
        self._steps: dict[str, Any] = {}

    def slot(self, name: str, type: str = "any", **spec: Any) -> FlowBuilder:
        """Declare a slot: ``b.slot("qty", "int", min=1, max=20)``."""
        self._slots[name] = {"type": type, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items()}}
        return self

    def _add(self, name: str, body: dict[str, Any], next: Next | None = None, **extra: Any) -> FlowBuilder:
        if self._start is None:
            self._start = name
        step = dict(body)
        step.update({k: v for k, v in extra.items() if v is not None})
        if next is not None:
            step["next"] = _next(next)
        self._steps[name] = step
        return self

    def say(self, name: str, text: str | Mapping[str, Any], *, next: Next | None = None) -> FlowBuilder:
        return self._add(name, {"say": text}, next)

    def ask(self, name: str, prompt: str | Mapping[str, Any], *, input: str | Mapping[str, Any], save: str | None = None,
            next: Next | None = None, retries: int | None = None, invalid: str | None = None,
            on_fail: str | None = None, timeout: str | float | None = None, on_timeout: str | None = None) -> FlowBuilder:
        spec = input if isinstance(input, str) else dict(input)
        return self._add(name, {"ask": prompt, "input": spec}, next, save=save, retries=retries, invalid=invalid,
                         on_fail=on_fail, timeout=timeout, on_timeout=on_timeout)

    def set(self, name: str, assign: Mapping[str, str], *, next: Next | None = None) -> FlowBuilder:
        return self._add(name, {"set": dict(assign)}, next)

    def branch(self, name: str, next: Next) -> FlowBuilder:
        return self._add(name, {}, next)

    def call(self, name: str, service: str, *, args: Mapping[str, str] | None = None, save: str | None = None,
             next: Next | None = None, timeout: str | float | None = None, on_error: str | None = None,
             on_timeout: str | None = None) -> FlowBuilder:
        return self._add(name, {"call": service}, next, args=dict(args) if args else None, save=save,
                         timeout=timeout, on_error=on_error, on_timeout=on_timeout)

    def subflow(self, name: str, flow: str, *, args: Mapping[str, str] | None = None,
                save: Mapping[str, str] | None = None, next: Next | None = None, on_fail: str | None = None) -> FlowBuilder:
        return self._add(name, {"flow": flow}, next, args=dict(args) if args else None,
                         save=dict(save) if save else None, on_fail=on_fail)

    def split(self, name: str, variants: Sequence[tuple[str, int, str]]) -> FlowBuilder:
        """An experiment: ``b.split("wording", [("short", 50, "ask_a"), ("long", 50, "ask_b")])``
        as (variant, weight, goto)."""
        return self._add(name, {"split": [{"variant": v, "weight": w, "goto": g} for v, w, g in variants]})

    def end(self, name: str, status: str = "completed", *, say: str | Mapping[str, Any] | None = None) -> FlowBuilder:
        body: dict[str, Any] = {"say": say} if say is not None else {}
        body["end"] = status
        return self._add(name, body)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self._data)
        data["start"] = self._start
        if self._slots:
            data["slots"] = self._slots
        data["steps"] = self._steps
        return data

    def build(self) -> Flow:
        """Validate and return the flow; raises :class:`~flowkit.errors.FlowError` with every problem."""
        return flow_from_dict(self.to_dict(), source=f"<builder:{self._data['flow']}>")
