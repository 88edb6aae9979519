"""API tokens with roles, stored in Redis by SHA-256 hash only; each has an id, may expire, and
can be listed and revoked by id.

Tokens are 256-bit random strings, so an unsalted fast hash is enough: nobody can guess their
way back from a leaked hash.  ``SCANWARD_ADMIN_TOKEN`` is a bootstrap admin token that is never
written anywhere, never expires and cannot be revoked (change the setting instead).

Keys (all in the ``{auth}`` slot): ``{auth}:token:<sha256>``, a hash of the token's id, role,
name, created and expiry times, with a Redis expiry at the token's; and ``{auth}:tokens``, the
hash of each token's id to its SHA-256, from which listing and revoking find it. An id whose
record has expired is dropped from it whenever tokens are listed or issued, so neither grows
with expired tokens. A record written before tokens had ids gets one, and its place in
``{auth}:tokens``, at the token's first use (``_GIVE_ID``, one script, so requests racing give
it one id), from then on listed and revocable like any other.

A metrics token this process has checked keeps working while Redis cannot be reached (until its
expiry), so Prometheus still scrapes ``scanward_redis_up 0``; it reads nothing but ``/metrics``,
and none can be revoked while Redis is down.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import cast

from ingest.store.outage import STORE_FAILURES
from ingest.store.scripts import AsyncRedis

MAX_LIFETIME_S = 366 * 86_400
"""The longest expiry a token may be given; one given none lasts until it is revoked."""

_KEY_PREFIX = "{auth}:token:"
_IDS_KEY = "{auth}:tokens"
_TOKEN_PREFIX = "sw_"
_FIELDS = ("id", "role", "name", "created_ms", "expires_ms")
_GIVE_ID = """
-- KEYS: a token's record, the ids index; ARGV: an id for it, its digest. The id it holds.
if redis.call('HEXISTS', KEYS[1], 'role') == 0 then return false end
redis.call('HSETNX', KEYS[1], 'id', ARGV[1])
redis.call('HSETNX', KEYS[1], 'expires_ms', 0)
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[2], id, ARGV[2])
return id
"""


class Role(StrEnum):
    LINE = "line"
    ADMIN = "admin"
    METRICS = "metrics"
    """Reads ``GET /metrics`` only: for Prometheus."""

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or self is needed


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown of a token: never the token or its hash."""

    token_id: str
    role: Role
    name: str
    created_ms: int
    expires_ms: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role.value,
            "created_at": _instant(self.created_ms),
            "expires_at": None if self.expires_ms is None else _instant(self.expires_ms),
        }


def _instant(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


class TokenStore:
    def __init__(self, redis: AsyncRedis, admin_token: str | None) -> None:
        self._redis = redis
        self._admin_hash = token_hash(admin_token) if admin_token else None
        self._give_id = redis.register_script(_GIVE_ID)
        self._metrics_checked: dict[str, int] = {}
        """The digest of each metrics token Redis last said works, and its expiry (0: none)."""

    async def role_of(self, token: str) -> Role | None:
        """The token's role; None for an unknown, revoked or expired token. Raises what Redis
        raises when it cannot be asked, unless the token is a metrics token checked before."""
        digest = token_hash(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Role.ADMIN
        key = _KEY_PREFIX + digest
        try:
            token_id, role, expires = await self._redis.hmget(key, ["id", "role", "expires_ms"])
        except STORE_FAILURES:
            checked_expiry = self._metrics_checked.get(digest)
            if checked_expiry is not None and not 0 < checked_expiry <= _now_ms():
                return Role.METRICS
            raise
        expires_ms = int(expires or 0)
        expired = 0 < expires_ms <= _now_ms()  # Redis may not have expired its record yet
        if not isinstance(role, str) or role not in set(Role) or expired:
            self._metrics_checked.pop(digest, None)
            return None
        if token_id is None:  # issued before tokens had ids
            await self._give_id(keys=[key, _IDS_KEY], args=[_new_id(), digest])
        if role == Role.METRICS:
            self._metrics_checked[digest] = expires_ms
        return Role(role)

    async def create(
        self, role: Role, name: str, expires_ms: int | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token and what may be shown of it; only its hash is kept, so it is shown once.
        ``expires_ms`` (epoch milliseconds) must be in the future."""
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(_new_id(), role, name, _now_ms(), expires_ms)
        key = _KEY_PREFIX + token_hash(token)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                key,
                mapping={
                    "id": info.token_id,
                    "role": role.value,
                    "name": name,
                    "created_ms": info.created_ms,
                    "expires_ms": expires_ms or 0,
                },
            )
            if expires_ms is not None:
                pipe.pexpireat(key, expires_ms)
            pipe.hset(_IDS_KEY, info.token_id, token_hash(token))
            await pipe.execute()
        await self.tokens()  # drops the ids of expired tokens
        return token, info

    async def tokens(self) -> list[TokenInfo]:
        """Every token that still works, oldest first; forgets the ids of expired ones."""
        ids = cast(dict[str, str], await self._redis.hgetall(_IDS_KEY))
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in ids.values():
                pipe.hmget(_KEY_PREFIX + digest, list(_FIELDS))
            records = await pipe.execute()
        now_ms = _now_ms()
        live, gone = [], []
        for token_id, (_, role, name, created, expires) in zip(ids, records, strict=True):
            if role is None or (int(expires) and int(expires) <= now_ms):
                gone.append(token_id)
            else:
                live.append(
                    TokenInfo(token_id, Role(role), name, int(created), int(expires) or None)
                )
        if gone:
            await self._redis.hdel(_IDS_KEY, *gone)
        return sorted(live, key=lambda info: (info.created_ms, info.token_id))

    async def revoke(self, token_id: str) -> bool:
        """Whether a token had this id: it no longer works from now on."""
        digest = await self._redis.hget(_IDS_KEY, token_id)
        if not isinstance(digest, str):
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_KEY_PREFIX + digest)
            pipe.hdel(_IDS_KEY, token_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)


def _new_id() -> str:
    return "tok_" + secrets.token_hex(8)


def _now_ms() -> int:
    return int(time.time() * 1000)
