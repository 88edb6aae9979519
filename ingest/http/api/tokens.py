"""Admin: issue, list and revoke tokens for packaging lines and other admins."""

from __future__ import annotations

import time
from datetime import datetime

from aiohttp import web

from ingest.errors import NotFound, ValidationFailed
from ingest.http.auth import requires
from ingest.http.request_body import JsonFields, json_object
from ingest.http.responses import json_response
from ingest.http.state import SETTINGS, TOKENS
from ingest.http.tokens import MAX_LIFETIME_S, Role

routes = web.RouteTableDef()


@routes.post("/v1/tokens")
@requires(Role.ADMIN)
async def create_token(request: web.Request) -> web.StreamResponse:
    """A new token, shown this once with its id; ``expires_in_s`` or ``expires_at`` (ISO-8601
    with a zone) make it expire, at most ``MAX_LIFETIME_S`` from now; without either it works
    until revoked."""
    body = await json_object(request, request.app[SETTINGS].max_body_bytes)
    role_name, name = body.text("role"), body.text("name", max_length=64)
    expires_ms = _expiry_ms(body)
    body.done()
    try:
        role = Role(role_name)
    except ValueError:
        raise ValidationFailed("role must be one of: " + ", ".join(Role)) from None
    token, info = await request.app[TOKENS].create(role, name, expires_ms)
    return json_response({"token": token, **info.to_json()}, status=201)


@routes.get("/v1/tokens")
@requires(Role.ADMIN)
async def list_tokens(request: web.Request) -> web.StreamResponse:
    """The tokens that still work (not the bootstrap admin token), oldest first."""
    tokens = await request.app[TOKENS].tokens()
    return json_response({"tokens": [info.to_json() for info in tokens]})


@routes.delete("/v1/tokens/{token_id}")
@requires(Role.ADMIN)
async def revoke_token(request: web.Request) -> web.StreamResponse:
    """The token stops working at once (204); 404 for an id no working token has."""
    token_id = request.match_info["token_id"]
    if not await request.app[TOKENS].revoke(token_id):
        raise NotFound(f"no token with the id {token_id[:80]!r}", "unknown_token")
    return web.Response(status=204)


def _expiry_ms(body: JsonFields) -> int | None:
    """Epoch milliseconds of the expiry the body asks for, if any."""
    expires_in_s = body.optional_integer("expires_in_s")
    expires_at = body.optional_text("expires_at", max_length=40)
    now_ms = int(time.time() * 1000)
    if expires_in_s is not None and expires_at is not None:
        raise ValidationFailed("send expires_in_s or expires_at, not both")
    if expires_in_s is not None:
        if not 1 <= expires_in_s <= MAX_LIFETIME_S:
            raise ValidationFailed(f"expires_in_s must be from 1 to {MAX_LIFETIME_S}")
        return now_ms + expires_in_s * 1000
    if expires_at is None:
        return None
    try:
        moment = datetime.fromisoformat(expires_at)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationFailed(
            "expires_at must be an ISO-8601 time with a zone, e.g. 2027-06-01T12:00:00Z"
        )
    at_ms = round(moment.timestamp() * 1000)
    if not now_ms < at_ms <= now_ms + MAX_LIFETIME_S * 1000:
        raise ValidationFailed(
            f"expires_at must be in the future, at most {MAX_LIFETIME_S} seconds from now"
        )
    return at_ms
