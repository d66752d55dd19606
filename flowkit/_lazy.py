"""Lazy package exports (PEP 562): a package names what it offers without importing it.

``flowkit`` and ``flowkit.flow`` use it so that ``import flowkit.engine`` loads neither the
runtime and Redis nor networkx, graphviz or yaml; each name is imported on first use.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any


class _Package(types.ModuleType):
    """A package whose exported function may share its name with a submodule
    (``flowkit.flow.render``): importing the submodule sets the package attribute to the
    module; the function keeps the name, as an eager ``from .render import render`` had it."""

    def __setattr__(self, name: str, value: Any) -> None:
        names = self.__dict__.get("_LAZY") or {}
        if isinstance(value, types.ModuleType) and names.get(name) == value.__name__ and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


def renamed(package: str, old: str, new: str) -> None:
    """Warn that ``package.old`` is now ``package.new`` (kept so users' code keeps running)."""
    warnings.warn(f"{package}.{old} was renamed {new}: import {new} instead ({old} will be removed)",
                  DeprecationWarning, stacklevel=3)


def exports(package: str, namespace: dict[str, Any], names: Mapping[str, str],
            old_names: Mapping[str, str] | None = None,
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose ``names`` map to the modules holding them;
    ``old_names`` maps a former name to its new one (a DeprecationWarning on use)."""
    def __getattr__(name: str) -> Any:
        if old_names and name in old_names:
            renamed(package, name, old_names[name])
            return __getattr__(old_names[name])
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    sys.modules[package].__class__ = _Package
    return __getattr__, __dir__
