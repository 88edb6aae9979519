"""Packaging lines and warehouses: what each case holds, and which distributor goods went to.

Shipping activates codes: a consumer scan of a code never shipped is flagged ``not_shipped``.
Every request is all or nothing: one bad code and nothing changes.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from codes import crockford
from codes.batches import Batch, BatchKind, BatchStatus
from codes.errors import CodeError
from codes.verify import VerifiedCode, Verifier
from fraud import shipments
from fraud.errors import ShipmentConflict
from fraud.shipments import SerialRange
from ingest.errors import ApiError, NotFound, ValidationFailed
from ingest.http.auth import requires
from ingest.http.error_mapping import api_error
from ingest.http.request_body import JsonFields, json_object
from ingest.http.responses import json_response
from ingest.http.state import BATCHES, REDIS, REFERENCES, VERIFIERS
from ingest.http.tokens import Role
from ingest.scan.request import MAX_CODE_LENGTH
from ingest.store.scripts import RedisPyCommands, ScriptRunner

routes = web.RouteTableDef()

MAX_CODES = 10_000
MAX_CHILDREN = 1_000
MAX_EXPANDED_RANGE = 10_000  # cases of a range whose contents the script looks up one by one
MAX_LISTED_ERRORS = 10
_MAX_SHIPMENT_BYTES = 1024 * 1024


@routes.post("/v1/shipments")
@requires(Role.LINE)
async def create_shipment(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, _MAX_SHIPMENT_BYTES)
    distributor_id = body.text("distributor_id", max_length=64)
    if body.present("codes"):
        codes = body.text_list("codes", max_items=MAX_CODES, max_length=MAX_CODE_LENGTH)
        body.done()
        verified = await _verified(request, codes)
        ranges = [SerialRange(v.serial, v.serial, _holds_codes(v.batch)) for v in verified]
        named = {v.serial: v.canonical for v in verified}
    else:
        ranges, named = [await _batch_range(request, body)], {}
    if distributor_id not in (await request.app[REFERENCES].current()).distributors:
        raise ValidationFailed(f"no distributor {distributor_id!r}", "unknown_distributor")
    shipment_id = "S" + crockford.encode(secrets.randbits(50))[-10:]
    call = shipments.ship(distributor_id, shipment_id, int(time.time() * 1000), ranges)
    try:
        shipped = await _scripts(request).run(call)
    except ShipmentConflict as error:
        raise _conflict(error, named) from None
    request.app[REFERENCES].expire()
    body_out = {
        "shipment_id": shipment_id,
        "distributor_id": distributor_id,
        "codes_shipped": shipped,
    }
    return json_response(body_out, status=201)


@routes.post("/v1/aggregations")
@requires(Role.LINE)
async def aggregate(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, _MAX_SHIPMENT_BYTES)
    parent_code = body.text("parent", max_length=MAX_CODE_LENGTH)
    child_codes = body.text_list("children", max_items=MAX_CHILDREN, max_length=MAX_CODE_LENGTH)
    body.done()
    parent, *children = await _verified(request, [parent_code, *child_codes])
    if parent.batch.kind is BatchKind.UNIT:
        raise ValidationFailed("parent must be a case or pallet code, not a unit's")
    if parent.serial in {c.serial for c in children}:
        raise ValidationFailed("a code cannot hold itself")
    call = shipments.aggregate(parent.serial, [c.serial for c in children])
    try:
        count = await _scripts(request).run(call)
    except ShipmentConflict as error:
        raise _conflict(error, {c.serial: c.canonical for c in children}) from None
    return json_response({"parent": parent.canonical, "children": count}, status=201)


@routes.delete("/v1/aggregations/{parent}")
@requires(Role.LINE)
async def release(request: web.Request) -> web.StreamResponse:
    """Empties a case, so that its codes can be packed again."""
    [parent] = await _verified(request, [request.match_info["parent"]])
    released = await _scripts(request).run(shipments.release(parent.serial))
    if released == 0:
        raise NotFound(f"code {parent.canonical} holds no aggregated codes", "not_aggregated")
    return json_response({"parent": parent.canonical, "released": released})


def _scripts(request: web.Request) -> ScriptRunner:
    return ScriptRunner(RedisPyCommands(request.app[REDIS]))


def _holds_codes(batch: Batch) -> bool:
    return batch.kind is not BatchKind.UNIT


async def _verified(request: web.Request, codes: list[str]) -> list[VerifiedCode]:
    """Every code genuine, live and listed once; otherwise a 422 listing the first few bad."""
    verifier: Verifier = await request.app[VERIFIERS].current()
    verified, problems, seen = [], [], set()
    for position, code in enumerate(codes):
        try:
            checked = verifier.verify(code)
        except CodeError as error:
            problems.append(f"[{position}] {code[:32]!r}: {error} ({error.reason})")
            continue
        if checked.batch.status is BatchStatus.REVOKED:
            problems.append(f"[{position}] {checked.canonical}: its batch is revoked")
        elif checked.serial in seen:
            problems.append(f"[{position}] {checked.canonical}: listed twice")
        seen.add(checked.serial)
        verified.append(checked)
    if problems:
        more = len(problems) - MAX_LISTED_ERRORS
        listed = "; ".join(problems[:MAX_LISTED_ERRORS]) + (
            f"; and {more} more" if more > 0 else ""
        )
        raise ValidationFailed(f"nothing was changed: {listed}", "invalid_codes")
    return verified


async def _batch_range(request: web.Request, body: JsonFields) -> SerialRange:
    batch_id = body.text("batch_id", max_length=64)
    serial_from, serial_to = (
        body.optional_integer("serial_from"),
        body.optional_integer("serial_to"),
    )
    body.done()
    batch = await request.app[BATCHES].get(batch_id)
    if batch is None:
        raise ValidationFailed(f"no batch {batch_id!r}", "unknown_batch")
    if batch.status is BatchStatus.REVOKED:
        raise ValidationFailed(f"batch {batch_id} is revoked", "batch_revoked")
    first = batch.first_serial if serial_from is None else serial_from
    last = batch.last_serial if serial_to is None else serial_to
    if not batch.first_serial <= first <= last <= batch.last_serial:
        raise ValidationFailed(
            f"serial_from and serial_to must satisfy {batch.first_serial} <= serial_from <= "
            f"serial_to <= {batch.last_serial} (the batch's serials)"
        )
    shipped = SerialRange(first, last, _holds_codes(batch))
    if shipped.expand and shipped.size > MAX_EXPANDED_RANGE:
        raise ValidationFailed(
            f"ship at most {MAX_EXPANDED_RANGE} cases or pallets per request "
            "(each one's contents are looked up)"
        )
    return shipped


def _conflict(error: ShipmentConflict, named: dict[int, str]) -> ApiError:
    """The refusal in words naming the code at fault as the request did."""
    code = named.get(error.serial, f"serial {error.serial}") if error.serial else ""
    messages = {
        "SHIP_OVERLAP": f"nothing was shipped: {code} was already shipped to {error.other}",
        "SHIP_DUPLICATE": f"nothing was shipped: {code} is listed twice (alone and in a case?)",
        "AGG_PARENT_FULL": "the parent already holds codes; release it first "
        "(DELETE /v1/aggregations/<parent>)",
        "AGG_PARENT_SHIPPED": "the parent was already shipped",
        "AGG_CHILD_TAKEN": f"{code} is already in another case (serial {error.other}); "
        "release that one first",
        "AGG_CHILD_SHIPPED": f"{code} was already shipped",
        "AGG_CYCLE": f"{code} holds the parent: a pallet cannot go inside its own case",
    }
    return api_error(error, messages[error.reason])
