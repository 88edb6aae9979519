"""Campaigns, members and prizes through the HTTP API, against a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fraud.policy import FraudPolicy
from ingest.config import Settings
from ingest.http.app import create_app
from ingest.scan.reward_stage import CAMPAIGNS_MAX_AGE_S
from rewards.status import REVEAL_DELAY_MS
from tests.helpers import ADMIN, AiohttpClient, batch_codes, order_shipped_batch, post_scan

pytestmark = pytest.mark.redis

Client = TestClient[Any, Any]


def campaign(**changes: object) -> dict[str, Any]:
    """Open since yesterday for ten days; ``prizes`` replaces the prize list."""
    now = datetime.now(UTC)
    return {
        "name": "Summer caps",
        "start": (now - timedelta(days=1)).isoformat(),
        "end": (now + timedelta(days=10)).isoformat(),
        "timezone": "Asia/Shanghai",
        "skus": ["BEER-500"],
        "member_daily_win_limit": 3,
        "prizes": [
            {
                "id": "red5",
                "kind": "cash",
                "value": 500,
                "total_budget": 100,
                "daily_cap": 100,
                "base_probability": 1.0,
            }
        ],
        **changes,
    }


def zone_where_it_is(hour: int) -> str:
    """A fixed-offset IANA zone whose local time is now ``hour`` o'clock."""
    offset = (hour - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset  # zones run from UTC-12 to UTC+14
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"  # POSIX signs: GMT-8 is UTC+8


def prize(**fields: object) -> dict[str, object]:
    return {
        "id": "p",
        "kind": "points",
        "value": 10,
        "total_budget": 1000,
        "base_probability": 0.1,
        **fields,
    }


async def put_campaign(
    client: Client, body: dict[str, Any], campaign_id: str = "summer", status: int = 201
) -> dict[str, Any]:
    reply = await client.put(f"/v1/campaigns/{campaign_id}", json=body, headers=ADMIN)
    assert reply.status == status, await reply.text()
    answer: dict[str, Any] = await reply.json()
    return answer


async def codes_of_a_shipped_batch(client: Client, count: int = 10) -> list[str]:
    batch = await order_shipped_batch(client)
    return await batch_codes(client, batch["batch_id"], count)


async def test_a_member_wins_on_the_first_genuine_scan_and_only_then(client: Client) -> None:
    await put_campaign(client, campaign())
    [code] = await codes_of_a_shipped_batch(client, 1)

    first = await post_scan(client, {"code": code, "member_id": "alice"})
    again = await post_scan(client, {"code": code, "member_id": "bob"})

    assert first["prize"] == {
        "prize_id": "red5",
        "kind": "cash",
        "value": 500,
        "campaign_id": "summer",
    }
    assert again["prize"] is None


async def test_draws_show_in_health_and_metrics(client: Client) -> None:
    await put_campaign(client, campaign())
    [code] = await codes_of_a_shipped_batch(client, 1)
    await post_scan(client, {"code": code, "member_id": "alice"})

    health = await (await client.get("/healthz", headers=ADMIN)).json()
    metrics = await (await client.get("/metrics", headers=ADMIN)).text()

    assert health["unsunk_draws"] == 1  # no sink in this test
    assert "scanward_unsunk_draws 1.0" in metrics
    assert 'scanward_prizes_total{kind="cash"}' in metrics
    assert "scanward_draws_total" in metrics


async def test_a_retried_scan_id_gets_the_same_prize(client: Client) -> None:
    await put_campaign(client, campaign())
    [code] = await codes_of_a_shipped_batch(client, 1)
    body = {"code": code, "member_id": "alice", "scan_id": "retry-me"}

    answers = [await post_scan(client, body) for _ in range(3)]

    assert [a["prize"]["prize_id"] for a in answers] == ["red5"] * 3
    reply = await client.get("/v1/campaigns/summer", headers=ADMIN)
    [budget] = (await reply.json())["budgets"]
    assert budget["awarded"] == 1


async def test_scans_without_a_member_or_outside_the_campaign_do_not_draw(
    client: Client,
) -> None:
    await put_campaign(client, campaign(skus=["OTHER-SKU"]))
    codes = await codes_of_a_shipped_batch(client, 2)

    outside = await post_scan(client, {"code": codes[0], "member_id": "alice"})
    await put_campaign(client, campaign(), status=200)
    anonymous = await post_scan(client, {"code": codes[1]})

    assert outside["prize"] is None
    assert anonymous["prize"] is None


async def test_counterfeit_scans_win_nothing(client: Client) -> None:
    await put_campaign(client, campaign())
    answer = await post_scan(client, {"code": "0" * 20, "member_id": "alice"})
    assert answer["verdict"] == "counterfeit"
    assert answer["prize"] is None


async def test_the_member_daily_win_limit_holds(client: Client) -> None:
    await put_campaign(client, campaign(member_daily_win_limit=2))
    codes = await codes_of_a_shipped_batch(client, 4)

    answers = [await post_scan(client, {"code": c, "member_id": "alice"}) for c in codes]

    assert [a["prize"] is not None for a in answers] == [True, True, False, False]


async def test_points_prizes_credit_the_member_and_show_in_recent_awards(
    client: Client,
) -> None:
    await put_campaign(client, campaign(prizes=[prize(base_probability=1.0)]))
    reply = await client.put("/v1/members/alice", json={"tier": 2}, headers=ADMIN)
    assert reply.status == 201
    codes = await codes_of_a_shipped_batch(client, 2)
    for code in codes:
        await post_scan(client, {"code": code, "member_id": "alice"})

    reply = await client.get("/v1/members/alice", headers=ADMIN)
    member = await reply.json()

    assert member["tier"] == 2
    assert member["points_balance"] == 20
    assert member["points_by_campaign"] == {"summer": 20}
    assert [a["prize_id"] for a in member["recent_awards"]] == ["p", "p"]
    assert {a["code"] for a in member["recent_awards"]} == set(codes)


async def test_unknown_members_are_tier_0(client: Client) -> None:
    reply = await client.get("/v1/members/nobody", headers=ADMIN)
    assert await reply.json() == {
        "member_id": "nobody",
        "tier": 0,
        "points_balance": 0,
        "points_by_campaign": {},
        "recent_awards": [],
    }


async def test_a_prize_with_a_minimum_tier_goes_only_to_that_tier(client: Client) -> None:
    phone = prize(id="phone", kind="item", value=1, base_probability=1.0, min_tier=1)
    await put_campaign(client, campaign(prizes=[phone]))
    await client.put("/v1/members/gold", json={"tier": 1}, headers=ADMIN)
    codes = await codes_of_a_shipped_batch(client, 2)

    plain = await post_scan(client, {"code": codes[0], "member_id": "plain"})
    gold = await post_scan(client, {"code": codes[1], "member_id": "gold"})

    assert plain["prize"] is None
    assert gold["prize"]["prize_id"] == "phone"


@pytest.fixture
async def lenient_client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """A brand that counts unshipped goods as genuine but risky (risk level 3)."""
    policy = FraudPolicy().with_overrides({"verdicts": {"not_shipped": ["genuine", 3]}})
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(settings, fraud_policy=policy))
    )
    return client


