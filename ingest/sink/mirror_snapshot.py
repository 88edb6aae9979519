"""``scanward mirror``: every batch, shipment and distributor Redis holds, appended to its change
stream as if it had just changed, for the sink to mirror into ClickHouse (``ingest.sink.mirror``).

Run it once every API process runs a version that appends its changes (an older one's changes
after the snapshot would be missed), or to rebuild a mirror table. Each record is read and
appended by one script (``codes.batches.snapshot`` and its kin), so a stream's order is the
order in which Redis held the states, which is the version the tables keep: running it again, or
while records change, is harmless.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar, cast

from codes import batches
from fraud import distributors, shipments
from ingest.store.scripts import BlockingScriptRunner, SyncRedis

BATCHES_PER_CALL = 1_000
LINES_PER_CALL = 1_000
DISTRIBUTORS_PER_CALL = 100  # a distributor's JSON may run to megabytes
T = TypeVar("T")


def snapshot(redis: SyncRedis) -> dict[str, int]:
    """Appends every record to its change stream; how many of each kind."""
    run = BlockingScriptRunner(redis).run
    batch_keys = [
        key.decode() for key in cast(list[bytes], redis.zrange(batches.BATCH_INDEX_KEY, 0, -1))
    ]
    lines = redis.llen(shipments.LOG_KEY)
    ids = [key.decode() for key in cast(list[bytes], redis.hkeys(distributors.DISTRIBUTORS_KEY))]
    return {
        "batches": sum(
            run(batches.snapshot(chunk)) for chunk in _chunks(batch_keys, BATCHES_PER_CALL)
        ),
        "shipments": sum(
            run(shipments.snapshot(first, first + LINES_PER_CALL - 1))
            for first in range(0, lines, LINES_PER_CALL)
        ),
        "distributors": sum(
            run(distributors.snapshot(chunk)) for chunk in _chunks(ids, DISTRIBUTORS_PER_CALL)
        ),
    }


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
