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
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send the header 'Authorization: Bearer <token>'")
            granted = await request.app[TOKENS].role_of(token.strip())
            if granted is None:
                raise Unauthorized("the token is not valid")
            if not granted.allows(role):
                raise Forbidden(f"this needs a token with the {role.value} role")
            return await handler(request)

        return authorised

    return decorate
