"""The Redis side of the sink: its consumer group on every scan stream, reads, acks and stats.

One command per stream key, pipelined: the same calls work on one Redis and on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from codes.commands import LuaScript
from ingest.scan_events import CONSUMER_GROUP, STREAM_KEYS, UNSUNK_KEYS
from ingest.sink_batch import Entries, Entry

ACK_EVENTS = LuaScript.load(__package__ or "ingest", "ack_events.lua")
CONSUMER = "sink"
"""One sink, one fixed consumer name: its pending entries are exactly what it may have inserted."""
STATS_KEY = "{sink}:stats"
NEW = b">"
"""The cursor of entries never delivered; an entry id as cursor reads the pending ones after it."""


def dead_letter_key(partition: int) -> str:
    return STREAM_KEYS[partition] + ":dead"


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
        self._ack = redis.register_script(ACK_EVENTS.source)  # EVALSHA, loaded on NOSCRIPT

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

    def set_aside(self, entries: Sequence[tuple[int, Entry]]) -> None:
        """Copies undecodable entries to their partition's dead-letter stream (then they are
        acknowledged like the others)."""
        pipe = self._redis.pipeline(transaction=False)
        for partition, (entry_id, fields) in entries:
            record: dict[Any, Any] = {**fields, b"id": entry_id}
            pipe.xadd(dead_letter_key(partition), record)
        pipe.execute()

    def acknowledge(
        self,
        ids: Mapping[int, Sequence[bytes]],
        events: Mapping[int, Sequence[int]],
        stats: InsertStats | None,
    ) -> None:
        """Acks the entries, trims each stream just past them and subtracts their events from
        the partition's unsunk count, one script per partition (``ack_events.lua``).

        The entries of a stream below its last acked id were all delivered before it and are
        acked already, since the sink recovers the pending entries after any failed read before
        it acknowledges again: trimming to that id deletes nothing still pending.
        """
        for partition, entry_ids in ids.items():
            pairs = [x for pair in zip(entry_ids, events[partition], strict=True) for x in pair]
            self._ack(
                keys=[STREAM_KEYS[partition], UNSUNK_KEYS[partition]],
                args=[CONSUMER_GROUP, _next_id(entry_ids[-1]), *pairs],
            )
        if stats is None:
            return
        pipe = self._redis.pipeline(transaction=False)
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
