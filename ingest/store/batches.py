"""Batches in Redis: runs the scripts of ``codes.batches`` and keeps an in-memory index fresh."""

from __future__ import annotations

import time
from typing import cast

from codes import batches
from codes.batch_index import BatchIndex
from codes.batches import Batch, BatchOrder
from codes.errors import BatchIdTaken
from ingest.store.outage import LastCopy
from ingest.store.scripts import AsyncRedis, RedisPyCommands, ScriptRunner

_ID_ATTEMPTS = 5


class BatchStore:
    """Needs a client made with ``decode_responses=True``."""

    def __init__(self, redis: AsyncRedis) -> None:
        self._redis = redis
        self._scripts = ScriptRunner(RedisPyCommands(redis))
        self._index = BatchIndex(version=-1)
        self._last_index = LastCopy[BatchIndex]("code batches")

    async def create(self, order: BatchOrder, key_id: int) -> Batch:
        """Reserve the serial range and record the batch in one atomic script; ``BatchError``
        when the serial space cannot hold it."""
        for _ in range(_ID_ATTEMPTS):
            batch_id, created_ms = batches.new_batch_id(), int(time.time() * 1000)
            try:
                first = await self._scripts.run(order.reserve(batch_id, key_id, created_ms))
            except BatchIdTaken:
                continue
            return order.reserved(batch_id, key_id, created_ms, int(first))
        raise RuntimeError("could not draw an unused batch id")

    async def get(self, batch_id: str) -> Batch | None:
        fields = cast(dict[str, str], await self._redis.hgetall(batches.batch_key(batch_id)))
        return Batch.from_redis(fields) if fields else None

    async def revoke(self, batch_id: str) -> Batch | None:
        """The revoked batch (revoking twice is harmless), or None if there is no such batch."""
        if await self._scripts.run(batches.revoke(batch_id)) == 0:
            return None
        return await self.get(batch_id)

    async def index(self) -> BatchIndex:
        """All batches, reloaded only when a batch was created or revoked since the last call
        (the last copy while Redis cannot be asked)."""
        return await self._last_index.refreshed(self._reload_index)

    async def _reload_index(self) -> BatchIndex:
        version = int(await self._redis.get(batches.INDEX_VERSION_KEY) or 0)
        if version != self._index.version:
            keys = cast(list[str], await self._redis.zrange(batches.BATCH_INDEX_KEY, 0, -1))
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                records = await pipe.execute()
            self._index = BatchIndex((Batch.from_redis(r) for r in records if r), version)
        return self._index
