"""Consumer scans: one at a time as JSON, or many at once as NDJSON."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from ingest import stage_timer
from ingest.errors import (
    ApiError,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from ingest.http.request_body import json_fields, read_body, require_json
from ingest.http.responses import json_response
from ingest.http.scan_body import parse_scan
from ingest.http.state import CLIENT_ADDRESS, SCANS, SETTINGS
from ingest.scan.request import ScanRequest
from ingest.scan.result import ScanResult

routes = web.RouteTableDef()

MAX_BULK_LINES = 20_000
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "")


@routes.post("/v1/scans")
async def scan(request: web.Request) -> web.StreamResponse:
    received_ns = time.monotonic_ns()
    require_json(request)  # json_object in steps: its decoding is timed with the parse
    settings = request.app[SETTINGS]
    body = await read_body(request, settings.max_body_bytes)
    with stage_timer.PARSE:
        fields = json_fields(body, "body")
        ip = request.app[CLIENT_ADDRESS].of(request)
        parsed = parse_scan(fields, ip, received_ns, settings.member_token_secret)
    [answer] = request.app[SCANS].submit([parsed])
    result = await answer
    with stage_timer.RESPOND:
        return json_response(result.to_json())


@routes.post("/v1/scans/bulk")
async def bulk_scans(request: web.Request) -> web.StreamResponse:
    """One output line per non-empty input line, in order; a bad line gets an error object."""
    received_ns = time.monotonic_ns()
    if request.content_type not in NDJSON_TYPES:
        raise UnsupportedMediaType("send one JSON object per line as application/x-ndjson")
    body = await read_body(request, request.app[SETTINGS].max_bulk_bytes)
    with stage_timer.PARSE:
        lines = [(number, line) for number, line in enumerate(body.split(b"\n"), 1) if line.strip()]
        if len(lines) > MAX_BULK_LINES:
            raise PayloadTooLarge(f"send at most {MAX_BULK_LINES} scans per request")
        ip = request.app[CLIENT_ADDRESS].of(request)
        token_secret = request.app[SETTINGS].member_token_secret
        outputs: list[bytes | None] = []
        accepted: list[ScanRequest] = []
        for number, line in lines:
            try:
                fields = json_fields(line, "line")
                accepted.append(parse_scan(fields, ip, received_ns, token_secret))
            except ApiError as error:
                outputs.append(orjson.dumps({"line": number, **error.body()}))
            else:
                outputs.append(None)
    answers = iter(request.app[SCANS].submit(accepted))
    pending = [(index, next(answers)) for index, out in enumerate(outputs) if out is None]
    if pending:
        await asyncio.wait([answer for _, answer in pending])
    with stage_timer.RESPOND:
        errors = [answer.exception() for _, answer in pending]
        refusals = [error for error in errors if isinstance(error, Unavailable)]
        if pending and len(refusals) == len(pending):
            raise refusals[0]  # nothing was taken: one 503 with Retry-After says it plainly
        for index, answer in pending:
            outputs[index] = _line_answer(lines[index][0], answer)
        body_out = b"".join(out + b"\n" for out in outputs if out is not None)
        response = web.Response(body=body_out, content_type="application/x-ndjson")
        if refusals:  # some lines may be sent again later
            response.headers.update(refusals[0].headers())
        return response


def _line_answer(number: int, answer: asyncio.Future[ScanResult]) -> bytes:
    error = answer.exception()
    if error is None:
        return orjson.dumps(answer.result().to_json())
    if not isinstance(error, ApiError):
        error = ApiError("internal error")
    return orjson.dumps({"line": number, **error.body()})
