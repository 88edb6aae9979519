"""Where the sink writes on a ClickHouse cluster: each scan partition's and each campaign's rows
straight into one shard's local table, the mirrors' into every shard.

Not through the Distributed tables, whose asynchronous forwarding can lose rows a crash catches
on their way, and which would leave the exactly-once check nowhere to look. Partition ``p``
goes to shard ``p mod N + 1`` (shards numbered from 1, as in ``Topology.servers``), a campaign's
draws to the shard of the CRC-32 of its id, so a campaign's draws sit together. The map is
recorded in Redis (``SHARD_MAP_KEY``) by the first sink to write to a cluster and checked by
every sink after: a sink that would send a partition elsewhere (shards added or removed)
refuses to start, since its pending entries' rows may be on the shard of the old map.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import orjson

from ingest.config import ConfigError
from ingest.events import draws
from ingest.events.partitions import Partitions
from ingest.events.scans import Columns
from ingest.sink.table import SinkTable
from ingest.store.scripts import SyncRedis

SHARD_MAP_KEY = "scanward:shards"


class Placement(enum.Enum):
    """Which shard a family's rows go to."""

    BY_PARTITION = "stream_partition"
    """The shard of the row's scan partition."""
    BY_CAMPAIGN = "campaign_id"
    """The shard of the row's campaign."""
    EVERY_SHARD = ""
    """All of them (reference data, which every shard joins to)."""


class ShardMapMismatch(ConfigError):
    """The cluster's shards would put partitions elsewhere than the recorded map says."""


@dataclass(frozen=True, slots=True)
class ShardMap:
    shards: int
    partitions: Partitions
    partition_shards: tuple[int, ...]
    """The shard of each scan partition."""

    @classmethod
    def of(cls, shards: int, partitions: Partitions) -> ShardMap:
        return cls(shards, partitions, tuple(p % shards + 1 for p in range(partitions.scans)))

    def campaign_shard(self, campaign_id: str) -> int:
        return zlib.crc32(campaign_id.encode()) % self.shards + 1

    def stream_shard(self, stream: str, placement: Placement) -> int:
        """The shard a stream's rows go to (0 for every shard)."""
        if placement is Placement.BY_PARTITION:
            return self.partition_shards[self.partitions.of_stream(stream)]
        if placement is Placement.BY_CAMPAIGN:
            return self.campaign_shard(draws.campaign_of(stream))
        return 0

    def split(self, columns: Columns, placement: Placement) -> list[tuple[int, Columns]]:
        """The rows of ``columns`` by the shard they go to, shards without rows left out."""
        if not columns:
            return []
        if placement is Placement.EVERY_SHARD:
            return [(shard, columns) for shard in range(1, self.shards + 1)]
        if self.shards == 1:
            return [(1, columns)]
        keys = columns[placement.value]
        if placement is Placement.BY_PARTITION:
            shard_of_row = np.asarray(self.partition_shards)[keys.astype(np.int64)]
        else:
            shard_of = {c: self.campaign_shard(c) for c in np.unique(keys).tolist()}
            shard_of_row = np.fromiter((shard_of[c] for c in keys.tolist()), np.int64, len(keys))
        return [
            (shard, {name: column[shard_of_row == shard] for name, column in columns.items()})
            for shard in np.unique(shard_of_row).tolist()
        ]

    def record(self) -> bytes:
        return orjson.dumps({"shards": self.shards, "scan_partitions": self.partition_shards})


def check_shard_map(redis: SyncRedis, shard_map: ShardMap) -> None:
    """Records ``shard_map`` in a store that has none, or checks it against the recorded one."""
    stored = cast(bytes | None, redis.set(SHARD_MAP_KEY, shard_map.record(), nx=True, get=True))
    if stored is not None and stored != shard_map.record():
        text = stored.decode(errors="replace")
        raise ShardMapMismatch(
            f"the sinks wrote to ClickHouse shards as {text}; with {shard_map.shards} shards "
            "now, pending events would be looked for on the wrong shard: use the recorded shards"
        )


class ShardedTable:
    """An event family's table on each shard (one, on a single server), and whose rows go
    where."""

    def __init__(
        self, tables: Mapping[int, SinkTable], shard_map: ShardMap, placement: Placement
    ) -> None:
        self._tables = tables
        self._map = shard_map
        self._placement = placement

    def by_shard(self, streams: Iterable[str]) -> list[str]:
        """``streams`` in the order of their shards (as they were within one): a sink takes its
        share of the free streams in this order, so that with as many sinks as shards each
        writes mostly one shard, in larger inserts."""
        return sorted(streams, key=lambda s: self._map.stream_shard(s, self._placement))

    def split(self, columns: Columns) -> list[tuple[SinkTable, Columns]]:
        """The rows of ``columns`` with the table of the shard they go to."""
        return [
            (self._tables[shard], rows) for shard, rows in self._map.split(columns, self._placement)
        ]
