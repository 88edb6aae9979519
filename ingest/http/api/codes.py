"""Verification of one code without any change of the code's state, for landing pages and
support staff. Each check counts toward the client address's guessing limit, as a scan does:
without that, codes could be guessed here instead."""

from __future__ import annotations

from aiohttp import web

from codes import digital_link
from codes.errors import CodeError
from fraud.velocity import GUESS_FLAGS
from ingest.http.responses import json_response
from ingest.http.state import CLIENT_ADDRESS, SCANS, SETTINGS, VERIFIERS

routes = web.RouteTableDef()


@routes.get("/v1/codes/{code}")
async def verify_code(request: web.Request) -> web.StreamResponse:
    """``valid: false`` with the reason is an answer, not an error: counterfeits are expected.
    An address blocked for guessing gets 429 whether the code is valid or not."""
    verifier = await request.app[VERIFIERS].current()
    address = request.app[CLIENT_ADDRESS].of(request)
    try:
        verified = verifier.verify(request.match_info["code"])
    except CodeError as error:
        refused = await request.app[SCANS].check_code(address, error.reason in GUESS_FLAGS)
        if refused is not None:
            raise refused from None
        return json_response({"valid": False, "reason": error.reason, "message": str(error)})
    refused = await request.app[SCANS].check_code(address, False)
    if refused is not None:
        raise refused
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
