"""Copies of Redis state that outlive a node being down.

The scan path refreshes its copies of the code batches, the reference data and the campaigns
every 100 ms. On a Redis Cluster each lives in one slot, so one primary down would otherwise
refuse every scan, including those whose own keys are on live primaries. A copy loaded once is
therefore kept while its node cannot be asked (a few seconds of staleness, against nothing
answered); a copy never loaded is not guessed at, since an empty one would give wrong verdicts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

STORE_FAILURES = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,  # redis-py's cluster client: no node or slot reachable
)
"""Redis itself failing (not a command or a script refusing): what was asked may be asked
again later."""


class LastCopy(Generic[T]):
    """The last copy a refresh gave, kept when a refresh fails; one warning per outage."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._copy: T | None = None
        self._down = False

    async def refreshed(self, refresh: Callable[[], Awaitable[T]]) -> T:
        """``refresh()``, or the last copy while Redis cannot be asked (raised without one)."""
        try:
            copy = await refresh()
        except STORE_FAILURES as error:
            if self._copy is None:
                raise
            if not self._down:
                log.warning(
                    "%s: Redis cannot be asked; keeping the last copy: %s", self._what, error
                )
                self._down = True
            return self._copy
        if self._down:
            log.warning("%s: Redis answers again", self._what)
            self._down = False
        self._copy = copy
        return copy
