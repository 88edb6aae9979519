"""Small helpers shared by the API tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fraud.policy import FraudPolicy

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORDER = {"sku": "BEER-500", "gtin": "4006381333931", "quantity": 1000, "line_id": "L1"}
AiohttpClient = Any  # the pytest-aiohttp fixture
# Every test client is 127.0.0.1: the rules per client address would take a test's scans for a
# farm's. The harness' settings lift them; tests of those rules set their own policy.
ONE_ADDRESS_RULES = {
    "address_flag_valid_per_day": 10**9,
    "address_flag_devices_per_day": 10**9,
    "address_flag_no_device_per_day": 10**9,
    "address_max_scans_per_day": 10**9,
}
ONE_ADDRESS_POLICY = FraudPolicy().with_overrides(ONE_ADDRESS_RULES)
ONE_ADDRESS_POLICY_JSON = orjson.dumps(ONE_ADDRESS_RULES).decode()  # SCANWARD_FRAUD_POLICY


async def order_batch(client: TestClient[Any, Any], **changes: object) -> dict[str, Any]:
    reply = await client.post("/v1/batches", json={**ORDER, **changes}, headers=ADMIN)
    assert reply.status == 201, await reply.text()
    body: dict[str, Any] = await reply.json()
    return body


async def batch_codes(client: TestClient[Any, Any], batch_id: str, limit: int = 10) -> list[str]:
    reply = await client.get(f"/v1/batches/{batch_id}/codes?limit={limit}", headers=ADMIN)
    assert reply.status == 200
    return (await reply.text()).split()


async def post_scan(client: TestClient[Any, Any], body: Mapping[str, object]) -> dict[str, Any]:
    """``POST /v1/scans``, which must answer 200; its JSON answer."""
    reply = await client.post("/v1/scans", json=body)
    assert reply.status == 200, await reply.text()
    answer: dict[str, Any] = await reply.json()
    return answer


DISTRIBUTOR = "CN"
CHINA = {"type": "Polygon", "coordinates": [[[73, 18], [135, 18], [135, 54], [73, 54], [73, 18]]]}
DISTRIBUTOR_BODY = {"name": "All of China", "territory": CHINA}
DISTRIBUTOR_URL = f"/v1/distributors/{DISTRIBUTOR}"


def shipment_of(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The body that ships a whole batch to ``DISTRIBUTOR``."""
    return {"distributor_id": DISTRIBUTOR, "batch_id": batch["batch_id"]}


async def ship_batch(client: TestClient[Any, Any], batch: Mapping[str, Any]) -> None:
    """Ships ``batch`` to a distributor whose territory is all of China: its codes then scan
    genuine anywhere there."""
    reply = await client.put(
        f"/v1/distributors/{DISTRIBUTOR}", json=DISTRIBUTOR_BODY, headers=ADMIN
    )
    assert reply.status in (200, 201), await reply.text()
    reply = await client.post("/v1/shipments", json=shipment_of(batch), headers=ADMIN)
    assert reply.status == 201, await reply.text()


async def order_shipped_batch(client: TestClient[Any, Any], **changes: object) -> dict[str, Any]:
    batch = await order_batch(client, **changes)
    await ship_batch(client, batch)
    return batch


Sample = tuple[str, tuple[tuple[str, str], ...]]
"""A metric sample's name (with its suffix: ``_total``, ``_bucket``...) and sorted labels."""


async def metric_samples(client: TestClient[Any, Any]) -> dict[Sample, float]:
    """Every sample of a ``GET /metrics`` scrape."""
    reply = await client.get("/metrics", headers=ADMIN)
    assert reply.status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(await reply.text())
        for sample in family.samples
    }
