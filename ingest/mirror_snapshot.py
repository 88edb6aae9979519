"""``scanward mirror``: every batch, shipment and distributor Redis holds, appended to its change
stream as if it had just changed, for the sink to mirror into ClickHouse (``ingest.mirror``).

Run it once after upgrading to a version with the mirror, or to rebuild a mirror table. Running
it again, or while records change, is harmless: a batch's and a distributor's rows carry the
time of their last change as their version (an entry of the state before a revocation is
older than the revocation's), shipments never change, and the tables keep one row per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import count, islice
from typing import Any, TypeVar, cast

from redis import Redis

from codes import batches
from codes.commands import ChangeStream
from fraud import distributors, shipments

CHUNK = 1_000
"""Records read, or appended, per round trip."""

Record = dict[Any, Any]
T = TypeVar("T")


def snapshot(redis: Redis) -> dict[str, int]:
    """Appends every record to its change stream; how many of each kind."""
    distributor_records = cast(list[bytes], redis.hvals(distributors.DISTRIBUTORS_KEY))
    return {
        "batches": _append(redis, batches.CHANGES, _batch_records(redis)),
        "shipments": _append(
            redis, shipments.CHANGES, ({"shipment": line} for line in _shipment_lines(redis))
        ),
        "distributors": _append(
            redis, distributors.CHANGES, ({"distributor": raw} for raw in distributor_records)
        ),
    }


def _batch_records(redis: Redis) -> Iterator[Record]:
    keys = cast(list[bytes], redis.zrange(batches.BATCH_INDEX_KEY, 0, -1))
    for chunk in _chunks(keys):
        pipe = redis.pipeline(transaction=False)
        for key in chunk:
            pipe.hgetall(key)
        yield from (record for record in pipe.execute() if record)


def _shipment_lines(redis: Redis) -> Iterator[bytes]:
    for start in count(0, CHUNK):
        lines = cast(list[bytes], redis.lrange(shipments.LOG_KEY, start, start + CHUNK - 1))
        yield from lines
        if len(lines) < CHUNK:
            return


def _append(redis: Redis, changes: ChangeStream, records: Iterable[Record]) -> int:
    appended = 0
    for chunk in _chunks(records):
        pipe = redis.pipeline(transaction=False)
        for record in chunk:
            pipe.xadd(changes.key, record)
        pipe.incrby(changes.unsunk_key, len(chunk))
        pipe.execute()
        appended += len(chunk)
    return appended


def _chunks(items: Iterable[T]) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, CHUNK)):
        yield chunk
