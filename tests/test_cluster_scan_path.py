"""The API and the sink on a real 3-master Redis Cluster, named by a comma-separated URL: code
batches, distributors and shipments, scans one by one and in bulk, a campaign's prizes within
their budget under concurrent scans, and every event in ClickHouse once."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.config import Settings
from ingest.http.app import create_app
from ingest.ops.local_services import RedisClusterServers
from ingest.sink.consumer import run_sink
from ingest.store.connect import sync_client
from tests.cluster_support import PARTITIONS, partition_owner, slot_owners, victim
from tests.conftest import api_settings
from tests.helpers import ADMIN, batch_codes, order_shipped_batch, post_scan
from tests.sink_support import (
    add_events,
    backlog,
    fresh_database,
    lease_shares,
    make_events,
    query,
    sinking,
    stored,
    wait_until,
)
from tests.test_api_campaigns import campaign, put_campaign

pytestmark = pytest.mark.cluster

Client = TestClient[Any, Any]


@pytest.fixture
def cluster_settings(cluster_url: str, keyring_path: Path, tmp_path: Path) -> Settings:
    return api_settings(cluster_url, keyring_path, tmp_path)


@pytest.fixture
async def cluster_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    cluster_settings: Settings,
) -> Client:
    return await aiohttp_client(create_app(cluster_settings))


async def test_scans_are_decided_once_per_code_on_a_cluster(cluster_client: Client) -> None:
    batch = await order_shipped_batch(cluster_client)
    codes = await batch_codes(cluster_client, batch["batch_id"], 40)

    for code in codes[:8]:
        first = await post_scan(cluster_client, {"code": code, "device_id": "d1"})
        again = await post_scan(cluster_client, {"code": code, "device_id": "d2"})
        assert (first["verdict"], first["first_scan"]) == ("genuine", True)
        assert (again["first_scan"], again["scan_count"], again["distinct_devices"]) == (
            False,
            2,
            2,
        )

    lines = "\n".join(f'{{"code": "{code}", "device_id": "d3"}}' for code in codes[8:])
    reply = await cluster_client.post(
        "/v1/scans/bulk", data=lines, headers={"Content-Type": "application/x-ndjson"}
    )
    assert reply.status == 200, await reply.text()
    answers = [line for line in (await reply.text()).splitlines() if line]
    assert len(answers) == 32
    assert all('"first_scan":true' in answer for answer in answers)

    health = await cluster_client.get("/healthz", headers=ADMIN)
    assert health.status == 200
    assert (await health.json())["unsunk_events"] == 8 * 2 + 32


async def test_prizes_stay_within_their_budget_under_concurrent_scans(
    cluster_client: Client,
) -> None:
    prize = {"id": "cap", "kind": "cash", "value": 100, "total_budget": 5, "daily_cap": 5}
    await put_campaign(cluster_client, campaign(prizes=[{**prize, "base_probability": 1.0}]))
    batch = await order_shipped_batch(cluster_client)
    codes = await batch_codes(cluster_client, batch["batch_id"], 60)

    answers = await asyncio.gather(
        *(post_scan(cluster_client, {"code": c, "member_id": f"m{n}"}) for n, c in enumerate(codes))
    )

    won = [a["prize"] for a in answers if a["prize"]]
    assert 1 <= len(won) <= 5  # paced over the day, never past the budget
    reply = await cluster_client.get("/v1/campaigns/summer", headers=ADMIN)
    [budget] = (await reply.json())["budgets"]
    assert (budget["awarded"], budget["remaining_budget"]) == (len(won), 5 - len(won))


@pytest.mark.clickhouse
async def test_the_sink_moves_scans_draws_and_changes_from_a_cluster_once(
    cluster_client: Client, cluster_settings: Settings, clickhouse_url: str
) -> None:
    await put_campaign(cluster_client, campaign())
    batch = await order_shipped_batch(cluster_client)
    codes = await batch_codes(cluster_client, batch["batch_id"], 30)
    answers = [
        await post_scan(cluster_client, {"code": code, "member_id": f"m{n % 3}"})
        for n, code in enumerate(codes * 2)
    ]
    with sinking(cluster_settings, clickhouse_url) as sunk:
        database = sunk.clickhouse_url
        assert database is not None
        wait_until(lambda: query(database, "SELECT count() FROM scans") == [(60,)], 30, "60")
        wait_until(lambda: query(database, "SELECT count() FROM batches") == [(1,)], 30, "1")
        # one draw per first scan of a code (a later scan of it draws no more)
        wait_until(lambda: query(database, "SELECT count() FROM draws") == [(30,)], 30, "30")
        stored = query(database, "SELECT scan_id FROM scans")
    assert sorted(s for (s,) in stored) == sorted(str(a["scan_id"]) for a in answers)
    health = await (await cluster_client.get("/healthz", headers=ADMIN)).json()
    assert (health["unsunk_events"], health["unsunk_draws"]) == (0, 0)


async def test_a_primary_down_refuses_only_the_scans_whose_keys_it_holds(
    cluster_client: Client, cluster_servers: RedisClusterServers
) -> None:
    owners = slot_owners(cluster_servers)
    down = victim(cluster_servers)
    await post_scan(cluster_client, {"code": "warm-up"})  # the copies of batches, references
    codes = [f"not-ours-{n}" for n in range(60)]  # counterfeit: their partition by their text
    held = {c for c in codes if partition_owner(owners, PARTITIONS.of_text(c)) == down}
    assert 0 < len(held) < len(codes)

    cluster_servers.kill(down)
    replies = [await cluster_client.post("/v1/scans", json={"code": code}) for code in codes]

    refused = {code for code, reply in zip(codes, replies, strict=True) if reply.status == 503}
    assert {reply.status for reply in replies} == {200, 503}
    assert refused == held
    for reply in replies:
        if reply.status == 503:
            assert reply.headers["Retry-After"]
            assert (await reply.json())["error"]["code"] == "unavailable"
        else:
            assert (await reply.json())["verdict"] == "counterfeit"


@pytest.mark.clickhouse
def test_two_sinks_share_the_partitions_of_a_cluster_and_store_every_event_once(
    cluster_settings: Settings, clickhouse_url: str
) -> None:
    assert cluster_settings.redis_url is not None
    client = sync_client(cluster_settings.redis_url)
    with fresh_database(clickhouse_url) as database:
        settings = dataclasses.replace(cluster_settings, clickhouse_url=database, sink_flush_ms=100)
        first_stop, second_stop = threading.Event(), threading.Event()
        first = threading.Thread(target=run_sink, args=(settings, first_stop))
        second = threading.Thread(target=run_sink, args=(settings, second_stop))
        first.start()
        second.start()
        try:
            wait_until(lambda: lease_shares(client) == [8, 8], 20, "the partitions split")
            add_events(client, make_events(1000), per_entry=4)
            wait_until(lambda: stored(database) == (1000, 1000), 20, "the events of both sinks")
            first_stop.set()
            first.join(30)
            wait_until(lambda: lease_shares(client) == [16], 20, "the second sink to take all")
            add_events(client, make_events(1000, 1000), per_entry=4)
            wait_until(lambda: stored(database) == (2000, 2000), 20, "the events after")
            wait_until(lambda: backlog(client) == 0, 20, "their acknowledgements")
        finally:
            first_stop.set()
            second_stop.set()
            first.join(30)
            second.join(30)
            client.close()
