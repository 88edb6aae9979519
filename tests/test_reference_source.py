"""The worker's copy of the reference data while a refresh is running."""

from __future__ import annotations

import asyncio

import pytest

from ingest.store import connect
from ingest.store.references import ReferenceSource

A_MOMENT_S = 1e-9  # any copy is older than this


@pytest.mark.redis
async def test_scans_take_the_copy_while_another_task_refreshes_it(redis_url: str) -> None:
    redis = connect.async_client(redis_url)
    try:
        source = ReferenceSource(redis)
        loaded = await source.current()
        async with source._refreshing:  # another task is re-parsing territories
            assert await asyncio.wait_for(source.current(A_MOMENT_S), 1) is loaded
            source.expire()  # this worker changed the data: its copy will not do
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(source.current(A_MOMENT_S), 0.2)
    finally:
        await redis.aclose()
