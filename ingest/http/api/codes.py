"""Verification of one code without any change of state: for landing pages and support staff."""

from __future__ import annotations

from aiohttp import web

from codes import digital_link
from codes.errors import CodeError
from ingest.http.responses import json_response
from ingest.http.state import SETTINGS, VERIFIERS

routes = web.RouteTableDef()


@routes.get("/v1/codes/{code}")
async def verify_code(request: web.Request) -> web.StreamResponse:
    """``valid: false`` with the reason is an answer, not an error: counterfeits are expected."""
    verifier = await request.app[VERIFIERS].current()
    try:
        verified = verifier.verify(request.match_info["code"])
    except CodeError as error:
        return json_response({"valid": False, "reason": error.reason, "message": str(error)})
    batch = verified.batch
    canonical = verified.canonical
    return json_response(
        {
            "valid": True,
            "code": canonical,
            "serial": verified.serial,
            "batch_id": batch.batch_id,
            "sku": batch.sku,
            "gtin": batch.gtin,
            "kind": batch.kind.value,
            "status": batch.status.value,
            "digital_link": digital_link.build(
                request.app[SETTINGS].resolver_url, batch.gtin, canonical
            ),
        }
    )
