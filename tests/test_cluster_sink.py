"""The sink on 2 ClickHouse shards of 2 replicas: each partition's scans and each campaign's
draws on their shard's local table, the mirrors on every shard, each row once, through a
replica killed mid-insert and a whole shard stopped."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest
import redis

from fraud import distributors
from ingest.events.scans import CONSUMER_GROUP
from ingest.ops.clickhouse_cluster import ClickHouseClusterServers
from ingest.sink.consumer import run_sink
from ingest.sink.shards import SHARD_MAP_KEY, ShardMap, ShardMapMismatch
from ingest.warehouse.cluster_schema import apply_cluster_migrations
from ingest.warehouse.topology import Topology
from rewards.store import CAMPAIGNS_KEY, draw_stream, unsunk_key
from tests.draw_support import add_draws, make_draws
from tests.sink_support import (
    PARTITIONS,
    add_events,
    backlog,
    make_events,
    query,
    running_sink,
    sink_settings,
    stored,
    wait_until,
)

pytestmark = [pytest.mark.clickhouse_cluster, pytest.mark.redis]

CAMPAIGNS = ("spring", "summer", "autumn", "winter")
SHARD_MAP = ShardMap.of(2, PARTITIONS)


@pytest.fixture
def migrated(clickhouse_cluster: Topology) -> Topology:
    apply_cluster_migrations(clickhouse_cluster)
    return clickhouse_cluster


def _draws_unsunk(client: redis.Redis) -> int:
    return sum(int(client.get(unsunk_key(draw_stream(c))) or 0) for c in CAMPAIGNS)


def _on_every_replica(topology: Topology, sql: str) -> list[list[tuple[object, ...]]]:
    return [query(url, sql) for _, _, url in topology.servers()]


def test_each_partition_and_campaign_lands_once_on_its_shard_and_mirrors_on_every_shard(
    streams: redis.Redis, redis_url: str, migrated: Topology
) -> None:
    add_events(streams, make_events(2000), per_entry=5)
    streams.sadd(CAMPAIGNS_KEY, *CAMPAIGNS)
    add_draws(streams, [draw for c in CAMPAIGNS for draw in make_draws(c, 50)])
    distributor = {"distributor_id": "D-1", "name": "East", "territory": {}, "updated_ms": 1}
    streams.xadd(distributors.CHANGES.key, {"distributor": orjson.dumps(distributor)})
    streams.incr(distributors.CHANGES.unsunk_key)

    with running_sink(sink_settings(redis_url, migrated.url)):
        wait_until(
            lambda: (
                backlog(streams) == 0
                and _draws_unsunk(streams) == 0
                and int(streams.get(distributors.CHANGES.unsunk_key) or 0) == 0
            ),
            60,
            "the sink to write everything",
        )

    assert stored(migrated.url) == (2000, 2000)
    assert query(migrated.url, "SELECT count(), uniqExact(campaign_id, seq) FROM draws") == [
        (200, 200)
    ]
    for shard, replicas in enumerate(migrated.shards, 1):
        ours = {p for p in range(PARTITIONS.scans) if SHARD_MAP.partition_shards[p] == shard}
        campaigns = {c for c in CAMPAIGNS if SHARD_MAP.campaign_shard(c) == shard}
        for url in replicas:  # the second replica has fetched the first one's parts
            _wait_for_rows(url, (ours, campaigns, [(1,)]), f"shard {shard}'s rows on {url}")
    assert streams.get(SHARD_MAP_KEY) == SHARD_MAP.record()


def _wait_for_rows(url: str, held: tuple[object, ...], what: str) -> None:
    wait_until(lambda: _held(url) == held, 30, what)


def _held(url: str) -> tuple[set[object], set[object], list[tuple[object, ...]]]:
    """The partitions and campaigns a server holds rows of, and its count of distributors."""
    return (
        {p for (p,) in query(url, "SELECT DISTINCT stream_partition FROM scans_local")},
        {c for (c,) in query(url, "SELECT DISTINCT campaign_id FROM draws_local")},
        query(url, "SELECT count() FROM distributors FINAL"),
    )


def test_a_sink_with_other_shards_than_the_recorded_map_refuses_to_start(
    streams: redis.Redis, redis_url: str, migrated: Topology
) -> None:
    streams.set(SHARD_MAP_KEY, SHARD_MAP.record())
    first_shard_only = ",".join(migrated.shards[0])
    with pytest.raises(ShardMapMismatch, match="with 1 shards now") as refused:
        run_sink(sink_settings(redis_url, first_shard_only), threading.Event())
    assert "\n" not in str(refused.value)


@pytest.fixture
def servers(
    clickhouse_cluster_servers: ClickHouseClusterServers,
) -> Iterator[ClickHouseClusterServers]:
    """The cluster's servers, every one running again after the test."""
    yield clickhouse_cluster_servers
    for shard, replicas in enumerate(clickhouse_cluster_servers.shards, 1):
        for replica, server in enumerate(replicas, 1):
            if server.process.poll() is not None:
                clickhouse_cluster_servers.restart(shard, replica)


def test_a_replica_killed_during_inserts_loses_and_doubles_no_row(
    streams: redis.Redis,
    redis_url: str,
    migrated: Topology,
    servers: ClickHouseClusterServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sink writes shard 1 on its first replica (the first that answers); killed with
    SIGKILL while inserts run, the sink goes on with the second."""
    total = 0
    with running_sink(sink_settings(redis_url, migrated.url)):
        for round_ in range(20):
            add_events(streams, make_events(400, total), per_entry=4)
            total += 400
            if round_ == 8:
                servers.shards[0][0].process.kill()
            wait_until(lambda: backlog(streams) < 2000, 60, "the sink to keep up")
        wait_until(lambda: backlog(streams) == 0, 60, "the sink to write everything")
        assert stored(migrated.url) == (total, total)
    assert "clickhouse insert failed; retrying" in caplog.messages  # the kill hit the sink
    servers.restart(1, 1)
    back = migrated.shards[0][0]
    shard_1 = query(migrated.shards[0][1], "SELECT count() FROM scans_local")
    wait_until(
        lambda: query(back, "SELECT count() FROM scans_local") == shard_1,
        60,
        "the killed replica to fetch what it missed",
    )
    assert stored(migrated.url) == (total, total)


def test_a_whole_shard_down_keeps_its_events_in_redis_until_it_returns_then_once(
    streams: redis.Redis, redis_url: str, migrated: Topology, servers: ClickHouseClusterServers
) -> None:
    with running_sink(sink_settings(redis_url, migrated.url)):
        add_events(streams, make_events(1000), per_entry=5)
        wait_until(lambda: backlog(streams) == 0, 60, "the first events to be written")
        for server in servers.shards[1]:
            server.stop()
        add_events(streams, make_events(1000, 1000), per_entry=5)
        wait_until(lambda: _pending_entries(streams) > 0, 30, "the sink to try shard 2")
        assert backlog(streams) > 0  # waiting in Redis, acknowledged only once stored
        servers.restart(2, 1)
        servers.restart(2, 2)
        wait_until(lambda: backlog(streams) == 0, 90, "the backlog to drain")
    assert stored(migrated.url) == (2000, 2000)


def _pending_entries(client: redis.Redis) -> int:
    return sum(
        int(client.xpending(key, CONSUMER_GROUP)["pending"]) for key in PARTITIONS.stream_keys
    )
