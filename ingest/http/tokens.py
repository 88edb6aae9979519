"""API tokens with roles, stored in Redis by SHA-256 hash only.

Tokens are 256-bit random strings, so an unsalted fast hash is enough: nobody can guess their
way back from a leaked hash.  ``SCANWARD_ADMIN_TOKEN`` is a bootstrap admin token that is never
written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from enum import StrEnum

from ingest.store.scripts import AsyncRedis

_KEY_PREFIX = "{auth}:token:"
_TOKEN_PREFIX = "sw_"


class Role(StrEnum):
    LINE = "line"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or self is needed


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore:
    def __init__(self, redis: AsyncRedis, admin_token: str | None) -> None:
        self._redis = redis
        self._admin_hash = token_hash(admin_token) if admin_token else None

    async def role_of(self, token: str) -> Role | None:
        digest = token_hash(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Role.ADMIN
        role = await self._redis.hget(_KEY_PREFIX + digest, "role")
        return Role(role) if isinstance(role, str) and role in set(Role) else None

    async def create(self, role: Role, name: str) -> str:
        """A new token; only its hash is kept, so it is shown once."""
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._redis.hset(
            _KEY_PREFIX + token_hash(token),
            mapping={"role": role.value, "name": name, "created_ms": int(time.time() * 1000)},
        )
        return token
