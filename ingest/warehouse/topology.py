"""Where the warehouse lives: one ClickHouse server, or shards of one or more replicas each.

``SCANWARD_CLICKHOUSE_URL`` names one server (``clickhouse://host:9000/db``), or a cluster: the
shards separated by ``;``, a shard's replicas by ``,``, every server with the same database. A
cluster's servers must all define it as ``CLUSTER`` in their ``remote_servers`` (with
``internal_replication`` when a shard has replicas), the ``{shard}`` and ``{replica}`` macros, and
ZooKeeper when a shard has more than one replica (``ingest.ops.clickhouse_cluster`` writes such
a configuration for local use).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

CLUSTER = "scanward"


def server_address(url: str) -> str:
    """``host:port`` of a server's URL, without its credentials (for messages and fallbacks)."""
    return urlsplit(url).netloc.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Topology:
    shards: tuple[tuple[str, ...], ...]
    """Each shard's replicas' URLs."""

    @classmethod
    def parse(cls, url: str) -> Topology:
        """``ValueError`` naming what is wrong with ``url``."""
        shards = tuple(
            tuple(part.strip() for part in shard.split(",") if part.strip())
            for shard in url.split(";")
        )
        if not shards or not all(shards):
            raise ValueError("every shard needs at least one server URL")
        databases = {urlsplit(server).path.strip("/") or "default" for s in shards for server in s}
        if len(databases) != 1:
            raise ValueError("every server of a cluster must name the same database")
        return cls(shards)

    @property
    def url(self) -> str:
        return ";".join(",".join(shard) for shard in self.shards)

    @property
    def database(self) -> str:
        return urlsplit(self.shards[0][0]).path.strip("/") or "default"

    @property
    def clustered(self) -> bool:
        """More than one server: local tables under Distributed ones."""
        return len(self.shards) > 1 or self.replicated

    @property
    def replicated(self) -> bool:
        """A shard has replicas: the local tables are Replicated*MergeTree."""
        return any(len(shard) > 1 for shard in self.shards)

    def servers(self) -> list[tuple[int, int, str]]:
        """``(shard, replica, url)`` of every server, numbered from 1, shard by shard."""
        return [
            (shard, replica, url)
            for shard, urls in enumerate(self.shards, 1)
            for replica, url in enumerate(urls, 1)
        ]
