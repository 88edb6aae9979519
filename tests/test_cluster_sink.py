"""The sink on 2 ClickHouse shards of 2 replicas: each partition's scans and each campaign's
draws on their shard's local table, the mirrors on every shard, each row once, through a
replica killed mid-insert and a whole shard stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient

from fraud import distributors
from ingest.config import Settings
from ingest.events.scans import CONSUMER_GROUP
from ingest.http.app import create_app
from ingest.ops.clickhouse_cluster import ClickHouseClusterServers
from ingest.sink.consumer import run_sink
from ingest.sink.lease import lease_key
from ingest.sink.shards import SHARD_MAP_KEY, ShardMap, ShardMapMismatch
from ingest.warehouse.client import connect
from ingest.warehouse.cluster_schema import apply_cluster_migrations
from ingest.warehouse.topology import Topology
from rewards.store import CAMPAIGNS_KEY, draw_stream, unsunk_key
from tests.draw_support import add_draws, make_draws
from tests.helpers import ADMIN, order_shipped_batch, post_scan
from tests.sink_support import (
    PARTITIONS,
    add_events,
    backlog,
    lease_shares,
    make_events,
    query,
    running_sink,
    sink_settings,
    stored,
    wait_until,
)

pytestmark = [pytest.mark.clickhouse_cluster, pytest.mark.redis]

Client = TestClient[Any, Any]
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

    _wait_until_stored(migrated.url, 2000)
    draws = "SELECT count(), uniqExact(campaign_id, seq) FROM draws"
    wait_until(lambda: query(migrated.url, draws) == [(200, 200)], 30, "the draws stored once")
    for shard, replicas in enumerate(migrated.shards, 1):
        ours = {p for p in range(PARTITIONS.scans) if SHARD_MAP.partition_shards[p] == shard}
        campaigns = {c for c in CAMPAIGNS if SHARD_MAP.campaign_shard(c) == shard}
        for url in replicas:  # the second replica has fetched the first one's parts
            _wait_for_rows(url, (ours, campaigns, [(1,)]), f"shard {shard}'s rows on {url}")
    assert streams.get(SHARD_MAP_KEY) == SHARD_MAP.record()


def _wait_for_rows(url: str, held: tuple[object, ...], what: str) -> None:
    wait_until(lambda: _held(url) == held, 30, what)


def _wait_until_stored(url: str, events: int) -> None:
    """Until ``scans`` holds each event once, as the replicas read have it (one may still be
    fetching the parts the other took; a doubled row would never go away)."""
    deadline = time.monotonic() + 30
    while (seen := stored(url)) != (events, events):
        if time.monotonic() > deadline:
            raise AssertionError(f"{events} events not stored once: (rows, events) {seen}")
        time.sleep(0.2)


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


def test_a_replica_killed_during_an_insert_loses_and_doubles_no_row(
    streams: redis.Redis,
    redis_url: str,
    migrated: Topology,
    servers: ClickHouseClusterServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sink writes shard 1 on its first replica (the first that answers); killed with
    SIGKILL while an insert of the sink runs on it, the sink goes on with the second."""
    first, second = migrated.shards[0]
    added = 0
    with running_sink(sink_settings(redis_url, migrated.url, sink_batch_rows=4000)):
        watch = connect(first)
        try:
            while not _sink_inserting(watch):
                if backlog(streams) < 4000 and added < 200_000:
                    add_events(streams, make_events(4000, added), per_entry=8)
                    added += 4000
        finally:
            watch.disconnect()
        servers.shards[0][0].process.kill()
        add_events(streams, make_events(4000, added), per_entry=8)
        added += 4000
        wait_until(lambda: backlog(streams) == 0, 60, "the sink to write everything")
        _wait_until_stored(migrated.url, added)
    assert "clickhouse insert failed; retrying" in caplog.messages  # the kill cut an insert
    servers.restart(1, 1)
    shard_1 = query(second, "SELECT count() FROM scans_local")
    wait_until(
        lambda: query(first, "SELECT count() FROM scans_local") == shard_1,
        60,
        "the killed replica to fetch what it missed",
    )
    _wait_until_stored(migrated.url, added)


def _sink_inserting(client: Any) -> bool:
    """Whether an insert of the sink into ``scans_local`` runs on ``client``'s server."""
    running = client.execute(
        "SELECT count() FROM system.processes"
        " WHERE startsWith(query_id, 'scanward-sink:') AND query_id LIKE '%:scans_local:%'"
    )
    return bool(running[0][0])


async def test_scans_are_answered_while_a_whole_shard_is_down_and_stored_once_when_it_returns(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    streams: redis.Redis,
    migrated: Topology,
    servers: ClickHouseClusterServers,
) -> None:
    """The scan path never waits on ClickHouse: its events wait in Redis (the backlog bound
    refuses scans only beyond ``max_unsunk_events``) and are acknowledged once stored."""
    sunk = dataclasses.replace(settings, clickhouse_url=migrated.url, sink_flush_ms=100)
    client = await aiohttp_client(create_app(sunk))
    batch = await order_shipped_batch(client, quantity=200)
    reply = await client.get(f"/v1/batches/{batch['batch_id']}/codes?limit=200", headers=ADMIN)
    codes = (await reply.text()).split()
    with running_sink(sunk):
        for code in codes[:100]:
            await post_scan(client, {"code": code})
        await _wait(lambda: backlog(streams) == 0, "the first scans to be stored")
        for server in servers.shards[1]:
            server.stop()
        answers = [await post_scan(client, {"code": code}) for code in codes[100:]]
        assert all(answer["first_scan"] for answer in answers)
        await _wait(lambda: _pending_entries(streams) > 0, "the sink to try shard 2")
        assert backlog(streams) > 0  # waiting in Redis, acknowledged only once stored
        servers.restart(2, 1)
        servers.restart(2, 2)
        await _wait(lambda: backlog(streams) == 0, "the backlog to drain", 90)
    _wait_until_stored(migrated.url, 200)


async def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """``wait_until`` without holding up the event loop the test's API runs on."""
    await asyncio.to_thread(wait_until, condition, timeout_s, what)


def _pending_entries(client: redis.Redis) -> int:
    return sum(
        int(client.xpending(key, CONSUMER_GROUP)["pending"]) for key in PARTITIONS.stream_keys
    )


def test_two_sinks_on_two_shards_take_a_shard_s_partitions_each(
    streams: redis.Redis, redis_url: str, migrated: Topology
) -> None:
    """Each insert then goes to one shard, in fewer and larger parts. The second sink starts
    once the first holds every partition: the first keeps its share in shard order. (Sinks
    that start at the same moment may take mixed shares, and keep them.)"""
    settings = sink_settings(redis_url, migrated.url)
    with running_sink(settings):
        wait_until(lambda: lease_shares(streams) == [16], 30, "one sink holding all")
        with running_sink(settings):
            wait_until(lambda: lease_shares(streams) == [8, 8], 30, "two shares of 8")
            holders = [streams.get(lease_key(key)) for key in PARTITIONS.stream_keys]
    by_shard = {
        shard: {h for p, h in enumerate(holders) if SHARD_MAP.partition_shards[p] == shard}
        for shard in (1, 2)
    }
    assert [len(sinks) for sinks in by_shard.values()] == [1, 1]
    assert by_shard[1] != by_shard[2]