async def test_a_risky_scan_gets_no_high_value_prize(lenient_client: Client) -> None:
    client = lenient_client
    phone = prize(id="phone", kind="item", value=1, base_probability=0.5)
    cash = prize(id="red5", kind="cash", value=500, base_probability=0.5)
    await put_campaign(client, campaign(prizes=[phone, cash], member_daily_win_limit=100))
    reply = await client.post(
        "/v1/batches",
        json={"sku": "BEER-500", "gtin": "4006381333931", "quantity": 60, "line_id": "L1"},
        headers=ADMIN,
    )
    batch = await reply.json()
    codes = await batch_codes(client, batch["batch_id"], 60)  # never shipped: risk 3

    answers = [await post_scan(client, {"code": c, "member_id": "m"}) for c in codes]

    assert {a["risk"] for a in answers} == {3}
    assert {a["prize"]["prize_id"] for a in answers if a["prize"]} == {"red5"}


async def test_put_answers_the_campaign_and_get_shows_live_budgets(client: Client) -> None:
    body = campaign(
        prizes=[
            prize(id="phone", kind="item", total_budget=30, daily_cap=1, base_probability=0.0),
            prize(id="red5", kind="cash", value=500, total_budget=100, base_probability=1.0),
        ]
    )
    created = await put_campaign(client, body)
    replaced = await put_campaign(client, body, status=200)
    [code] = await codes_of_a_shipped_batch(client, 1)
    await post_scan(client, {"code": code, "member_id": "alice", "scan_id": "s1"})
    reply = await client.get("/v1/campaigns/summer", headers=ADMIN)
    shown = await reply.json()

    assert created["version"] == 1
    assert replaced["version"] == 2
    assert created["prizes"][0]["high_value"] is True  # items are, unless said otherwise
    assert shown["active"] is True
    phone, red5 = shown["budgets"]
    assert phone["remaining_budget"] == 30
    assert phone["released_today"] == 1
    assert (red5["awarded"], red5["remaining_budget"]) == (1, 99)
    assert (await client.get("/v1/campaigns", headers=ADMIN)).status == 200


