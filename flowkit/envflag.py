"""Yes/no settings from the environment (and URL options): one spelling for every flag.

``1/true/yes/on`` and ``0/false/no/off``, any case; unset or empty means the default, and
anything else is a :class:`~flowkit.errors.ConfigError` naming the setting, rather than a
silent "no" for a typo such as ``ture``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flowkit.errors import ConfigError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_flag(value: str, name: str) -> bool:
    """``value`` of the setting ``name`` as a bool, or ConfigError."""
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {value!r}")


def env_flag(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """The environment variable ``name`` as a bool; ``default`` when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "")
    return parse_flag(value, name) if value.strip() else default


__all__ = ["FALSE", "TRUE", "env_flag", "parse_flag"]
