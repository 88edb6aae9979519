"""API tokens have ids, may expire, can be listed and revoked; none is ever shown again."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.http.state import REDIS
from ingest.http.tokens import MAX_LIFETIME_S, token_hash
from tests.helpers import ADMIN

pytestmark = pytest.mark.redis

Client = TestClient[Any, Any]


async def _issue(client: Client, **fields: object) -> dict[str, Any]:
    body = {"role": "line", "name": "line 1", **fields}
    reply = await client.post("/v1/tokens", json=body, headers=ADMIN)
    assert reply.status == 201, await reply.text()
    issued: dict[str, Any] = await reply.json()
    return issued


def _bearer(issued: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued['token']}"}


async def _works(client: Client, issued: dict[str, Any]) -> int:
    """The status of a line-role request with the token: 200, or 401 once it is refused."""
    reply = await client.get("/v1/distributors", headers=_bearer(issued))
    return reply.status


async def test_a_token_has_an_id_and_is_listed_without_its_secret(client: Client) -> None:
    issued = await _issue(client, name="hall 3")
    assert issued["id"]
    assert issued["role"] == "line"
    assert issued["expires_at"] is None

    reply = await client.get("/v1/tokens", headers=ADMIN)

    assert reply.status == 200
    [listed] = (await reply.json())["tokens"]
    assert listed == {
        "id": issued["id"],
        "name": "hall 3",
        "role": "line",
        "created_at": issued["created_at"],
        "expires_at": None,
    }
    text = await reply.text()
    redis = client.app[REDIS]
    for key in await redis.keys("{auth}:token:*"):
        assert key.rpartition(":")[2] not in text  # no hash of a token
    assert issued["token"] not in text


async def test_a_revoked_token_is_refused_at_once(client: Client) -> None:
    issued = await _issue(client)
    other = await _issue(client, name="line 2")
    assert await _works(client, issued) == 200

    reply = await client.delete(f"/v1/tokens/{issued['id']}", headers=ADMIN)

    assert reply.status == 204
    assert await _works(client, issued) == 401
    assert await _works(client, other) == 200
    listed = (await (await client.get("/v1/tokens", headers=ADMIN)).json())["tokens"]
    assert [t["id"] for t in listed] == [other["id"]]
    again = await client.delete(f"/v1/tokens/{issued['id']}", headers=ADMIN)
    assert again.status == 404
    assert (await again.json())["error"]["code"] == "unknown_token"


async def test_an_expired_token_is_refused_and_its_record_expires(client: Client) -> None:
    issued = await _issue(client, expires_in_s=1)
    assert await _works(client, issued) == 200
    redis = client.app[REDIS]
    ttls = [await redis.pttl(key) for key in await redis.keys("{auth}:token:*")]
    assert ttls
    assert all(0 < ttl <= 1000 for ttl in ttls)

    await asyncio.sleep(1.1)

    assert await _works(client, issued) == 401
    assert await redis.keys("{auth}:token:*") == []
    listed = (await (await client.get("/v1/tokens", headers=ADMIN)).json())["tokens"]
    assert listed == []


async def test_expires_at_is_an_instant_with_a_zone(client: Client) -> None:
    at = datetime.now(UTC) + timedelta(days=2)
    issued = await _issue(client, expires_at=at.isoformat())
    expires = datetime.fromisoformat(issued["expires_at"])
    assert abs((expires - at).total_seconds()) < 0.01
    assert await _works(client, issued) == 200


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in_s": 0},
        {"expires_in_s": MAX_LIFETIME_S + 1},
        {"expires_in_s": "60"},
        {"expires_in_s": True},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "2027-01-01T00:00:00"},
        {"expires_at": "tomorrow"},
        {
            "expires_at": (
                datetime.now(UTC) + timedelta(seconds=MAX_LIFETIME_S + 86_400)
            ).isoformat()
        },
        {"expires_in_s": 60, "expires_at": "2099-01-01T00:00:00Z"},
    ],
)
async def test_bad_expiries_are_refused_and_issue_nothing(
    client: Client, fields: dict[str, object]
) -> None:
    reply = await client.post(
        "/v1/tokens", json={"role": "line", "name": "x", **fields}, headers=ADMIN
    )
    assert reply.status == 422, await reply.text()
    assert (await reply.json())["error"]["code"] == "validation_failed"
    assert await client.app[REDIS].keys("{auth}*") == []


async def test_listing_and_revoking_need_an_admin(client: Client) -> None:
    line = _bearer(await _issue(client))
    issued = await _issue(client, name="other")
    assert (await client.get("/v1/tokens", headers=line)).status == 403
    assert (await client.delete(f"/v1/tokens/{issued['id']}", headers=line)).status == 403
    assert (await client.get("/v1/tokens")).status == 401
    assert (await client.delete(f"/v1/tokens/{issued['id']}")).status == 401
    assert await _works(client, issued) == 200


async def test_the_bootstrap_admin_token_still_works(client: Client) -> None:
    assert (await client.get("/v1/tokens", headers=ADMIN)).status == 200
    started = int(time.time())
    issued = await _issue(client, role="admin", name="second admin")
    created = datetime.fromisoformat(issued["created_at"]).timestamp()
    assert started - 1 <= created <= time.time() + 1
    assert (await client.get("/v1/tokens", headers=_bearer(issued))).status == 200


async def test_a_token_issued_before_ids_gets_one_at_its_first_use(client: Client) -> None:
    token = "sw_issued-before-tokens-had-ids"
    redis = client.app[REDIS]
    await redis.hset(
        "{auth}:token:" + token_hash(token),
        mapping={"role": "line", "name": "old line", "created_ms": 1_700_000_000_000},
    )
    old = {"token": token}

    assert await asyncio.gather(*(_works(client, old) for _ in range(5))) == [200] * 5

    [listed] = (await (await client.get("/v1/tokens", headers=ADMIN)).json())["tokens"]
    assert listed["name"] == "old line"
    assert listed["role"] == "line"
    assert listed["expires_at"] is None
    assert await redis.hlen("{auth}:tokens") == 1  # one id, however many requests raced
    reply = await client.delete(f"/v1/tokens/{listed['id']}", headers=ADMIN)
    assert reply.status == 204
    assert await _works(client, old) == 401
