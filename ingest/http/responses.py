"""JSON responses encoded with orjson."""

from __future__ import annotations

import orjson
from aiohttp import web

from ingest.errors import ApiError


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    response.headers.update(error.headers())
    return response
