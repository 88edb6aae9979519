"""The Redis side of the sink: its consumer group on every scan stream, reads, acks and stats.

One command per stream key, pipelined: the same calls work on one Redis and on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import ResponseError

from ingest.scan_events import CONSUMER_GROUP, STREAM_KEYS
from ingest.sink_batch import Entries

CONSUMER = "sink"
"""One sink, one fixed consumer name: its pending entries are exactly what it may have inserted."""
STATS_KEY = "{sink}:stats"
NEW = b">"
"""The cursor of entries never delivered; an entry id as cursor reads the pending ones after it."""


@dataclass(frozen=True, slots=True)
class InsertStats:
    rows: int
    seconds: float
    finished_ms: int
    lag_ms: int
    """Age of the oldest inserted row (since it entered its stream) when the insert finished."""


class SinkStreams:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def ensure_groups(self) -> None:
        for key in STREAM_KEYS:
            try:
                self._redis.xgroup_create(key, CONSUMER_GROUP, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def read(self, cursors: Mapping[int, bytes], count: int) -> dict[int, Entries]:
        """At most ``count`` entries after the cursor of each partition, by partition."""
        pipe = self._redis.pipeline(transaction=False)
        for partition, cursor in cursors.items():
            pipe.xreadgroup(CONSUMER_GROUP, CONSUMER, {STREAM_KEYS[partition]: cursor}, count=count)
        replies = pipe.execute()
        return {p: reply[0][1] if reply else [] for p, reply in zip(cursors, replies, strict=True)}

    def acknowledge(self, ids: Mapping[int, Sequence[bytes]], stats: InsertStats | None) -> None:
        """Acks the entries and trims each stream just past them, so its length is the backlog.

        The entries of a stream below its last acked id were all delivered before it and are
        acked already, since the sink recovers the pending entries after any failed read before
        it acknowledges again: trimming to that id deletes nothing still pending.
        """
        pipe = self._redis.pipeline(transaction=False)
        for partition, entry_ids in ids.items():
            key = STREAM_KEYS[partition]
            pipe.xack(key, CONSUMER_GROUP, *entry_ids)
            pipe.xtrim(key, minid=_next_id(entry_ids[-1]), approximate=False)
        if stats is not None:
            pipe.hincrby(STATS_KEY, "rows_total", stats.rows)
            pipe.hincrby(STATS_KEY, "inserts_total", 1)
            pipe.hset(
                STATS_KEY,
                mapping={
                    "last_insert_ms": stats.finished_ms,
                    "rows_per_s": round(stats.rows / max(stats.seconds, 1e-6)),
                    "lag_ms": stats.lag_ms,
                },
            )
        pipe.execute()


def _next_id(entry_id: bytes) -> bytes:
    ms, _, seq = entry_id.partition(b"-")
    return b"%s-%d" % (ms, int(seq) + 1)
