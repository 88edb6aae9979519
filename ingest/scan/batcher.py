"""Micro-batching: the requests parsed in one loop tick are decided together.

``submit`` queues items with a future each; the first submission of a tick starts a drain task,
and by the time it runs every request parsed in that tick is queued. While one micro-batch waits
on its decision (Redis, for scans) the next one gathers, and up to ``max_in_flight`` wait at
once (with one, the loop would idle while its reply waits behind other work). The decide callable
settles every future of its micro-batch; if it raises, the futures it left are answered 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

from ingest.errors import ApiError, Unavailable

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_MICRO_BATCH = 4096
MAX_IN_FLIGHT = 2


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        decide: Callable[[list[tuple[Item, asyncio.Future[Result]]]], Awaitable[None]],
        max_micro_batch: int = MAX_MICRO_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._decide = decide
        self._max_micro_batch = max_micro_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._drains: set[asyncio.Task[None]] = set()
        self._drains_not_started = 0
        self._closing = False

    def submit(self, items: Sequence[Item]) -> list[asyncio.Future[Result]]:
        if self._closing:
            raise Unavailable("the server is shutting down; retry shortly")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures, strict=True))
        self._start_drain()
        return futures

    async def close(self) -> None:
        """Refuse new items and finish the queued ones."""
        self._closing = True
        while self._drains or self._queue:
            self._start_drain()
            await asyncio.gather(*self._drains)

    def _start_drain(self) -> None:
        """A drain for the queue unless one is about to start (it will take the whole queue) or
        ``max_in_flight`` are busy (the first to finish takes what has queued up)."""
        busy = len(self._drains) >= self._max_in_flight
        if self._queue and not self._drains_not_started and not busy:
            self._drains_not_started += 1
            self._drains.add(asyncio.get_running_loop().create_task(self._drain_queue()))

    async def _drain_queue(self) -> None:
        """Takes micro-batches until the queue is empty. Another drain may start while this one
        waits, so the items that arrive meanwhile need not wait for its decision."""
        self._drains_not_started -= 1
        size = self._max_micro_batch
        try:
            while self._queue:
                micro_batch, self._queue = self._queue[:size], self._queue[size:]
                try:
                    await self._decide(micro_batch)
                except Exception:
                    log.exception("micro-batch of %d failed", len(micro_batch))
                    fail(micro_batch, ApiError("internal error"))
        finally:
            # removed here, not by a done-callback, so a submit in the same step sees it gone
            self._drains.discard(cast("asyncio.Task[None]", asyncio.current_task()))


def fail(micro_batch: Sequence[tuple[object, asyncio.Future[Result]]], error: Exception) -> None:
    """Every future of the micro-batch not yet settled fails with ``error``."""
    for _, future in micro_batch:
        if not future.done():
            future.set_exception(error)
