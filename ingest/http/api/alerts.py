"""Admin: the open fraud alerts, from ClickHouse (``scanward alerts run`` writes them)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ingest.errors import Unavailable, ValidationFailed
from ingest.http.auth import requires
from ingest.http.responses import json_response
from ingest.http.state import SETTINGS
from ingest.http.tokens import Role
from ingest.warehouse import connect, describe, open_alerts

routes = web.RouteTableDef()

MAX_LIMIT = 1_000
QUERY_TIMEOUT_S = 10
KINDS = ("diversion_batch", "diversion_region", "cloned_code", "device_farm")


@routes.get("/v1/alerts")
@requires(Role.ADMIN)
async def list_alerts(request: web.Request) -> web.StreamResponse:
    """``?kind=&distributor_id=&limit=`` narrow the list; newest activity first."""
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValidationFailed(f"kind must be one of: {', '.join(KINDS)}")
    limit_text = request.query.get("limit", "100")
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= MAX_LIMIT):
        raise ValidationFailed(f"limit must be an integer from 1 to {MAX_LIMIT}")
    distributor_id = request.query.get("distributor_id")
    url = request.app[SETTINGS].clickhouse_url
    if url is None:
        raise Unavailable("alerts live in ClickHouse, which is not configured", "no_clickhouse")

    def query() -> list[dict[str, Any]]:
        client = connect(url, timeout_s=QUERY_TIMEOUT_S)
        try:
            return open_alerts(client, int(limit_text), kind, distributor_id)
        finally:
            client.disconnect()

    try:
        found = await asyncio.wait_for(asyncio.to_thread(query), QUERY_TIMEOUT_S)
    except TimeoutError:
        raise Unavailable("ClickHouse did not answer in time; retry shortly") from None
    except Exception as error:  # clickhouse-driver raises socket and its own errors alike
        raise Unavailable(f"ClickHouse is unavailable: {describe(error)}") from None
    return json_response({"alerts": found})
