"""The demo of ``scanward up --demo``: a batch, a distributor around Shanghai that most of it is
shipped to, a prize campaign on its SKU, and the commands that show a scan end to end."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from codes.batches import Batch, BatchOrder
from codes.keyring import Keyring
from fraud import shipments
from fraud.distributors import Distributor
from fraud.shipments import SerialRange
from ingest.config import Settings
from ingest.store.batches import BatchStore
from ingest.store.scripts import AsyncRedis, RedisPyCommands, ScriptRunner
from rewards import store
from rewards.campaigns import Campaign

DEMO_SKU, DEMO_GTIN = "DEMO-BEER-500ML", "04006381333931"
DEMO_DISTRIBUTOR = "DEMO-EAST"
DEMO_TERRITORY = {
    "type": "Polygon",
    "coordinates": [[[120.8, 30.6], [122.0, 30.6], [122.0, 31.8], [120.8, 31.8], [120.8, 30.6]]],
}
UNSHIPPED = 100  # the batch's last codes: scanned, they show a harvested code
DEMO_CAMPAIGN = "DEMO-SUMMER"
_DEMO_PRIZES = [
    {
        "id": "red-envelope",
        "kind": "cash",
        "value": 500,
        "total_budget": 10_000,
        "daily_cap": 500,
        "base_probability": 0.2,
    },
    {
        "id": "points",
        "kind": "points",
        "value": 10,
        "total_budget": 1_000_000,
        "base_probability": 0.3,
        "tier_weights": {"1": 1.5, "2": 2},
    },
    {
        "id": "phone",
        "kind": "item",
        "value": 1,
        "total_budget": 30,
        "daily_cap": 1,
        "guaranteed_daily": 1,
        "base_probability": 0.001,
        "min_tier": 1,
    },
]


async def demo_batch(redis: AsyncRedis, keyring_file: Path, secret: str) -> Batch:
    """The demo batch, made and shipped once per data folder."""
    store = BatchStore(redis)
    batch = next((b for b in await store.index() if b.sku == DEMO_SKU), None)
    if batch is None:
        keyring = Keyring.load(keyring_file, secret)
        order = BatchOrder.create(DEMO_SKU, DEMO_GTIN, 1000, max_quantity=1000)
        batch = await store.create(order, keyring.current.key_id)
        await _ship(redis, batch)
    return batch


async def _ship(redis: AsyncRedis, batch: Batch) -> None:
    scripts = ScriptRunner(RedisPyCommands(redis))
    now_ms = int(time.time() * 1000)
    distributor = Distributor.create(
        DEMO_DISTRIBUTOR, "Demo distributor, Shanghai", DEMO_TERRITORY, now_ms
    )
    await scripts.run(distributor.put())
    shipped = SerialRange(batch.first_serial, batch.last_serial - UNSHIPPED, expand=False)
    await scripts.run(shipments.ship(DEMO_DISTRIBUTOR, "S-DEMO", now_ms, [shipped]))


async def demo_campaign(redis: AsyncRedis, tiers: int) -> None:
    """A month-long campaign on the demo SKU, saved once per data folder."""
    if await redis.exists(store.campaign_key(DEMO_CAMPAIGN, "config")):
        return
    now = datetime.now(UTC)
    document = {
        "name": "Demo summer caps",
        "start": now.isoformat(),
        "end": (now + timedelta(days=30)).isoformat(),
        "timezone": "Asia/Shanghai",
        "skus": [DEMO_SKU],
        "member_daily_win_limit": 3,
        "prizes": _DEMO_PRIZES,
    }
    campaign = Campaign.from_json(DEMO_CAMPAIGN, document, tiers)
    await ScriptRunner(RedisPyCommands(redis)).run(store.save(campaign))
    await RedisPyCommands(redis).execute(store.registered(DEMO_CAMPAIGN))


def instructions(settings: Settings, api_url: str, batch: Batch) -> str:
    """The commands to try, naming the admin token's variable: the token itself is a secret,
    never printed (the shell fills it in where it is set)."""
    auth = '-H "Authorization: Bearer $SCANWARD_ADMIN_TOKEN"'
    token_state = (
        "set in scanward's environment: export it in the shell that runs these commands"
        if settings.admin_token
        else "not set: set it, or use a token of 'scanward token create --role admin'"
    )
    shipped = batch.quantity - UNSHIPPED
    return f"""
admin token: $SCANWARD_ADMIN_TOKEN ({token_state})
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
campaign {DEMO_CAMPAIGN} draws prizes on first scans that carry a member:
  curl -s -H 'Content-Type: application/json' \\
       -d '{{"code": "<another code>", "member_id": "alice"}}' {api_url}/v1/scans
  curl -s {auth} {api_url}/v1/members/alice
  curl -s {auth} {api_url}/v1/campaigns/{DEMO_CAMPAIGN}
  curl -s {api_url}/v1/campaigns/{DEMO_CAMPAIGN}/fairness
  .venv/bin/scanward rewards audit --data-dir {settings.data_dir} \\
       --campaign {DEMO_CAMPAIGN} --day {datetime.now(ZoneInfo("Asia/Shanghai")).date()}
  curl -s {auth} -H 'Content-Type: application/json' \\
       -d '{{"sku": "BEER-500", "gtin": "{DEMO_GTIN}", "quantity": 1000000}}' {api_url}/v1/batches
"""
