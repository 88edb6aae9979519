"""Keeps this worker's copy of the fraud reference data (distributors, territories, shipments)
as fresh as Redis, asking at most once per ``max_age_s`` whether anything changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import cast

from fraud import distributors, shipments
from fraud.distributors import Distributor
from fraud.reference import ReferenceData
from fraud.shipments import LoggedShipment
from ingest.store.outage import LastCopy
from ingest.store.scripts import AsyncRedis


class ReferenceSource:
    """Needs a client made with ``decode_responses=True``."""

    def __init__(self, redis: AsyncRedis) -> None:
        self._redis = redis
        self._data = ReferenceData.empty()
        self._checked_at = -float("inf")
        self._refreshing = asyncio.Lock()  # two refreshes would apply the same log lines twice
        # stored JSON -> its distributor: a change re-parses only what changed (validating a
        # territory costs ~0.2 ms; all of a thousand would stall the loop)
        self._parsed: dict[str, Distributor] = {}
        self._last = LastCopy[ReferenceData]("reference data")

    def expire(self) -> None:
        """This worker changed the data: its next scans must not wait out ``max_age_s``."""
        self._checked_at = -float("inf")

    async def current(self, max_age_s: float = 0.0) -> ReferenceData:
        """The copy, refreshed first if it is older than ``max_age_s``. A caller that takes a
        copy that old (the scan path) gets it as it is while another task refreshes it
        (re-parsing a territory takes tens of ms), unless this worker changed the data since
        (``expire``)."""
        if time.monotonic() - self._checked_at < max_age_s:
            return self._data
        if max_age_s > 0 and self._refreshing.locked() and self._checked_at > -float("inf"):
            return self._data
        async with self._refreshing:
            checked_at = time.monotonic()
            self._data = await self._last.refreshed(self._reload)
            self._checked_at = checked_at
        return self._data

    async def _reload(self) -> ReferenceData:
        """The copy brought up to date: changed distributors, shipments logged since."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(distributors.VERSION_KEY)
            pipe.llen(shipments.LOG_KEY)
            version_text, log_length = await pipe.execute()
        data, version = self._data, int(version_text or 0)
        if version != data.distributors_version:
            stored = await self._redis.hgetall(distributors.DISTRIBUTORS_KEY)
            raw = list(cast(dict[str, str], stored).values())
            # parsing and indexing changed territories takes up to ~30 ms of CPU each: in a
            # thread, the loop (and its scans) goes on between the GIL's switches
            data = await asyncio.to_thread(self._with_distributors, data, raw, version)
        if log_length > data.shipments.log_length:
            lines = await self._redis.lrange(
                shipments.LOG_KEY, data.shipments.log_length, log_length - 1
            )
            logged = [LoggedShipment.parse(line) for line in cast(list[str], lines)]
            data = data.with_shipments(logged, data.shipments.log_length + len(logged))
        return data

    def _with_distributors(
        self, data: ReferenceData, stored: Iterable[str], version: int
    ) -> ReferenceData:
        """``data`` with the distributors ``stored`` (run one at a time: under ``_refreshing``)."""
        parsed = {raw: self._parsed.get(raw) or Distributor.from_stored(raw) for raw in stored}
        self._parsed = parsed
        return data.with_distributors({d.distributor_id: d for d in parsed.values()}, version)
