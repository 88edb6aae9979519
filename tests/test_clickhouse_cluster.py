"""The warehouse on 2 shards of 2 replicas with ZooKeeper: the migrations on every server, local
tables replicated within a shard, Distributed tables and rollups answering for all shards."""

from __future__ import annotations

import time
from typing import Any

import pytest
from clickhouse_driver.errors import Error as ClickHouseError

from ingest.events.scans import ScanEvent
from ingest.sink.table import COLUMNS, column_values
from ingest.warehouse.client import connect, describe
from ingest.warehouse.cluster_schema import apply_cluster_migrations, cluster_statements
from ingest.warehouse.schema import load_migrations
from ingest.warehouse.topology import Topology
from tests.sink_support import make_events

pytestmark = pytest.mark.clickhouse_cluster

TABLES = "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
COLUMNS_OF_SCANS = (
    "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'scans'"
)
MIGRATIONS = [migration.name for migration in load_migrations()]


def _migrate(topology: Topology) -> list[Any]:
    return apply_cluster_migrations(
        topology, connect, describe, (ClickHouseError, OSError, EOFError)
    )


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    client = connect(url)
    try:
        return list(client.execute(sql))
    finally:
        client.disconnect()


def test_topology_urls_parse_into_shards_of_replicas() -> None:
    topology = Topology.parse(
        "clickhouse://a:9000/db,clickhouse://b:9000/db;clickhouse://c:9000/db"
    )
    assert topology.shards == (
        ("clickhouse://a:9000/db", "clickhouse://b:9000/db"),
        ("clickhouse://c:9000/db",),
    )
    assert (topology.database, topology.clustered, topology.replicated) == ("db", True, True)
    assert not Topology.parse("clickhouse://a:9000/db").clustered
    with pytest.raises(ValueError, match="same database"):
        Topology.parse("clickhouse://a:9000/x;clickhouse://b:9000/y")


def test_a_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    topology = Topology.parse(
        "clickhouse://a/db,clickhouse://b/db;clickhouse://c/db,clickhouse://d/db"
    )
    create = "CREATE TABLE IF NOT EXISTS t\n(x UInt8)\nENGINE = ReplacingMergeTree(x)\nORDER BY x"
    local, distributed = cluster_statements(create, topology, frozenset({"t"}))
    assert "CREATE TABLE IF NOT EXISTS t_local" in local
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', x)" in local
    )
    assert distributed.endswith("ENGINE = Distributed(scanward, db, t_local, rand())")
    query = "SELECT x FROM {} WHERE x IN (SELECT 1 FROM other)"
    view = f"CREATE MATERIALIZED VIEW IF NOT EXISTS v TO r AS\n{query.format('t')}"
    [local_view] = cluster_statements(view, topology, frozenset({"t", "r"}))
    assert local_view.endswith(f"TO r_local AS\n{query.format('t_local')}")


def _events(count: int, first: int) -> dict[str, Any]:
    from ingest.events.scans import decode_columns
    from tests.sink_support import entry_fields

    events: list[ScanEvent] = make_events(count, first)
    entries = [
        (f"{1_700_000_000_000 + n}-0".encode(), entry_fields([event]))
        for n, event in enumerate(events)
    ]
    return decode_columns(0, entries, utf8=True)


def _insert_local(url: str, columns: dict[str, Any]) -> None:
    client = connect(url)
    try:
        client.execute(
            f"INSERT INTO scans_local ({', '.join(COLUMNS)}) VALUES",
            [column_values(name, columns[name]) for name in COLUMNS],
            columnar=True,
            settings={"strings_as_bytes": True},
        )
    finally:
        client.disconnect()


def _wait_for(check: Any, what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_migrations_run_on_every_server_once_and_each_records_them(
    clickhouse_cluster: Topology,
) -> None:
    first = _migrate(clickhouse_cluster)
    assert [(o.shard, o.replica, o.applied, o.error) for o in first] == [
        (shard, replica, tuple(MIGRATIONS), None) for shard in (1, 2) for replica in (1, 2)
    ]
    assert all(o.applied == () and o.error is None for o in _migrate(clickhouse_cluster))
    for _, _, url in clickhouse_cluster.servers():
        assert _query(url, "SELECT count() FROM schema_migrations") == [(len(MIGRATIONS),)]
        engines = dict(_query(url, TABLES))
        assert engines["scans_local"] == "ReplicatedMergeTree"
        assert engines["scans"] == "Distributed"
        assert engines["scans_hourly_local"] == "ReplicatedSummingMergeTree"
        columns = {name for (name,) in _query(url, COLUMNS_OF_SCANS)}
        assert {"risk", "distributor_id", "surfaced_in", "distance_km"} <= columns


def test_rows_replicate_within_a_shard_and_distributed_tables_see_every_shard(
    clickhouse_cluster: Topology,
) -> None:
    _migrate(clickhouse_cluster)
    (s1r1, s1r2), (s2r1, s2r2) = clickhouse_cluster.shards
    _insert_local(s1r1, _events(30, 0))
    _insert_local(s2r2, _events(20, 30))
    _wait_for(
        lambda: _query(s1r2, "SELECT count() FROM scans_local") == [(30,)], "shard 1's replica"
    )
    _wait_for(
        lambda: _query(s2r1, "SELECT count() FROM scans_local") == [(20,)], "shard 2's replica"
    )
    for url in (s1r1, s1r2, s2r1, s2r2):
        assert _query(url, "SELECT count(), uniqExact(scan_id) FROM scans") == [(50, 50)]
        assert _query(url, "SELECT sum(scans) FROM scans_hourly") == [
            (50,)
        ]  # each shard rolled up once
