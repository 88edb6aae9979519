"""Liveness and readiness for load balancers and `scanward up`."""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from ingest.responses import json_response
from ingest.state import REDIS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[REDIS].ping()
    except RedisError as error:
        return json_response({"status": "unavailable", "redis": str(error)}, status=503)
    return json_response({"status": "ok", "redis": "ok"})
