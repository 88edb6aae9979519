"""The API on a real 3-master Redis Cluster, named by a comma-separated URL: code batches,
distributors and shipments, scans one by one and in bulk, and a campaign's prizes within their
budget under concurrent scans."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.http.app import create_app
from tests.conftest import api_settings
from tests.helpers import ADMIN, batch_codes, order_shipped_batch, post_scan
from tests.test_api_campaigns import campaign, put_campaign

pytestmark = pytest.mark.cluster

Client = TestClient[Any, Any]


@pytest.fixture
async def cluster_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    cluster_url: str,
    keyring_path: Path,
    tmp_path: Path,
) -> Client:
    return await aiohttp_client(create_app(api_settings(cluster_url, keyring_path, tmp_path)))


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

    health = await cluster_client.get("/healthz")
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
