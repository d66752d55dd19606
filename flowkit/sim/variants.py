"""Personas that behave differently in an experiment's variants.

A :class:`~flowkit.sim.simulator.Persona` may carry ``variants={"long": {"abandon_rate": 0.4}}``:
once the session has been assigned variant ``long`` of any split step (the engine records it
in the ``experiments`` slot), the persona's rates are replaced by those values. The simulator
never picks the variant itself: the engine does, as for real users, so a simulated experiment
measures exactly what the analytics will read.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from flowkit.engine.experiments import recorded
from flowkit.engine.state import State
from flowkit.errors import ConfigError

if TYPE_CHECKING:
    from flowkit.sim.simulator import Persona

#: What a variant may change: the per-question rates of a persona.
RATES = ("invalid_rate", "abandon_rate", "back_rate", "cancel_rate", "help_rate")


def variant_rates(persona: Persona) -> dict[str, float]:
    """``{persona.variant.rate: value}`` for the range check of SimConfig; unknown names are refused."""
    out: dict[str, float] = {}
    for variant, changes in persona.variants.items():
        for key, value in changes.items():
            if key not in RATES:
                raise ConfigError(f"persona {persona.name!r}, variant {variant!r}: {key!r} is not a rate a variant can "
                                  f"change (use one of {', '.join(RATES)})")
            out[f"{persona.name}.{variant}.{key}"] = value
    return out


def in_variant(persona: Persona, state: State) -> Persona:
    """``persona`` as it behaves in the variants ``state`` records (unchanged when none apply)."""
    if not persona.variants:
        return persona
    changes: dict[str, float] = {}
    for variant in recorded(state.slots).values():
        changes.update(persona.variants.get(variant, {}))
    return dataclasses.replace(persona, **changes) if changes else persona  # type: ignore[arg-type]  # (field names and values were checked above)


def parse_variant_options(options: list[str]) -> dict[str, dict[str, float]]:
    """``["long:abandon_rate=0.3,invalid_rate=0.2", ...]`` (``flowkit simulate --variant``) -> Persona.variants."""
    out: dict[str, dict[str, float]] = {}
    for text in options:
        name, sep, body = text.partition(":")
        if not sep or not name.strip() or not body.strip():
            raise ConfigError(f"--variant {text!r}: write VARIANT:RATE=VALUE[,RATE=VALUE], e.g. long:abandon_rate=0.3")
        changes = out.setdefault(name.strip(), {})
        for part in body.split(","):
            key, eq, value = part.partition("=")
            try:
                changes[key.strip()] = float(value) if eq else float("nan")
            except ValueError:
                raise ConfigError(f"--variant {text!r}: {value.strip()!r} is not a number (rates are 0 to 1)") from None
            if not eq:
                raise ConfigError(f"--variant {text!r}: {part.strip()!r} needs =VALUE, e.g. abandon_rate=0.3")
    return out