async def test_fairness_publishes_seed_hashes_and_reveals_only_past_days(
    client: Client,
) -> None:
    await put_campaign(client, campaign())
    reply = await client.get("/v1/campaigns/summer/fairness")  # public: no token
    fairness = await reply.json()

    shanghai = timezone(timedelta(hours=8))
    revealing = (datetime.now(shanghai) - timedelta(milliseconds=REVEAL_DELAY_MS)).date()
    days = {d["day"]: d for d in fairness["days"]}
    assert len(days) >= 11
    past = [d for d in days.values() if d["day"] < revealing.isoformat()]
    assert past
    for day in past:
        assert hashlib.sha256(bytes.fromhex(day["seed"])).hexdigest() == day["seed_sha256"]
    assert all(d["seed"] is None for d in days.values() if d["day"] >= revealing.isoformat())


async def test_a_saved_campaign_keeps_its_time_zone(client: Client) -> None:
    await put_campaign(client, campaign())
    reply = await client.put(
        "/v1/campaigns/summer", json=campaign(timezone="Europe/Paris"), headers=ADMIN
    )
    assert reply.status == 409
    assert (await reply.json())["error"]["code"] == "timezone_fixed"
    shown = await (await client.get("/v1/campaigns/summer", headers=ADMIN)).json()
    assert (shown["timezone"], shown["version"]) == ("Asia/Shanghai", 1)


async def test_saving_again_keeps_the_committed_seeds(client: Client) -> None:
    await put_campaign(client, campaign())
    first = await (await client.get("/v1/campaigns/summer/fairness")).json()
    await put_campaign(client, campaign(name="Renamed"), status=200)
    second = await (await client.get("/v1/campaigns/summer/fairness")).json()
    assert second["days"] == first["days"]


