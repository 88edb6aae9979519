"""Admin: prize campaigns. Public: each campaign's fairness commitments."""

from __future__ import annotations

import time
from typing import cast

from aiohttp import web

from ingest.errors import NotFound
from ingest.http.auth import requires
from ingest.http.request_body import parse_json, read_body
from ingest.http.responses import json_response
from ingest.http.state import CAMPAIGNS, REDIS, SETTINGS
from ingest.http.tokens import Role
from ingest.store.scripts import RedisPyCommands, ScriptRunner
from rewards import status, store
from rewards.campaigns import Campaign
from rewards.draws import LiveCampaign

routes = web.RouteTableDef()

MAX_CAMPAIGN_BYTES = 256 * 1024


@routes.put("/v1/campaigns/{campaign_id}")
@requires(Role.ADMIN)
async def put_campaign(request: web.Request) -> web.StreamResponse:
    """Creates (201) or replaces (200) a campaign as a new version; budgets already given out
    count against the new one. Workers draw with it within a tenth of a second."""
    document = parse_json(await read_body(request, MAX_CAMPAIGN_BYTES), "body")
    tiers = request.app[SETTINGS].member_tiers
    campaign = Campaign.from_json(request.match_info["campaign_id"], document, tiers)
    redis = request.app[REDIS]
    version = await ScriptRunner(RedisPyCommands(redis)).run(store.save(campaign))
    async with redis.pipeline(transaction=False) as pipe:
        for command in store.registered(campaign.campaign_id):
            pipe.execute_command(*command)
        await pipe.execute()
    request.app[CAMPAIGNS].expire()
    return json_response(
        {"campaign_id": campaign.campaign_id, **campaign.to_json(), "version": version},
        201 if version == 1 else 200,
    )


@routes.get("/v1/campaigns")
@requires(Role.ADMIN)
async def list_campaigns(request: web.Request) -> web.StreamResponse:
    live = (await request.app[CAMPAIGNS].current()).by_id
    now_ms = int(time.time() * 1000)
    return json_response(
        {
            "campaigns": [
                {
                    "campaign_id": cid,
                    "name": live[cid].campaign.name,
                    "active": live[cid].campaign.active(now_ms),
                    "url": f"/v1/campaigns/{cid}",
                }
                for cid in sorted(live)
            ]
        }
    )


@routes.get("/v1/campaigns/{campaign_id}")
@requires(Role.ADMIN)
async def show_campaign(request: web.Request) -> web.StreamResponse:
    """The campaign with its live budgets: given out in all and today, and what remains."""
    live = await _campaign(request)
    now_ms = int(time.time() * 1000)
    async with request.app[REDIS].pipeline(transaction=False) as pipe:
        for command in status.budget_reads(live, now_ms):
            pipe.execute_command(*command)
        awarded, today = await pipe.execute()
    return json_response(
        {
            "campaign_id": live.campaign.campaign_id,
            **live.campaign.to_json(),
            "version": live.version,
            "active": live.campaign.active(now_ms),
            "budgets": status.budgets(
                live, now_ms, cast(dict[str, str], awarded), cast(dict[str, str], today)
            ),
        }
    )


@routes.get("/v1/campaigns/{campaign_id}/fairness")
async def show_fairness(request: web.Request) -> web.StreamResponse:
    """Public: the SHA-256 of every day's draw seed, and the seeds of the days that are over."""
    live = await _campaign(request)
    return json_response(status.fairness(live, int(time.time() * 1000)))


async def _campaign(request: web.Request) -> LiveCampaign:
    campaign_id = request.match_info["campaign_id"]
    live = (await request.app[CAMPAIGNS].current()).by_id.get(campaign_id)
    if live is None:
        raise NotFound(f"no campaign {campaign_id!r}", "unknown_campaign")
    return live
