"""Admin: loyalty members, their tiers, points balances and recent awards."""

from __future__ import annotations

from typing import cast

import orjson
from aiohttp import web

from ingest.http.auth import requires
from ingest.http.request_body import json_object
from ingest.http.responses import json_response
from ingest.http.state import CAMPAIGNS, REDIS, SETTINGS
from ingest.http.tokens import Role
from ingest.store.scripts import RedisPyCommands
from rewards import members
from rewards.store import campaign_key

routes = web.RouteTableDef()

RECENT_AWARDS = 10


@routes.put("/v1/members/{member_id}")
@requires(Role.ADMIN)
async def put_member(request: web.Request) -> web.StreamResponse:
    member_id = _member_id(request)
    body = await json_object(request, request.app[SETTINGS].max_body_bytes)
    raw_tier = body.integer("tier")
    body.done()
    tier = members.check_tier(raw_tier, request.app[SETTINGS].member_tiers)
    [created] = await RedisPyCommands(request.app[REDIS]).execute(
        [members.set_tier(member_id, tier)]
    )
    return json_response({"member_id": member_id, "tier": tier}, 201 if created else 200)


@routes.get("/v1/members/{member_id}")
@requires(Role.ADMIN)
async def show_member(request: web.Request) -> web.StreamResponse:
    """Tier (0 for a member never given one), points balance by campaign and in all, and the
    latest awards over all campaigns."""
    member_id = _member_id(request)
    campaign_ids = sorted((await request.app[CAMPAIGNS].current()).by_id)
    async with request.app[REDIS].pipeline(transaction=False) as pipe:
        pipe.execute_command(*members.get_tier(member_id))
        for cid in campaign_ids:
            pipe.hget(campaign_key(cid, "points"), member_id)
            pipe.lrange(campaign_key(cid, f"recent:{member_id}"), 0, RECENT_AWARDS - 1)
        tier, *replies = await pipe.execute()
    points = {
        cid: int(balance)
        for cid, balance in zip(campaign_ids, replies[0::2], strict=True)
        if balance is not None
    }
    recent = [
        {"campaign_id": cid, **orjson.loads(award)}
        for cid, awards in zip(campaign_ids, replies[1::2], strict=True)
        for award in cast(list[str], awards)
    ]
    recent.sort(key=lambda award: award["time_ms"], reverse=True)
    return json_response(
        {
            "member_id": member_id,
            "tier": int(tier) if tier is not None else 0,
            "points_balance": sum(points.values()),
            "points_by_campaign": points,
            "recent_awards": recent[:RECENT_AWARDS],
        }
    )


def _member_id(request: web.Request) -> str:
    return members.check_member_id(request.match_info["member_id"])
