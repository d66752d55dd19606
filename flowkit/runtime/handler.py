"""The Flow Handler: load -> pure engine -> versioned commit, then effects (the outbox).

Its parts live in modules of one job each; this module keeps the import paths users and
tests know:

- runtime/core.py — the sans-io core: routing, the state cache, the CAS retry loop
  (``_Core.process`` yields the :data:`flowkit.types.Request` union);
- runtime/sync_runtime.py — :class:`Runtime`, the blocking driver, effects and recovery;
- runtime/async_runtime.py — :class:`AsyncRuntime`, the asyncio driver;
- runtime/outcome.py — :class:`Outcome`, :class:`RecoveryReport` and decisions on an outcome.
"""

from __future__ import annotations

from flowkit.runtime.async_runtime import AsyncRuntime
from flowkit.runtime.core import unrouted_text
from flowkit.runtime.outcome import Outcome, OutcomeStatus, RecoveryReport, resume_grace_ms
from flowkit.runtime.sync_runtime import Runtime

__all__ = ["AsyncRuntime", "Outcome", "OutcomeStatus", "RecoveryReport", "Runtime", "resume_grace_ms",
           "unrouted_text"]
