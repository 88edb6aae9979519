"""The Redis side of the sink for one event family: the streams this sink holds the leases of,
their consumer groups, reads, acks and stats.

One command per stream key, pipelined: the same calls work on one Redis and on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from codes.commands import LuaScript
from ingest.events.scans import CONSUMER_GROUP
from ingest.sink.family import SCAN_STATS_KEY, Entries, Entry, EventFamily
from ingest.sink.lease import StreamLeases
from ingest.store.scripts import SyncRedis

ACK_EVENTS = LuaScript.load(__package__ or "ingest.sink", "ack_events.lua")
CONSUMER = "sink"
"""One consumer name for every sink: a stream's pending entries are exactly what the sinks that
held its lease may have inserted, which its next holder recovers."""
STATS_KEY = SCAN_STATS_KEY
"""The stats of the scan sinks, which ``/healthz``, ``/metrics`` and the benchmarks read."""
NEW = b">"
"""The cursor of entries never delivered; an entry id as cursor reads the pending ones after it."""


def dead_letter_key(stream: str) -> str:
    return stream + ":dead"


@dataclass(frozen=True, slots=True)
class InsertStats:
    rows: int
    seconds: float
    finished_ms: int
    lag_ms: int
    """Age of the oldest inserted row (since it entered its stream) when the insert finished."""

    @classmethod
    def of(cls, parts: Iterable[InsertStats | None]) -> InsertStats | None:
        """The stats of an insert made of ``parts`` (one per shard; ``None``: no row)."""
        done = [part for part in parts if part is not None]
        if not done:
            return None
        return cls(
            rows=sum(part.rows for part in done),
            seconds=sum(part.seconds for part in done),
            finished_ms=max(part.finished_ms for part in done),
            lag_ms=max(part.lag_ms for part in done),
        )


class SinkStreams:
    def __init__(
        self,
        redis: SyncRedis,
        family: EventFamily,
        leases: StreamLeases,
        claim_order: Callable[[Iterable[str]], list[str]] = list,
    ) -> None:
        """``claim_order``: the order in which this sink takes free streams (its first ones)."""
        self._redis = redis
        self.family = family
        self._leases = leases
        self._claim_order = claim_order
        self._known: dict[str, None] = {}  # ordered
        self._ack = redis.register_script(ACK_EVENTS.source)  # EVALSHA, loaded on NOSCRIPT

    @property
    def keys(self) -> tuple[str, ...]:
        """The streams the sink reads: those of the family whose leases it holds."""
        return tuple(self._known)

    def open(self) -> None:
        """Creates the consumer group of every stream, known before or new, and loads the
        acknowledging script on every primary (again after a failure: a group or a script that
        Redis lost is made again; a cluster's pipeline does not load scripts itself)."""
        self._redis.script_load(ACK_EVENTS.source)
        self._create_groups(self._known)
        self.discover()

    def discover(self) -> tuple[list[str], list[str]]:
        """The family's streams this sink has just taken, with their consumer groups made (now
        in ``keys``), and those it is to give back, still in ``keys`` until ``give_back``."""
        claimed = self._leases.claim(self._claim_order(self.family.stream_keys(self._redis)))
        new = [key for key in claimed if key not in self._known]
        self._create_groups(new)
        self._known.update(dict.fromkeys(new))
        kept = set(claimed)
        return new, [key for key in self._known if key not in kept]

    def give_back(self, keys: Collection[str]) -> None:
        """Stops reading ``keys`` and gives back their leases: everything read of them must be
        written and acknowledged. (A release that fails leaves them held and read: the next
        ``discover`` gives them back again.)"""
        self._leases.release(keys)
        for key in keys:
            self._known.pop(key, None)

    def may_write(self, keys: Collection[str]) -> bool:
        """Whether this sink's leases of ``keys`` are still valid (``StreamLeases.holds``)."""
        return self._leases.holds(keys)

    def _create_groups(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._redis.xgroup_create(key, CONSUMER_GROUP, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def read(self, cursors: Mapping[str, bytes], count: int) -> dict[str, Entries]:
        """At most ``count`` entries after the cursor of each stream, by stream key."""
        if not cursors:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for key, cursor in cursors.items():
            pipe.xreadgroup(CONSUMER_GROUP, CONSUMER, {key: cursor}, count=count)
        replies = pipe.execute()
        return {
            key: reply[0][1] if reply else [] for key, reply in zip(cursors, replies, strict=True)
        }

    def set_aside(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """Copies undecodable entries to their stream's dead-letter stream (then they are
        acknowledged like the others)."""
        pipe = self._redis.pipeline(transaction=False)
        for key, (entry_id, fields) in entries:
            record: dict[Any, Any] = {**fields, b"id": entry_id}
            pipe.xadd(dead_letter_key(key), record)
        pipe.execute()

    def acknowledge(
        self,
        ids: Mapping[str, Sequence[bytes]],
        events: Mapping[str, Sequence[int]],
        stats: InsertStats | None,
    ) -> None:
        """Acks the entries, trims each stream just past them and subtracts their events from
        the stream's unsunk count, one script per stream (``ack_events.lua``), and records the
        insert's ``stats``: all in one round trip, so that they wait for Redis once, not once
        per stream behind the reads of the next batch.

        The entries of a stream below its last acked id were all delivered before it and are
        acked already, since the sink recovers the pending entries after any failed read, and
        those of a stream new to it before its first read of new entries, before it
        acknowledges again: trimming to that id deletes nothing still pending.
        """
        pipe = self._redis.pipeline(transaction=False)
        for key, entry_ids in ids.items():
            pairs = [x for pair in zip(entry_ids, events[key], strict=True) for x in pair]
            self._ack(
                keys=[key, self.family.unsunk_key(key)],
                args=[CONSUMER_GROUP, _next_id(entry_ids[-1]), *pairs],
                client=pipe,
            )
        if stats is not None:
            stats_key = self.family.stats_key
            pipe.hincrby(stats_key, "rows_total", stats.rows)
            pipe.hincrby(stats_key, "inserts_total", 1)
            pipe.hset(
                stats_key,
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
