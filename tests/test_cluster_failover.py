"""A Redis Cluster of 3 primaries with two replicas each, the API told to wait for both
(``redis_wait_replicas``): a scan is answered only once every replica holds it, so whichever
replica takes over from a killed primary has every answered scan. Waiting for fewer replicas
than a primary has is not enough: Redis may promote the replica that had not acknowledged (seen
here with one of two: answered scans lost in some failovers). The price: a promoted primary has
a replica too few until the killed node is back as its replica, and refuses scans meanwhile."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient

from ingest.http.app import create_app
from ingest.ops.local_services import RedisClusterServers, start_redis_cluster
from ingest.scan.state import SEEN_RANGE, partition_of_serial
from tests.cluster_support import PARTITIONS, partition_owner, slot_owners, victim
from tests.conftest import api_settings
from tests.helpers import ADMIN, order_shipped_batch, post_scan

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

Client = TestClient[Any, Any]
_CODES_PER_PARTITION = 10
KILLS = 5


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[RedisClusterServers]:
    cluster = start_redis_cluster(tmp_path / "cluster", masters=3, replicas=2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def waiting_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    replicated: RedisClusterServers,
    keyring_path: Path,
    tmp_path: Path,
) -> Client:
    settings = api_settings(replicated.url, keyring_path, tmp_path)
    waiting = dataclasses.replace(settings, redis_wait_replicas=2, redis_wait_timeout_ms=500)
    return await aiohttp_client(create_app(waiting))


async def test_five_primaries_killed_in_a_row_lose_no_answered_scan(
    waiting_client: Client, replicated: RedisClusterServers
) -> None:
    for _ in range(KILLS):
        primary = victim(replicated)
        codes = await _codes_on(waiting_client, replicated, primary)
        first = [await post_scan(waiting_client, {"code": code}) for code in codes]
        assert all(answer["first_scan"] for answer in first)

        replicated.kill(primary)
        replicated.wait_until_ok()  # a replica took over
        replicated.restart(primary)  # back as the new primary's replica
        replicated.wait_until_ok()
        assert {len(_replicas_of(replicated, p)) for p in replicated.primaries()} == {2}
        again = [await _answered(waiting_client, code) for code in codes]

        assert [a["first_scan"] for a in again] == [False] * len(again)  # none was lost
        assert [a["scan_count"] for a in again] == [2] * len(again)


async def test_without_replicas_to_acknowledge_the_primary_s_scans_are_refused(
    waiting_client: Client, replicated: RedisClusterServers
) -> None:
    primary = victim(replicated)
    codes = await _codes_on(waiting_client, replicated, primary)
    for replica in _replicas_of(replicated, primary):
        replicated.kill(replica)

    refused = await waiting_client.post("/v1/scans", json={"code": codes[0]})
    elsewhere = await post_scan(waiting_client, {"code": "not-ours"})

    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "outcome_unknown"
    assert elsewhere["verdict"] == "counterfeit"


def _replicas_of(cluster: RedisClusterServers, primary: str) -> list[str]:
    with redis.Redis.from_url(primary) as client:
        replication = client.info("replication")
    replicas = (replication[f"slave{i}"] for i in range(replication["connected_slaves"]))
    return [cluster.url_at(int(r["port"])) for r in replicas]


async def _codes_on(client: Client, cluster: RedisClusterServers, primary: str) -> list[str]:
    """Codes of a shipped batch whose scan state lives on ``primary``, a few per partition."""
    quantity = SEEN_RANGE * (PARTITIONS.scans + 1)  # every partition, each a whole range at least
    batch = await order_shipped_batch(client, quantity=quantity)
    owners = slot_owners(cluster)
    codes = []
    for partition in range(PARTITIONS.scans):
        if partition_owner(owners, partition) != primary:
            continue
        offset = next(
            o
            for o in range(0, quantity - _CODES_PER_PARTITION, _CODES_PER_PARTITION)
            if partition_of_serial(batch["first_serial"] + o, PARTITIONS) == partition
            and partition_of_serial(batch["first_serial"] + o + _CODES_PER_PARTITION, PARTITIONS)
            == partition
        )
        reply = await client.get(
            f"/v1/batches/{batch['batch_id']}/codes?offset={offset}&limit={_CODES_PER_PARTITION}",
            headers=ADMIN,
        )
        codes += (await reply.text()).split()
    assert codes
    return codes


async def _answered(client: Client, code: str) -> dict[str, Any]:
    """A scan retried with its scan_id, as a client does, while it gets 503: right after a
    failover, the replicas may still be catching up with the new primary."""
    body = {"code": code, "scan_id": f"again-{code}"}
    refusal = ""
    for _ in range(300):
        reply = await client.post("/v1/scans", json=body)
        if reply.status != 503:
            assert reply.status == 200, await reply.text()
            answer: dict[str, Any] = await reply.json()
            return answer
        refusal = await reply.text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{code} was refused for 30 s: {refusal}")
