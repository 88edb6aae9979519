"""Admin: distributors and the territories their goods may be sold in."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from fraud.distributors import Distributor
from ingest.errors import NotFound
from ingest.http.auth import requires
from ingest.http.request_body import json_object
from ingest.http.responses import json_response
from ingest.http.state import REDIS, REFERENCES
from ingest.http.tokens import Role
from ingest.store.scripts import RedisPyCommands, ScriptRunner

routes = web.RouteTableDef()

MAX_DISTRIBUTOR_BYTES = 2 * 1024 * 1024  # fraud.territory.MAX_TOTAL_VERTICES, with room


@routes.put("/v1/distributors/{distributor_id}")
@requires(Role.ADMIN)
async def put_distributor(request: web.Request) -> web.StreamResponse:
    """Creates (201) or replaces (200) a distributor; every worker picks the change up within
    a tenth of a second."""
    body = await json_object(request, MAX_DISTRIBUTOR_BYTES)
    name, territory = body.document("name"), body.document("territory")
    body.done()
    now_ms = int(time.time() * 1000)
    # In a thread: the loop then stalls ~5 ms at a time (the GIL's switch interval), not ~30 ms
    # at once for the largest territory.
    distributor = await asyncio.to_thread(
        Distributor.create, request.match_info["distributor_id"], name, territory, now_ms
    )
    created = await ScriptRunner(RedisPyCommands(request.app[REDIS])).run(distributor.put())
    request.app[REFERENCES].expire()
    return json_response(distributor.to_json(), status=201 if created else 200)


@routes.get("/v1/distributors/{distributor_id}")
@requires(Role.LINE)
async def show_distributor(request: web.Request) -> web.StreamResponse:
    distributor_id = request.match_info["distributor_id"]
    distributor = (await request.app[REFERENCES].current()).distributors.get(distributor_id)
    if distributor is None:
        raise NotFound(f"no distributor {distributor_id!r}", "unknown_distributor")
    return json_response(distributor.to_json())


@routes.get("/v1/distributors")
@requires(Role.LINE)
async def list_distributors(request: web.Request) -> web.StreamResponse:
    """Ids and names; the territories are at each distributor's own URL."""
    known = (await request.app[REFERENCES].current()).distributors
    return json_response(
        {
            "distributors": [
                {
                    "distributor_id": d.distributor_id,
                    "name": d.name,
                    "updated_ms": d.updated_ms,
                    "url": f"/v1/distributors/{d.distributor_id}",
                }
                for d in sorted(known.values(), key=lambda d: d.distributor_id)
            ]
        }
    )
