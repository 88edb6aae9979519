"""Keeps this worker's copy of the campaigns (configuration, version, day seeds) as fresh as
Redis, asking at most once per ``max_age_s`` whether any was saved."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import cast

import orjson

from ingest.store.outage import LastCopy
from ingest.store.scripts import AsyncRedis
from rewards import store
from rewards.campaigns import Campaign
from rewards.draws import LiveCampaign
from rewards.errors import CampaignError

log = logging.getLogger(__name__)


class Campaigns:
    """The saved campaigns, indexed by the SKUs and batches they cover."""

    def __init__(self, live: Sequence[LiveCampaign], version: int) -> None:
        self.version = version
        self.by_id = {c.campaign.campaign_id: c for c in live}
        self._covering: dict[tuple[str, str], list[LiveCampaign]] = {}
        self._by_sku: dict[str, list[LiveCampaign]] = defaultdict(list)
        self._by_batch: dict[str, list[LiveCampaign]] = defaultdict(list)
        for c in sorted(live, key=lambda c: c.campaign.campaign_id):
            for sku in c.campaign.skus:
                self._by_sku[sku].append(c)
            for batch_id in c.campaign.batches:
                self._by_batch[batch_id].append(c)

    def covering(self, sku: str, batch_id: str, now_ms: int) -> list[LiveCampaign]:
        """The campaigns open at ``now_ms`` for a code of this SKU and batch, by id."""
        key = (sku, batch_id)
        found = self._covering.get(key)
        if found is None:
            either = self._by_sku.get(sku, []) + self._by_batch.get(batch_id, [])
            unique = {c.campaign.campaign_id: c for c in either}
            found = self._covering[key] = [unique[cid] for cid in sorted(unique)]
        return [c for c in found if c.campaign.active(now_ms)]


class CampaignSource:
    """Needs a client made with ``decode_responses=True``."""

    def __init__(self, redis: AsyncRedis, tiers: int) -> None:
        self._redis = redis
        self._tiers = tiers
        self._campaigns = Campaigns([], 0)
        self._checked_at = -float("inf")
        self._refreshing = asyncio.Lock()
        self._last = LastCopy[Campaigns]("campaigns")

    def expire(self) -> None:
        """A campaign was saved: the next look must ask Redis."""
        self._checked_at = -float("inf")

    async def current(self, max_age_s: float = 0.0, *, reload: bool = False) -> Campaigns:
        """The campaigns, reloaded when ``{rewards}:version`` moved or, with ``reload``, in any
        case (a draw found a campaign changed: its save may not have moved the counter yet)."""
        if not reload and time.monotonic() - self._checked_at < max_age_s:
            return self._campaigns
        async with self._refreshing:
            checked_at = time.monotonic()
            self._campaigns = await self._last.refreshed(lambda: self._reload(reload))
            self._checked_at = checked_at
        return self._campaigns

    async def _reload(self, always: bool) -> Campaigns:
        version = int(await self._redis.get(store.VERSION_KEY) or 0)
        if always or version != self._campaigns.version:
            return Campaigns(await self._load(), version)
        return self._campaigns

    async def _load(self) -> list[LiveCampaign]:
        """Each campaign's version, then that version's configuration (a save in between
        cannot pair one version's number with another's configuration)."""
        ids = sorted(cast(set[str], await self._redis.smembers(store.CAMPAIGNS_KEY)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.get(store.campaign_key(cid, "version"))
            versions = await pipe.execute()
        saved = [(cid, int(v)) for cid, v in zip(ids, versions, strict=True) if v is not None]
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid, version in saved:
                pipe.hget(store.campaign_key(cid, "configs"), str(version))
                pipe.hgetall(store.campaign_key(cid, "seeds"))
            replies = await pipe.execute()
        live = []
        for at, (cid, version) in enumerate(saved):
            config, seeds = replies[2 * at : 2 * at + 2]
            if config is None:
                continue
            try:
                campaign = Campaign.from_json(cid, orjson.loads(config), self._tiers)
            except CampaignError as error:  # saved under other settings (fewer tiers)
                log.error("campaign %s cannot run: %s", cid, error)
                continue
            live.append(LiveCampaign(campaign, version, store.parse_seeds(seeds), self._tiers))
        return live
