"""How the scan state and the actor counters are split into Redis hash tags.

Both counts are deploy-time settings (``scan_partitions``, ``actor_partitions``): one node
needs few, a cluster more (a multiple of its masters spreads them exactly). Changing a count
would move every code to another partition, so the counts are recorded in Redis when the store
is first used and checked at every start (``ingest.store.layout``).

Partition ``p`` of ``n`` gets the tag ``{scans:p.s}`` whose slot (CRC16 of the tag, as Redis
Cluster hashes it) lies in the middle half of the ``p``-th of ``n`` equal shares of the slot
space; ``s`` is the first number that puts it there. A cluster whose masters hold equal runs of
slots (as ``redis-cli --cluster create`` and an even reshard leave them) so holds an equal share
of the partitions, give or take one where the count is not a multiple of the masters.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

MAX_PARTITIONS = 256
"""``scans.stream_partition`` is a UInt8."""


@dataclass(frozen=True, slots=True)
class Partitions:
    scans: int = 16
    actors: int = 4

    def __post_init__(self) -> None:
        for name, count in (("scan", self.scans), ("actor", self.actors)):
            if not 1 <= count <= MAX_PARTITIONS:
                raise ValueError(f"{name} partitions must be 1 to {MAX_PARTITIONS}, not {count}")

    def scan_tag(self, partition: int) -> str:
        return _spread_tags("scans", self.scans)[partition]

    def stream_key(self, partition: int) -> str:
        return self.scan_tag(partition) + ":events"

    def unsunk_key(self, partition: int) -> str:
        return self.scan_tag(partition) + ":unsunk"

    @property
    def stream_keys(self) -> tuple[str, ...]:
        return _keys("scans", self.scans, ":events")

    @property
    def unsunk_keys(self) -> tuple[str, ...]:
        return _keys("scans", self.scans, ":unsunk")

    def of_stream(self, stream_key: str) -> int:
        """The partition of one of ``stream_keys``."""
        return _positions(self.stream_keys)[stream_key]

    def of_text(self, text: str) -> int:
        """A partition for ``text`` (a code that did not verify): always the same one."""
        return zlib.crc32(text.encode()) % self.scans

    def actor_tag(self, actor: str) -> str:
        """The tag of the counters of a device or an IP."""
        return _spread_tags("actors", self.actors)[zlib.crc32(actor.encode()) % self.actors]


@functools.cache
def _spread_tags(name: str, count: int) -> tuple[str, ...]:
    share = REDIS_CLUSTER_HASH_SLOTS / count
    tags = []
    for partition in range(count):
        low, high = (partition + 0.25) * share, (partition + 0.75) * share
        salt = 0
        while not low <= key_slot(f"{name}:{partition}.{salt}".encode()) < high:
            salt += 1
        tags.append(f"{{{name}:{partition}.{salt}}}")
    return tuple(tags)


@functools.cache
def _keys(name: str, count: int, suffix: str) -> tuple[str, ...]:
    return tuple(tag + suffix for tag in _spread_tags(name, count))


@functools.cache
def _positions(keys: tuple[str, ...]) -> dict[str, int]:
    return {key: position for position, key in enumerate(keys)}
