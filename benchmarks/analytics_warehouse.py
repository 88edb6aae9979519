"""The analytics benchmark's ClickHouse: one server, or a local cluster of shards of replicas.

Either way the benchmark sees the same ``Warehouse``: a client the questions are asked through
(on a cluster its first server, which sends them to every shard through the Distributed tables),
one client per shard that loads write to (its first replica; the others fetch its parts), and
the suffix of the tables those loads name (``_local`` on a cluster). The servers are stopped by
PID when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.ops import local_services
from ingest.ops.clickhouse_cluster import start_clickhouse_cluster
from ingest.warehouse.client import connect
from ingest.warehouse.cluster_schema import LOCAL, apply_cluster_migrations
from ingest.warehouse.schema import apply_migrations
from ingest.warehouse.topology import Topology

TIMEOUT_S = 3600
"""Of a query: a load of 50M rows takes minutes."""


@dataclass
class Warehouse:
    ask: Any
    """The client the documented questions go through."""
    writers: list[Any]
    """Per shard, its first replica's client: loads write there."""
    suffix: str = ""
    """Of the tables a load writes: ``_local`` on a cluster (each shard's own rows)."""
    followers: list[Any] = field(default_factory=list)
    """The other replicas' clients: they fetch the writers' parts."""

    @property
    def topology(self) -> dict[str, int] | None:
        """Shards and replicas, or None for one server."""
        if not self.suffix:
            return None
        return {
            "shards": len(self.writers),
            "replicas": 1 + len(self.followers) // len(self.writers),
        }

    def on_each_shard(self, statements: Sequence[str]) -> None:
        """``statements[i]`` on shard ``i``'s writer, all shards at once (a thread each: each
        server does its share while the others do theirs)."""
        with ThreadPoolExecutor(len(self.writers)) as pool:
            pending = [
                pool.submit(client.execute, sql)
                for client, sql in zip(self.writers, statements, strict=True)
            ]
            for done in pending:
                done.result()

    def sync_replicas(self) -> None:
        """Waits until every follower has fetched what its shard's writer holds."""
        for client in self.followers:
            for (table,) in client.execute(
                "SELECT name FROM system.tables"
                " WHERE database = currentDatabase() AND engine LIKE 'Replicated%'"
            ):
                client.execute(f"SYSTEM SYNC REPLICA {table}")

    def storage(self, tables: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """Rows and bytes of ``tables``' active parts, summed over the shards (one replica
        each): what a row costs on disk, compressed, and in memory before compression."""
        names = ", ".join(f"'{table}{self.suffix}'" for table in tables)
        sql = (
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes),"
            " sum(data_uncompressed_bytes) FROM system.parts"
            f" WHERE active AND database = currentDatabase() AND table IN ({names}) GROUP BY table"
        )
        totals: dict[str, list[int]] = {table: [0, 0, 0, 0] for table in tables}
        for client in self.writers:
            for table, *figures in client.execute(sql):
                name = table.removesuffix(self.suffix) if self.suffix else table
                totals[name] = [a + b for a, b in zip(totals[name], figures, strict=True)]
        return {
            table: {
                "rows": rows,
                "bytes_on_disk": on_disk,
                "data_compressed_bytes": compressed,
                "data_uncompressed_bytes": uncompressed,
                "bytes_on_disk_per_row": round(on_disk / rows, 2) if rows else 0,
                "compressed_bytes_per_row": round(compressed / rows, 2) if rows else 0,
                "uncompressed_bytes_per_row": round(uncompressed / rows, 2) if rows else 0,
            }
            for table, (rows, on_disk, compressed, uncompressed) in totals.items()
        }

    def clients(self) -> list[Any]:
        return [self.ask, *self.writers, *self.followers]


@contextlib.contextmanager
def one_server(folder: Path) -> Iterator[Warehouse]:
    """One migrated ClickHouse server."""
    server = local_services.start_clickhouse(folder)
    warehouse = None
    try:
        client = connect(server.url, timeout_s=TIMEOUT_S)
        apply_migrations(client)
        warehouse = Warehouse(ask=client, writers=[client])
        yield warehouse
    finally:
        _disconnect(warehouse)
        server.stop()


@contextlib.contextmanager
def cluster(folder: Path, shards: int, replicas: int) -> Iterator[Warehouse]:
    """``shards`` shards of ``replicas`` servers (ZooKeeper too when ``replicas`` > 1), with the
    cluster migrations applied in ``clickhouse_cluster.DATABASE``, the database the servers ask
    each other's tables in."""
    servers = start_clickhouse_cluster(folder, shards, replicas)
    warehouse = None
    try:
        topology = Topology.parse(servers.url)
        failed = [f"{m.address}: {m.error}" for m in apply_cluster_migrations(topology) if m.error]
        if failed:
            raise RuntimeError(f"cluster migrations failed: {'; '.join(failed)}")
        warehouse = Warehouse(
            ask=connect(topology.shards[0][0], timeout_s=TIMEOUT_S),
            writers=[connect(shard[0], timeout_s=TIMEOUT_S) for shard in topology.shards],
            suffix=LOCAL,
            followers=[
                connect(url, timeout_s=TIMEOUT_S) for shard in topology.shards for url in shard[1:]
            ],
        )
        yield warehouse
    finally:
        _disconnect(warehouse)
        servers.stop()


def _disconnect(warehouse: Warehouse | None) -> None:
    for client in warehouse.clients() if warehouse else []:
        client.disconnect()
