"""The warehouse on 2 shards of 2 replicas with ZooKeeper: the migrations on every server, local
tables replicated within a shard, Distributed tables and rollups answering for all shards."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from clickhouse_driver.errors import ServerException

from fraud.policy import FraudPolicy
from ingest.events.scans import Columns, ScanEvent, decode_columns
from ingest.ops.clickhouse_cluster import ClickHouseClusterServers
from ingest.sink.table import COLUMNS, column_values
from ingest.warehouse import alerts
from ingest.warehouse.client import connect
from ingest.warehouse.cluster_schema import (
    ServerMigrations,
    apply_cluster_migrations,
    cluster_statements,
)
from ingest.warehouse.schema import load_migrations
from ingest.warehouse.topology import Topology
from tests.sink_support import entry_fields, make_events, sync_replicas

pytestmark = pytest.mark.clickhouse_cluster

TABLES = "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
COLUMNS_OF_SCANS = (
    "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'scans'"
)
MIGRATIONS = [migration.name for migration in load_migrations()]


def _migrate(topology: Topology) -> list[ServerMigrations]:
    return apply_cluster_migrations(topology)


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
    topology = Topology.parse("clickhouse://a/db,clickhouse://b/db;clickhouse://c/db")
    create = "CREATE TABLE IF NOT EXISTS t\n(x UInt8)\nENGINE = ReplacingMergeTree(x)\nORDER BY x"
    local, distributed = cluster_statements(create, topology, frozenset({"t"}))
    assert "CREATE TABLE IF NOT EXISTS t_local" in local
    engine = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', x)"
    assert engine in local
    assert distributed.endswith("ENGINE = Distributed(scanward, db, t_local, cityHash64(x))")
    query = "SELECT x FROM {} WHERE x IN (SELECT 1 FROM other)"
    view = f"CREATE MATERIALIZED VIEW IF NOT EXISTS v TO r AS\n{query.format('t')}"
    [local_view] = cluster_statements(view, topology, frozenset({"t", "r"}))
    assert local_view.endswith(f"TO r_local AS\n{query.format('t_local')}")


def _events(count: int, first: int) -> Columns:
    """Columns of ``count`` scan events as the sink inserts them (one event per entry)."""
    return _columns(make_events(count, first))


def _columns(events: list[ScanEvent]) -> Columns:
    entries = [
        (f"{1_700_000_000_000 + n}-0".encode(), entry_fields([e])) for n, e in enumerate(events)
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
    # a Distributed query reads one replica of each shard, which may not have fetched the
    # newest parts yet: replicas agree once replication has caught up
    for url in (s1r1, s1r2, s2r1, s2r2):
        _wait_for(
            lambda url=url: (
                _query(url, "SELECT count(), uniqExact(scan_id) FROM scans") == [(50, 50)]
            ),
            "every shard's scans",
        )
        # each shard rolled its own rows up once, not again on the replica that fetched them
        _wait_for(
            lambda url=url: _query(url, "SELECT sum(scans) FROM scans_hourly") == [(50,)],
            "every shard's rollup",
        )


def test_a_server_down_is_reported_and_caught_up_by_the_next_run(
    clickhouse_cluster: Topology, clickhouse_cluster_servers: ClickHouseClusterServers
) -> None:
    clickhouse_cluster_servers.shards[0][1].stop()  # shard 1's second replica
    try:
        outcomes = _migrate(clickhouse_cluster)
        down = outcomes[1]
        assert (down.shard, down.replica, down.applied) == (1, 2, ())
        assert down.error
        assert "\n" not in down.error
        assert all(o.applied == tuple(MIGRATIONS) for o in outcomes if o is not down)
    finally:
        clickhouse_cluster_servers.restart(1, 2)
    caught_up = _migrate(clickhouse_cluster)
    assert [o.applied for o in caught_up] == [(), tuple(MIGRATIONS), (), ()]
    assert all(o.error is None for o in caught_up)
    (s1r1, s1r2), _ = clickhouse_cluster.shards
    columns = "SELECT name, type FROM system.columns WHERE database = currentDatabase()"
    assert sorted(_query(s1r2, columns)) == sorted(_query(s1r1, columns))
    _insert_local(s1r2, _events(10, 0))
    _wait_for(lambda: _query(s1r1, "SELECT count() FROM scans_local") == [(10,)], "replication")


def _scanward(*command: str, clickhouse_url: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": "/usr/bin:/bin",
        "SCANWARD_CLICKHOUSE_URL": clickhouse_url,
        "SCANWARD_REDIS_URL": "redis://127.0.0.1:1",
    }
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_reports_each_server(
    clickhouse_cluster: Topology,
) -> None:
    first = _scanward("migrate", clickhouse_url=clickhouse_cluster.url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"shard {shard} replica {replica}" for shard in (1, 2) for replica in (1, 2)
    ]
    assert all(line.endswith(", ".join(MIGRATIONS)) for line in lines)
    again = _scanward("migrate", clickhouse_url=clickhouse_cluster.url)
    assert [line.rsplit(": ", 1)[1] for line in again.stdout.splitlines()] == ["up to date"] * 4


def test_mirrors_are_whole_on_every_shard_and_join_the_distributed_rollups(
    clickhouse_cluster: Topology,
) -> None:
    _migrate(clickhouse_cluster)
    (s1r1, s1r2), (s2r1, _) = clickhouse_cluster.shards
    assert dict(_query(s1r2, TABLES))["batches"] == "ReplicatedReplacingMergeTree"
    assert "batches_local" not in dict(_query(s1r2, TABLES))
    events = _events(50, 0)
    _insert_local(s1r1, {name: column[:30] for name, column in events.items()})
    _insert_local(s2r1, {name: column[30:] for name, column in events.items()})
    batch_ids = sorted(set(events["batch_id"].tolist()))
    for url in (s1r1, s2r1):  # the mirror's writer puts every change on every shard
        client = connect(url)
        try:
            client.execute(
                "INSERT INTO batches (batch_id, status, version) VALUES",
                [(batch_id, "revoked", 1) for batch_id in batch_ids],
            )
        finally:
            client.disconnect()
    # documented question 17's shape: a Distributed rollup joined to a mirror read with FINAL
    revoked_scans = """
        SELECT sum(scans) FROM scans_hourly
        ALL INNER JOIN (SELECT batch_id FROM batches FINAL WHERE status = 'revoked') AS revoked
        USING batch_id
    """
    _wait_for(lambda: _query(s1r2, revoked_scans) == [(50,)], "the join on every shard")
    whole = [(len(batch_ids),)]
    _wait_for(lambda: _query(s1r2, "SELECT count() FROM batches FINAL") == whole, "a whole copy")


def test_queries_of_a_cluster_url_go_to_another_server_while_the_first_is_down(
    clickhouse_cluster: Topology, clickhouse_cluster_servers: ClickHouseClusterServers
) -> None:
    _migrate(clickhouse_cluster)
    clickhouse_cluster_servers.shards[0][0].stop()
    try:
        client = connect(clickhouse_cluster.url)
        try:
            assert client.execute("SELECT count() FROM scans") == [(0,)]
        finally:
            client.disconnect()
    finally:
        clickhouse_cluster_servers.restart(1, 1)


def test_a_subquery_of_a_distributed_table_needs_global_in_and_then_answers_for_all_shards(
    clickhouse_cluster: Topology,
) -> None:
    """``docs/analytics.md``, "On a cluster": 18.16 refuses a plain ``IN`` whose subquery reads a
    Distributed table inside a query of one (each shard would run it over every shard again);
    ``GLOBAL IN`` runs it once and sends the set to the shards."""
    _migrate(clickhouse_cluster)
    (s1r1, _), (s2r1, _) = clickhouse_cluster.shards
    events = _events(60, 0)
    _insert_local(s1r1, {name: column[:40] for name, column in events.items()})
    _insert_local(s2r1, {name: column[40:] for name, column in events.items()})
    sync_replicas(clickhouse_cluster.url)
    heavy = "SELECT device_id FROM scans GROUP BY device_id HAVING count() >= 5"
    scans_of = Counter(events["device_id"].tolist())
    expected = [(sum(count for count in scans_of.values() if count >= 5),)]
    client = connect(clickhouse_cluster.url)
    try:
        with pytest.raises(ServerException, match="Double-distributed IN/JOIN subqueries"):
            client.execute(f"SELECT count() FROM scans WHERE device_id IN ({heavy})")
        answer = client.execute(f"SELECT count() FROM scans WHERE device_id GLOBAL IN ({heavy})")
    finally:
        client.disconnect()
    assert answer == expected


def test_alerts_are_detected_over_every_shard_and_found_again_without_doubling(
    clickhouse_cluster: Topology,
) -> None:
    _migrate(clickhouse_cluster)
    (s1r1, _), (s2r1, _) = clickhouse_cluster.shards
    now_ms = int(time.time() * 1000)
    events = make_events(12)
    for number, event in enumerate(events):  # a clone and a farming phone, half on each shard
        flag = "cloned" if number % 2 else "device_farm"
        events[number] = event._replace(
            time_ms=now_ms - number, code="CLONED", batch_id="B1", device_id="FARM", flags=(flag,)
        )
    columns = _columns(events)
    _insert_local(s1r1, {name: column[:6] for name, column in columns.items()})
    _insert_local(s2r1, {name: column[6:] for name, column in columns.items()})
    sync_replicas(clickhouse_cluster.url)
    client = connect(clickhouse_cluster.url)
    try:
        for _ in range(2):
            alerts.detect(client, FraudPolicy())
        found = alerts.open_alerts(client, 10)
    finally:
        client.disconnect()
    assert sorted((a["kind"], a["scans"], a["flagged"]) for a in found) == [
        ("cloned_code", 12, 6),
        ("device_farm", 12, 6),
    ]


def test_two_inserts_whose_rollup_rows_are_alike_are_both_rolled_up_on_a_replicated_shard(
    clickhouse_cluster: Topology,
) -> None:
    """The sink relies on replicated tables dropping a block sent again as it was; a view's
    insert into a replicated rollup is not dropped for being equal to an earlier one's (two
    scans of one hour, SKU, batch and verdict, inserted apart, make the same rollup block)."""
    _migrate(clickhouse_cluster)
    first = clickhouse_cluster.shards[0][0]
    one, other = make_events(2)
    same = ("time_ms", "serial", "batch_id", "sku", "verdict")
    alike = _columns([one, other._replace(**{name: getattr(one, name) for name in same})])
    for row in (0, 1):
        _insert_local(first, {name: column[row : row + 1] for name, column in alike.items()})
    assert _query(first, "SELECT count() FROM scans_local") == [(2,)]
    assert _query(first, "SELECT sum(scans) FROM scans_hourly_local") == [(2,)]