BAD_CAMPAIGNS = [
    ({"prizes": [prize(total_budget=-1)]}, "invalid_campaign", "total_budget"),
    ({"prizes": [prize(tier_weights={"7": 2})]}, "unknown_tier", "tier"),
    ({"prizes": [prize(min_tier=9)]}, "unknown_tier", "min_tier"),
    ({"end": "2020-01-01T00:00:00+08:00"}, "invalid_period", "end must be after start"),
    ({"start": "2027-06-01T00:00:00"}, "invalid_period", "offset"),
    ({"timezone": "Mars/Olympus"}, "invalid_timezone", "Mars/Olympus"),
    ({"timezone": "localtime"}, "invalid_timezone", "localtime"),
    ({"start": "0001-01-01T00:00:00+00:00"}, "invalid_period", "years"),
    ({"end": "9999-12-31T00:00:00+09:00"}, "invalid_period", "years"),
    ({"prizes": [prize(tier_weights={"\u00b2": 2})]}, "unknown_tier", "tier"),
    (
        {"prizes": [prize(base_probability=0.6), prize(id="q", base_probability=0.6)]},
        "probabilities_exceed_one",
        "tier 0",
    ),
    (
        {"prizes": [prize(base_probability=0.4, tier_weights={"4": 3})]},
        "probabilities_exceed_one",
        "tier 4",
    ),
    ({"prizes": [prize(daily_cap=1, guaranteed_daily=2)]}, "invalid_campaign", "guaranteed"),
    ({"prizes": [prize(), prize()]}, "invalid_campaign", "twice"),
    ({"prizes": []}, "invalid_campaign", "prizes"),
    ({"prizes": [prize(kind="car")]}, "invalid_campaign", "kind"),
    ({"prizes": [prize(base_probability=1.5)]}, "invalid_campaign", "base_probability"),
    ({"prizes": [prize(colour="red")]}, "invalid_campaign", "colour"),
    ({"skus": [], "batches": []}, "invalid_campaign", "skus or batches"),
    ({"member_daily_win_limit": 0}, "invalid_campaign", "member_daily_win_limit"),
]


@pytest.mark.parametrize(("changes", "code", "words"), BAD_CAMPAIGNS)
async def test_bad_campaigns_get_a_clear_422_and_change_nothing(
    client: Client, changes: dict[str, object], code: str, words: str
) -> None:
    body = {**campaign(prizes=[prize(base_probability=0.1)]), **changes}
    reply = await client.put("/v1/campaigns/bad", json=body, headers=ADMIN)
    error = (await reply.json())["error"]
    assert reply.status == 422
    assert error["code"] == code
    assert words in error["message"]
    assert (await client.get("/v1/campaigns/bad", headers=ADMIN)).status == 404


async def test_bad_requests_to_the_campaign_and_member_endpoints(client: Client) -> None:
    not_json = await client.put("/v1/campaigns/x", data=b"{", headers=ADMIN)
    no_token = await client.put("/v1/campaigns/x", json=campaign())
    bad_id = await client.put("/v1/campaigns/" + "x" * 65, json=campaign(), headers=ADMIN)
    bad_tier = await client.put("/v1/members/alice", json={"tier": 5}, headers=ADMIN)
    no_tier = await client.put("/v1/members/alice", json={}, headers=ADMIN)
    unknown = await client.get("/v1/campaigns/nope/fairness")

    assert not_json.status == 400
    assert no_token.status == 401
    assert bad_id.status == 422
    assert (await bad_tier.json())["error"]["code"] == "unknown_tier"
    assert no_tier.status == 422
    assert unknown.status == 404


async def test_a_campaign_saved_through_one_worker_is_drawn_by_another(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    one: Client = await aiohttp_client(create_app(settings))
    other: Client = await aiohttp_client(create_app(settings))
    [code] = await codes_of_a_shipped_batch(one, 1)
    await post_scan(other, {"code": "0" * 20})  # the other worker has looked already
    await put_campaign(one, campaign())
    await asyncio.sleep(CAMPAIGNS_MAX_AGE_S * 1.5)
    answer = await post_scan(other, {"code": code, "member_id": "alice"})
    assert answer["prize"] is not None


async def test_a_worker_with_an_old_version_draws_with_the_saved_one(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    one: Client = await aiohttp_client(create_app(settings))
    other: Client = await aiohttp_client(create_app(settings))
    codes = await codes_of_a_shipped_batch(one, 3)
    await put_campaign(one, campaign(prizes=[prize(id="old", base_probability=1.0)]))
    first = await post_scan(other, {"code": codes[0], "member_id": "a"})  # caches version 1

    await put_campaign(one, campaign(prizes=[prize(id="new", base_probability=1.0)]), status=200)
    second = await post_scan(other, {"code": codes[1], "member_id": "b"})
    await put_campaign(one, campaign(skus=["OTHER"]), status=200)
    third = await post_scan(other, {"code": codes[2], "member_id": "c"})

    assert [a["prize"] and a["prize"]["prize_id"] for a in (first, second, third)] == [
        "old",
        "new",
        None,
    ]
