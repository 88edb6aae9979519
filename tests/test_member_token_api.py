"""Campaigns that require a signed member token for their draws, through the HTTP API against a
real Redis: the token names the member, and a scan without a valid one draws nothing and says
why."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient

from ingest.config import Settings
from ingest.http.app import create_app
from rewards.member_token import MAX_LIFETIME_S, MemberTokenSecret
from tests.helpers import ADMIN, AiohttpClient, batch_codes, order_shipped_batch, post_scan
from tests.test_api_campaigns import campaign, put_campaign

pytestmark = pytest.mark.redis

Client = TestClient[Any, Any]
CURRENT = "brand-secret-2027-0123456789abcdef"
PREVIOUS = "brand-secret-2026-0123456789abcdef"
REQUIRED = {"member_token": "required"}


def token(member_id: str, ttl: int = 600, secret: str = CURRENT) -> str:
    return MemberTokenSecret((secret,)).issue(member_id, int(time.time()) + ttl)


@pytest.fixture
async def brand(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """A server sharing the brand's current and previous secrets."""
    secret = MemberTokenSecret((CURRENT, PREVIOUS))
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(settings, member_token_secret=secret))
    )
    return client


async def codes(client: Client, count: int) -> list[str]:
    batch = await order_shipped_batch(client)
    return await batch_codes(client, batch["batch_id"], count)


async def awards_of(client: Client, member_id: str) -> list[str]:
    reply = await client.get(f"/v1/members/{member_id}", headers=ADMIN)
    return [award["code"] for award in (await reply.json())["recent_awards"]]


async def test_a_valid_token_draws_as_its_member(brand: Client) -> None:
    await put_campaign(brand, campaign(**REQUIRED))
    [code] = await codes(brand, 1)

    answer = await post_scan(brand, {"code": code, "member_token": token("alice")})

    assert answer["prize"]["prize_id"] == "red5"
    assert answer["not_drawn"] is None
    assert await awards_of(brand, "alice") == [code]


async def test_fresh_member_ids_from_one_address_win_nothing_under_a_requiring_campaign(
    brand: Client,
) -> None:
    """The probe's attack: valid codes, each with a member id never seen before."""
    await put_campaign(brand, campaign(**REQUIRED, member_daily_win_limit=1))
    farmed = await codes(brand, 20)

    answers = [
        await post_scan(brand, {"code": c, "member_id": f"fresh-{n}"}) for n, c in enumerate(farmed)
    ]

    assert {a["verdict"] for a in answers} == {"genuine"}
    assert [a["prize"] for a in answers] == [None] * 20
    assert {a["not_drawn"] for a in answers} == {"member_token_missing"}


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ({"member_id": "alice"}, "member_token_missing"),
        ({}, "member_token_missing"),
        ({"member_token": ""}, "member_token_missing"),
        ({"member_token": "v1.not-a-token"}, "member_token_invalid"),
        (
            {"member_token": token("alice", secret="an-other-brand-0123456789abcdef01")},
            "member_token_invalid",
        ),
        ({"member_token": token("alice", ttl=MAX_LIFETIME_S * 2)}, "member_token_invalid"),
        ({"member_token": token("alice", ttl=-1)}, "member_token_expired"),
    ],
)
async def test_without_a_valid_token_a_requiring_campaign_draws_nothing_and_says_why(
    brand: Client, member: dict[str, str], reason: str
) -> None:
    await put_campaign(brand, campaign(**REQUIRED))
    [code] = await codes(brand, 1)

    answer = await post_scan(brand, {"code": code, **member})
    again = await post_scan(brand, {"code": code, "member_token": token("bob")})

    assert (answer["verdict"], answer["scan_count"]) == ("genuine", 1)  # verified and recorded
    assert (answer["prize"], answer["not_drawn"]) == (None, reason)
    assert again["prize"] is not None  # the code did not draw: a member with a token still may
    assert await awards_of(brand, "alice") == []


async def test_a_campaign_without_the_requirement_draws_as_before(brand: Client) -> None:
    await put_campaign(brand, campaign())
    bare, signed, anonymous, bad = await codes(brand, 4)

    answers = [
        await post_scan(brand, {"code": bare, "member_id": "alice"}),
        await post_scan(brand, {"code": signed, "member_token": token("bob")}),
        await post_scan(brand, {"code": anonymous}),
        await post_scan(brand, {"code": bad, "member_id": "carol", "member_token": "v1.x.1.y"}),
    ]

    assert [a["prize"] is not None for a in answers] == [True, True, False, False]
    assert [a["not_drawn"] for a in answers] == [None, None, None, "member_token_invalid"]
    assert await awards_of(brand, "carol") == []  # a bad token makes the scan anonymous
    shown = await (await brand.get("/v1/campaigns/summer", headers=ADMIN)).json()
    assert shown["member_token"] == "optional"


@pytest.mark.parametrize("option", ["yes", True, ["required"]])
async def test_a_campaign_s_member_token_option_is_checked(brand: Client, option: object) -> None:
    answer = await put_campaign(brand, campaign(member_token=option), status=422)

    assert answer["error"]["code"] == "invalid_campaign"
    assert "member_token must be one of optional, required" in answer["error"]["message"]


