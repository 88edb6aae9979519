"""What the Redis Cluster tests need to know of a cluster: which primary serves which slot."""

from __future__ import annotations

from typing import Any

import redis
from redis.crc import key_slot

from ingest.events.partitions import Partitions
from ingest.ops.local_services import RedisClusterServers

PARTITIONS = Partitions()
"""The default partitions, which the clusters under test run with."""


def slot_owners(cluster: RedisClusterServers) -> list[str]:
    """The URL of the primary serving each slot."""
    owners = [""] * 16_384
    with redis.Redis.from_url(cluster.primaries()[0]) as client:
        slots: Any = client.execute_command("CLUSTER", "SLOTS")
        for first, last, primary, *_ in slots:
            owners[first : last + 1] = [cluster.url_at(primary[1])] * (last - first + 1)
    return owners


def partition_owner(owners: list[str], partition: int) -> str:
    """The primary holding a scan-state partition."""
    return owners[key_slot(PARTITIONS.scan_tag(partition).encode())]


def victim(cluster: RedisClusterServers) -> str:
    """A primary that does not count the test client's address (which every scan has), so that
    with it down some scans can still be answered."""
    owners = slot_owners(cluster)
    ip_actors = owners[key_slot(PARTITIONS.actor_tag("127.0.0.1").encode())]
    return next(url for url in cluster.primaries() if url != ip_actors)
