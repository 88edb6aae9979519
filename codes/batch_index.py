"""In-memory lookup of the batch that owns a serial: bisection over range starts."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from codes.batches import Batch


class BatchIndex:
    __slots__ = ("_batches", "_ends", "_starts", "version")

    def __init__(self, batches: Iterable[Batch] = (), version: int = 0) -> None:
        self._batches = sorted(batches, key=lambda b: b.first_serial)
        self._starts = [b.first_serial for b in self._batches]
        self._ends = [b.last_serial for b in self._batches]
        self.version = version

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._batches)

    def find(self, serial: int) -> Batch | None:
        position = bisect.bisect_right(self._starts, serial) - 1
        if position < 0 or serial > self._ends[position]:
            return None
        return self._batches[position]
