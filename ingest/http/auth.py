"""Bearer-token authorisation for handlers: ``@requires(Role.LINE)``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from ingest.errors import Forbidden, Unauthorized
from ingest.http.state import TOKENS
from ingest.http.tokens import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(role: Role) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def authorised(request: web.Request) -> web.StreamResponse:
            token = bearer_token(request)
            if token is None:
                raise Unauthorized("send the header 'Authorization: Bearer <token>'")
            granted = await request.app[TOKENS].role_of(token)
            if granted is None:
                raise Unauthorized("the token is not valid")
            if not granted.allows(role):
                raise Forbidden(f"this needs a token with the {role.value} role")
            return await handler(request)

        return authorised

    return decorate


def bearer_token(request: web.Request) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, if it has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