async def test_a_prize_from_another_campaign_outweighs_the_reason(brand: Client) -> None:
    await put_campaign(brand, campaign(**REQUIRED), "signed")
    await put_campaign(brand, campaign(), "open")
    [code] = await codes(brand, 1)

    answer = await post_scan(brand, {"code": code, "member_id": "alice"})

    assert answer["prize"]["campaign_id"] == "open"
    assert answer["not_drawn"] is None


async def test_the_previous_secret_is_accepted(brand: Client) -> None:
    await put_campaign(brand, campaign(**REQUIRED))
    [code] = await codes(brand, 1)

    answer = await post_scan(brand, {"code": code, "member_token": token("alice", secret=PREVIOUS)})

    assert answer["prize"] is not None
    assert await awards_of(brand, "alice") == [code]


@pytest.mark.parametrize("part", ["member", "expiry"])
async def test_a_tampered_token_is_refused(brand: Client, part: str) -> None:
    await put_campaign(brand, campaign(**REQUIRED))
    [code] = await codes(brand, 1)
    version, member, expiry, mac = token("alice").split(".")
    if part == "member":
        member = token("mallory").split(".")[1]
    else:
        expiry = str(int(expiry) + 3600)

    answer = await post_scan(
        brand, {"code": code, "member_token": f"{version}.{member}.{expiry}.{mac}"}
    )

    assert (answer["prize"], answer["not_drawn"]) == (None, "member_token_invalid")
    assert await awards_of(brand, "mallory") == []


async def test_a_different_bare_member_id_beside_a_valid_token_is_refused_whole(
    brand: Client,
) -> None:
    await put_campaign(brand, campaign(**REQUIRED))
    [code] = await codes(brand, 1)

    reply = await brand.post(
        "/v1/scans", json={"code": code, "member_id": "mallory", "member_token": token("alice")}
    )
    same = await post_scan(
        brand, {"code": code, "member_id": "alice", "member_token": token("alice")}
    )

    assert reply.status == 422
    assert (await reply.json())["error"]["code"] == "member_mismatch"
    assert (same["first_scan"], same["prize"] is not None) == (True, True)  # nothing was kept


async def test_a_member_token_that_is_no_short_string_is_a_422(brand: Client) -> None:
    [code] = await codes(brand, 1)

    for bad in (42, ["v1"], "v1." + "A" * 600):
        reply = await brand.post("/v1/scans", json={"code": code, "member_token": bad})
        assert reply.status == 422, bad
        assert (await reply.json())["error"]["code"] == "validation_failed"


async def test_bulk_lines_carry_tokens_too(brand: Client) -> None:
    await put_campaign(brand, campaign(**REQUIRED))
    first, second = await codes(brand, 2)
    lines = [
        f'{{"code": "{first}", "member_token": "{token("alice")}"}}',
        f'{{"code": "{second}", "member_id": "bob"}}',
    ]

    reply = await brand.post(
        "/v1/scans/bulk", data="\n".join(lines), headers={"Content-Type": "application/x-ndjson"}
    )
    answers = [orjson.loads(line) for line in (await reply.read()).splitlines()]

    assert [a["prize"] is not None for a in answers] == [True, False]
    assert [a["not_drawn"] for a in answers] == [None, "member_token_missing"]


async def test_a_server_without_the_secret_takes_every_token_as_invalid(client: Client) -> None:
    await put_campaign(client, campaign(**REQUIRED))
    [code] = await codes(client, 1)

    answer = await post_scan(client, {"code": code, "member_token": token("alice")})

    assert (answer["prize"], answer["not_drawn"]) == (None, "member_token_invalid")


def _stored(redis_url: str) -> bytes:
    """Every value Redis holds, concatenated."""
    found = []
    with redis.Redis.from_url(redis_url) as raw:
        for key in raw.scan_iter():
            kind = raw.type(key)
            if kind == b"stream":
                found += [v for _, entry in raw.xrange(key) for v in entry.values()]
            elif kind == b"hash":
                found += [*raw.hgetall(key).values()]
            elif kind == b"string":
                found.append(raw.get(key) or b"")
            elif kind == b"set":
                found += list(raw.smembers(key))
            elif kind == b"zset":
                found += list(raw.zrange(key, 0, -1))
            elif kind == b"list":
                found += list(raw.lrange(key, 0, -1))
    return b"\n".join(found)


async def test_the_token_never_reaches_logs_or_events(
    brand: Client, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await put_campaign(brand, campaign(**REQUIRED))
    first, second, third = await codes(brand, 3)
    good, expired = token("alice-in-tokens"), token("bob", ttl=-5)

    await post_scan(brand, {"code": first, "member_token": good})
    await post_scan(brand, {"code": second, "member_token": expired})
    await brand.post("/v1/scans", json={"code": third, "member_id": "x", "member_token": good})

    stored, logged = _stored(redis_url), caplog.text
    assert b"alice-in-tokens" in stored  # the member id is recorded as before
    for text in (good, expired):
        mac = text.rsplit(".", 1)[1]
        assert mac.encode() not in stored
        assert mac not in logged
