"""Aggregate alerts: scans over HTTP, sunk into ClickHouse, detected, listed by the API."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fraud.policy import FraudPolicy
from ingest.config import Settings
from ingest.warehouse import alerts
from ingest.warehouse.client import connect
from tests.helpers import ADMIN, batch_codes, order_batch, post_scan
from tests.sink_support import query, wait_until
from tests.test_api_fraud import IN_BEIJING, IN_SHANGHAI, put_east_and_north

POLICY = FraudPolicy(alert_min_scans=5, alert_share=0.2, farm_codes_per_hour=3)

Client = TestClient[Any, Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, fraud_policy=POLICY)


async def _scan_a_world(client: Client) -> dict[str, Any]:
    """Ten units shipped east: four surface in Beijing, one is cloned, a farm scans three."""
    await put_east_and_north(client)
    batch = await order_batch(client, quantity=10)
    reply = await client.post(
        "/v1/shipments",
        json={"distributor_id": "EAST", "batch_id": batch["batch_id"]},
        headers=ADMIN,
    )
    assert reply.status == 201
    codes = await batch_codes(client, batch["batch_id"], limit=10)
    for code in codes[:4]:
        await post_scan(client, {"code": code, **IN_BEIJING})
    for n, code in enumerate(codes[4:9]):
        await post_scan(client, {"code": code, **IN_SHANGHAI, "device_id": f"honest-{n}"})
    await post_scan(client, {"code": codes[4], **IN_BEIJING, "device_id": "cloner"})
    for code in codes[5:9]:
        await post_scan(client, {"code": code, **IN_SHANGHAI, "device_id": "farm"})
    return {"batch": batch, "codes": codes}


@pytest.mark.redis
@pytest.mark.clickhouse
async def test_alerts_point_at_diversion_clones_and_farms(
    app_client: Client, sunk_settings: Settings
) -> None:
    world = await _scan_a_world(app_client)
    url = sunk_settings.clickhouse_url
    assert url is not None
    wait_until(lambda: query(url, "SELECT count() FROM scans") == [(14,)], 20, "14 rows")
    client = connect(url)
    try:
        alerts.detect(client, POLICY)
        alerts.detect(client, POLICY)  # found again: replaced, not repeated
    finally:
        client.disconnect()
    reply = await app_client.get("/v1/alerts", headers=ADMIN)
    assert reply.status == 200
    found = {a["kind"]: a for a in (await reply.json())["alerts"]}
    assert set(found) == {"diversion_batch", "diversion_region", "cloned_code", "device_farm"}
    by_batch = found["diversion_batch"]
    assert (by_batch["distributor_id"], by_batch["batch_id"]) == (
        "EAST",
        world["batch"]["batch_id"],
    )
    assert (by_batch["scans"], by_batch["flagged"]) == (14, 5)  # Beijing: 4 + the clone
    assert by_batch["status"] == "open"
    assert by_batch["first_seen"].endswith("Z")
    region = found["diversion_region"]
    assert (region["distributor_id"], region["surfaced_in"], region["flagged"]) == (
        "EAST",
        "NORTH",
        5,
    )
    assert found["cloned_code"]["code"] == world["codes"][4]
    assert (found["cloned_code"]["scans"], found["cloned_code"]["flagged"]) == (2, 1)
    assert found["device_farm"]["device_id"] == "farm"
    assert found["device_farm"]["flagged"] == 1
    only_farms = await app_client.get("/v1/alerts?kind=device_farm", headers=ADMIN)
    assert [a["kind"] for a in (await only_farms.json())["alerts"]] == ["device_farm"]
    rows = query(url, "SELECT count() FROM fraud_alerts FINAL")
    assert rows == [(4,)]


@pytest.mark.redis
@pytest.mark.parametrize("parameters", ["kind=everything", "limit=0", "limit=x", "limit=5000"])
async def test_bad_alert_queries_are_refused(client: Client, parameters: str) -> None:
    reply = await client.get(f"/v1/alerts?{parameters}", headers=ADMIN)
    assert reply.status == 422


@pytest.mark.redis
async def test_alerts_without_clickhouse_are_unavailable(client: Client) -> None:
    reply = await client.get("/v1/alerts", headers=ADMIN)
    assert reply.status == 503
    assert (await reply.json())["error"]["code"] == "no_clickhouse"
    assert (await client.get("/v1/alerts")).status == 401
