"""The demo of ``scanward up --demo``: a batch, a distributor around Shanghai that most of it is
shipped to, and the commands that show a scan end to end."""

from __future__ import annotations

import time
from pathlib import Path

from redis.asyncio import Redis

from codes.batches import Batch, BatchOrder
from codes.keyring import Keyring
from fraud import shipments
from fraud.distributors import Distributor
from fraud.shipments import SerialRange
from ingest.batch_store import BatchStore
from ingest.config import Settings
from ingest.redis_scripts import RedisPyCommands, ScriptRunner

DEMO_SKU, DEMO_GTIN = "DEMO-BEER-500ML", "04006381333931"
DEMO_DISTRIBUTOR = "DEMO-EAST"
DEMO_TERRITORY = {
    "type": "Polygon",
    "coordinates": [[[120.8, 30.6], [122.0, 30.6], [122.0, 31.8], [120.8, 31.8], [120.8, 30.6]]],
}
UNSHIPPED = 100  # the batch's last codes: scanned, they show a harvested code


async def demo_batch(redis: Redis, keyring_file: Path, secret: str) -> Batch:
    """The demo batch, made and shipped once per data folder."""
    store = BatchStore(redis)
    batch = next((b for b in await store.index() if b.sku == DEMO_SKU), None)
    if batch is None:
        keyring = Keyring.load(keyring_file, secret)
        order = BatchOrder.create(DEMO_SKU, DEMO_GTIN, 1000, max_quantity=1000)
        batch = await store.create(order, keyring.current.key_id)
        await _ship(redis, batch)
    return batch


async def _ship(redis: Redis, batch: Batch) -> None:
    scripts = ScriptRunner(RedisPyCommands(redis))
    now_ms = int(time.time() * 1000)
    distributor = Distributor.create(
        DEMO_DISTRIBUTOR, "Demo distributor, Shanghai", DEMO_TERRITORY, now_ms
    )
    await scripts.run(distributor.put())
    shipped = SerialRange(batch.first_serial, batch.last_serial - UNSHIPPED, expand=False)
    await scripts.run(shipments.ship(DEMO_DISTRIBUTOR, "S-DEMO", now_ms, [shipped]))


def instructions(settings: Settings, api_url: str, batch: Batch) -> str:
    token = settings.admin_token or "<SCANWARD_ADMIN_TOKEN>"
    auth = f"-H 'Authorization: Bearer {token}'"
    shipped = batch.quantity - UNSHIPPED
    return f"""
demo batch {batch.batch_id}: {batch.quantity} codes of {batch.sku}; the first {shipped} are
shipped to {DEMO_DISTRIBUTOR} (territory around Shanghai), the last {UNSHIPPED} never were
  curl -s {auth} '{api_url}/v1/batches/{batch.batch_id}/codes?format=url&limit=3'
  curl -s {api_url}/v1/codes/<one of those codes>
  curl -s -H 'Content-Type: application/json' \\
       -d '{{"code": "<one of those URLs>", "lat": 31.23, "lon": 121.47}}' {api_url}/v1/scans
  (the same code scanned at "lat": 39.90, "lon": 116.40 by another "device_id" is a clone;
   another code scanned there is flagged out_of_territory)
  .venv/bin/scanward sql --data-dir {settings.data_dir} \\
       "SELECT time, code, verdict, risk, flags FROM scans"
  curl -s {auth} '{api_url}/v1/alerts'
  curl -s {auth} -H 'Content-Type: application/json' \\
       -d '{{"sku": "BEER-500", "gtin": "{DEMO_GTIN}", "quantity": 1000000}}' {api_url}/v1/batches
"""
