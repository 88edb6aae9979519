"""Batches for packaging lines: order, look up, revoke, download the codes."""

from __future__ import annotations

from aiohttp import web

from codes.batches import Batch, BatchOrder, BatchStatus
from codes.errors import CodeError
from codes.export import CodeExport, ExportFormat
from ingest.errors import Conflict, NotFound, ValidationFailed
from ingest.http.auth import requires
from ingest.http.request_body import json_object
from ingest.http.responses import json_response
from ingest.http.state import BATCHES, KEYRING, SETTINGS
from ingest.http.tokens import Role

routes = web.RouteTableDef()


def _describe(batch: Batch) -> dict[str, object]:
    return {**batch.to_json(), "codes_url": f"/v1/batches/{batch.batch_id}/codes"}


async def _batch(request: web.Request) -> Batch:
    batch = await request.app[BATCHES].get(request.match_info["batch_id"])
    if batch is None:
        raise NotFound(f"no batch {request.match_info['batch_id']!r}", "unknown_batch")
    return batch


@routes.post("/v1/batches")
@requires(Role.LINE)
async def create_batch(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await json_object(request, settings.max_body_bytes)
    order = BatchOrder.create(
        sku=body.text("sku", max_length=64),
        gtin=body.text("gtin", max_length=14),
        quantity=body.integer("quantity"),
        kind=body.text("kind", default="unit"),
        line_id=body.text("line_id", default="", max_length=64),
        max_quantity=settings.max_batch_quantity,
    )
    body.done()
    key_id = request.app[KEYRING].current().current.key_id
    batch = await request.app[BATCHES].create(order, key_id)
    response = json_response(_describe(batch), status=201)
    response.headers["Location"] = f"/v1/batches/{batch.batch_id}"
    return response


@routes.get("/v1/batches/{batch_id}")
@requires(Role.LINE)
async def show_batch(request: web.Request) -> web.StreamResponse:
    return json_response(_describe(await _batch(request)))


@routes.post("/v1/batches/{batch_id}/revoke")
@requires(Role.ADMIN)
async def revoke_batch(request: web.Request) -> web.StreamResponse:
    batch = await request.app[BATCHES].revoke(request.match_info["batch_id"])
    if batch is None:
        raise NotFound(f"no batch {request.match_info['batch_id']!r}", "unknown_batch")
    return json_response(_describe(batch))


def _query_int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise ValidationFailed(f"{name} must be a non-negative integer")
    return int(text)


@routes.get("/v1/batches/{batch_id}/codes")
@requires(Role.LINE)
async def download_codes(request: web.Request) -> web.StreamResponse:
    """The codes, generated while they are sent: exact Content-Length, flat memory."""
    batch = await _batch(request)
    try:
        fmt = ExportFormat(request.query.get("format", "txt"))
    except ValueError:
        raise ValidationFailed("format must be one of: txt, csv, url") from None
    if batch.status is BatchStatus.REVOKED:
        raise Conflict("the batch is revoked; its codes are not printed", "batch_revoked")
    try:
        signer = request.app[KEYRING].current().signer(batch.key_id, batch.batch_id)
    except CodeError:
        raise Conflict("the batch's signing key is retired", "key_retired") from None
    offset = _query_int(request, "offset") or 0
    resolver = request.app[SETTINGS].resolver_url
    export = CodeExport.slice(batch, signer, fmt, resolver, offset, _query_int(request, "limit"))
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{fmt.media_type}; charset=us-ascii",
            "Content-Disposition": f'attachment; filename="{batch.batch_id}-{offset}.{fmt.value}"',
        }
    )
    response.content_length = export.content_length()
    await response.prepare(request)
    if request.method == "HEAD":  # aiohttp routes HEAD here too: headers only, nothing generated
        return response
    for chunk in export.chunks():
        await response.write(chunk)
    await response.write_eof()
    return response
