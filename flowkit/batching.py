"""Cut an iterable into lists of at most ``n`` items (``itertools.batched`` needs Python 3.12).

The store, backup, reconcile, export and checker all read sessions ``n`` per pipelined
round trip; this is the one place that cuts the session-id stream into those rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for x in items:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch
