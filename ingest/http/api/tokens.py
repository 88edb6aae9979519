"""Admin: issue tokens for packaging lines and other admins."""

from __future__ import annotations

from aiohttp import web

from ingest.errors import ValidationFailed
from ingest.http.auth import requires
from ingest.http.request_body import json_object
from ingest.http.responses import json_response
from ingest.http.state import SETTINGS, TOKENS
from ingest.http.tokens import Role

routes = web.RouteTableDef()


@routes.post("/v1/tokens")
@requires(Role.ADMIN)
async def create_token(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, request.app[SETTINGS].max_body_bytes)
    role_name, name = body.text("role"), body.text("name", max_length=64)
    body.done()
    try:
        role = Role(role_name)
    except ValueError:
        raise ValidationFailed("role must be one of: line, admin") from None
    token = await request.app[TOKENS].create(role, name)
    return json_response({"token": token, "role": role.value, "name": name}, status=201)
