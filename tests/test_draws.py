"""The draw script against a real Redis: odds by tier, budgets and caps, pacing, guarantees,
risk, once per code, retries. The script is driven directly, with fixed seeds and clocks."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from ingest.store.scripts import RedisPyCommands, ScriptRunner
from rewards import store
from rewards.campaigns import Campaign
from rewards.draws import DrawOutcome, DrawStatus, Entrant, LiveCampaign
from rewards.errors import StaleCampaign
from rewards.odds import choose, draw_value, slices

pytestmark = pytest.mark.redis

ZONE = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2027, 6, 1)
TIERS = 5
# chi-square critical values at p = 0.001 by degrees of freedom
CHI2_CRITICAL = {6: 22.458}
_serials = itertools.count(1)


def at(day: int, hour: int, minute: int = 0) -> int:
    moment = datetime(2027, 6, 1 + day, hour, minute, tzinfo=ZONE)
    return int(moment.timestamp() * 1000)


def prize(**fields: object) -> dict[str, object]:
    return {
        "id": "p",
        "kind": "cash",
        "value": 100,
        "total_budget": 10**9,
        "base_probability": 1.0,
        **fields,
    }


def campaign(*prizes: dict[str, object], limit: int = 10**6) -> Campaign:
    document = {
        "name": "test",
        "start": "2027-06-01T00:00:00+08:00",
        "end": "2027-06-30T23:59:59+08:00",
        "timezone": "Asia/Shanghai",
        "skus": ["BEER-500"],
        "member_daily_win_limit": limit,
        "prizes": list(prizes),
    }
    return Campaign.from_json("c", document, TIERS)


class Draws:
    """A saved campaign, drawn through the real script with fixed seeds."""

    def __init__(self, runner: ScriptRunner, live: LiveCampaign) -> None:
        self.runner = runner
        self.live = live

    async def draw(self, entrants: Sequence[Entered], now_ms: int) -> list[DrawOutcome]:
        scans, tiers = [e.scan for e in entrants], [e.tier for e in entrants]
        reply = await self.runner.run(self.live.call(scans, tiers, now_ms, 3600))
        return self.live.outcomes(reply)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def saved(redis: Redis, campaign: Campaign) -> Draws:
    runner = ScriptRunner(RedisPyCommands(redis))
    version = await runner.run(store.save(campaign))
    seeds = {day: day.isoformat().encode() * 2 for day in campaign.days()}
    return Draws(runner, LiveCampaign(campaign, version, seeds, TIERS))


class Entered(NamedTuple):
    scan: Entrant
    tier: int


def entrant(member: str = "", tier: int = 0, risk: int = 0, **changes: Any) -> Entered:
    serial = next(_serials)
    fields: dict[str, Any] = {
        "scan_id": f"scan-{serial}",
        "retry_key": "",
        "member_id": member or f"m{serial}",
        "risk": risk,
        "serial": serial,
        "code": f"CODE{serial}",
        "sku": "BEER-500",
        "batch_id": "b1",
        **changes,
    }
    return Entered(Entrant(**fields), tier)


def won(outcomes: Sequence[DrawOutcome]) -> list[str]:
    return [o.prize.prize_id for o in outcomes if o.prize]


async def test_win_rates_by_tier_match_the_weights(redis: Redis) -> None:
    """200,000 draws: a chi-square test of the wins per tier and prize at p = 0.001; and every
    draw is the one the Python rule computes from its value."""
    draws = await saved(
        redis,
        campaign(
            prize(id="phone", base_probability=0.01, tier_weights={"1": 2, "2": 4}),
            prize(id="red5", base_probability=0.05),
        ),
    )
    counts: Counter[tuple[int, str]] = Counter()
    tiers = (0, 1, 2)
    seed = draws.live.seeds[FIRST_DAY]
    for _ in range(100):
        batch = [entrant(tier=tiers[n % 3]) for n in range(2_000)]
        outcomes = await draws.draw(batch, at(0, 12))
        for e, outcome in zip(batch, outcomes, strict=True):
            counts[e.tier, outcome.prize.prize_id if outcome.prize else ""] += 1
            available = [bool(outcome.available_mask >> i & 1) for i in range(2)]
            expected = choose(
                draw_value(seed, e.scan.scan_id, e.scan.code),
                slices(draws.live.campaign.prizes, e.tier),
                available,
                [False, False],
            )
            assert (expected.prize, expected.guaranteed) == (
                [p.prize_id for p in draws.live.campaign.prizes].index(outcome.prize.prize_id)
                if outcome.prize
                else -1,
                outcome.guaranteed,
            )
    statistic = 0.0
    for tier, phone in zip(tiers, (0.01, 0.02, 0.04), strict=True):
        drawn = sum(counts[tier, p] for p in ("phone", "red5", ""))
        for prize_id, p in (("phone", phone), ("red5", 0.05), ("", 1 - phone - 0.05)):
            expected_count = drawn * p
            statistic += (counts[tier, prize_id] - expected_count) ** 2 / expected_count
    assert statistic < CHI2_CRITICAL[6], counts


async def test_budget_and_daily_cap_hold_under_concurrent_batches(redis_url: str) -> None:
    """Fifty connections draw at once, day after day: 10 a day, 50 in all, never one more."""
    clients = [Redis.from_url(redis_url) for _ in range(10)]
    try:
        setup = await saved(clients[0], campaign(prize(total_budget=50, daily_cap=10)))
        per_client = [Draws(ScriptRunner(RedisPyCommands(c)), setup.live) for c in clients]
        by_day = []
        for day in range(7):
            batches = [
                draws.draw([entrant() for _ in range(20)], at(day, 23, 30))
                for draws in per_client * 5
            ]
            outcomes = [o for batch in await asyncio.gather(*batches) for o in batch]
            by_day.append(len(won(outcomes)))
        awarded = await clients[0].hget(store.campaign_key("c", "awarded"), "p")
    finally:
        for client in clients:
            await client.aclose()
    assert by_day == [10, 10, 10, 10, 10, 0, 0]
    assert awarded == b"50"


async def test_pacing_releases_the_daily_cap_hour_by_hour(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize(daily_cap=24)))
    given = 0
    for hour in range(24):
        given += len(won(await draws.draw([entrant() for _ in range(5)], at(0, hour, 30))))
        assert given == hour + 1  # a certain win each time: only the release limits


async def test_an_hours_unreleased_budget_carries_over(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize(daily_cap=48)))
    at_noon = won(await draws.draw([entrant() for _ in range(40)], at(0, 12)))
    assert len(at_noon) == 26  # hours 0 to 12 release 2 each, none given before


async def test_a_guaranteed_daily_prize_goes_out_every_day_with_eligible_scans(
    redis: Redis,
) -> None:
    phone = prize(id="phone", kind="item", base_probability=0.0, daily_cap=1, guaranteed_daily=1)
    draws = await saved(redis, campaign(phone, prize(id="red5", base_probability=0.2)))
    for day in range(5):
        phones_by_hour = []
        for hour in range(24):
            outcomes = await draws.draw([entrant() for _ in range(3)], at(day, hour, 10))
            phones_by_hour.append(won(outcomes).count("phone"))
        assert phones_by_hour == [0] * 23 + [1]


async def test_the_guarantee_waits_for_an_eligible_member(redis: Redis) -> None:
    phone = prize(
        id="phone", kind="item", base_probability=0.0, daily_cap=1, guaranteed_daily=1, min_tier=2
    )
    draws = await saved(redis, campaign(phone))
    late = at(0, 23, 30)
    plain = await draws.draw([entrant(tier=0), entrant(tier=1)], late)
    gold = await draws.draw([entrant(tier=2), entrant(tier=3)], late)
    assert won(plain) == []
    assert [o.guaranteed for o in gold] == [True, False]
    assert won(gold) == ["phone"]


async def test_risk_3_wins_no_high_value_prize_and_risk_4_nothing(redis: Redis) -> None:
    phone = prize(id="phone", kind="item", base_probability=0.5)
    cash = prize(id="red5", base_probability=0.5)
    draws = await saved(redis, campaign(phone, cash))
    noon = at(0, 12)
    risk_3 = await draws.draw([entrant(risk=3) for _ in range(200)], noon)
    risk_4 = await draws.draw([entrant(risk=4) for _ in range(200)], noon)
    risk_2 = await draws.draw([entrant(risk=2) for _ in range(200)], noon)
    assert set(won(risk_3)) == {"red5"}
    assert won(risk_4) == []
    assert set(won(risk_2)) == {"phone", "red5"}


async def test_a_code_draws_once_and_a_retry_gets_its_outcome_again(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize()))
    first = entrant(retry_key="k1")
    other_scan = first._replace(scan=dataclasses.replace(first.scan, scan_id="x", retry_key="k2"))
    noon = at(0, 12)

    [drawn] = await draws.draw([first], noon)
    [retried] = await draws.draw([first], noon)
    [refused] = await draws.draw([other_scan], noon)

    assert drawn.status is DrawStatus.NEW
    assert retried.status is DrawStatus.RETRIED
    assert (retried.seq, retried.prize) == (drawn.seq, drawn.prize)
    assert refused.status is DrawStatus.ALREADY_DRAWN
    assert refused.prize is None


async def test_the_member_daily_limit_counts_wins_per_local_day(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize(), limit=2))
    today = await draws.draw([entrant(member="alice") for _ in range(4)], at(0, 23))
    tomorrow = await draws.draw([entrant(member="alice") for _ in range(4)], at(1, 0, 5))
    assert len(won(today)) == 2
    assert len(won(tomorrow)) == 2


async def test_a_changed_campaign_refuses_draws_computed_from_the_old_one(
    redis: Redis,
) -> None:
    draws = await saved(redis, campaign(prize()))
    await draws.runner.run(store.save(campaign(prize(base_probability=0.5))))
    with pytest.raises(StaleCampaign):
        await draws.draw([entrant()], at(0, 12))


async def test_points_prizes_credit_the_balance_atomically(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize(kind="points", value=7)))
    outcomes = await draws.draw([entrant(member="alice") for _ in range(3)], at(0, 12))
    assert [o.points_balance for o in outcomes] == [7, 14, 21]
    assert await redis.hget(store.campaign_key("c", "points"), "alice") == b"21"


async def test_a_retry_gets_its_prize_even_after_the_campaign_changed(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize(id="a"), prize(id="b", base_probability=0.0)))
    first = entrant(retry_key="k1")
    [won] = await draws.draw([first], at(0, 12))
    reordered = await saved(redis, campaign(prize(id="b", base_probability=0.0), prize(id="a")))
    [retried] = await reordered.draw([first], at(0, 12))
    assert won.prize is not None
    assert (retried.status, retried.prize) == (DrawStatus.RETRIED, won.prize)


async def test_a_tier_beyond_the_programme_draws_as_its_top_tier(redis: Redis) -> None:
    draws = await saved(redis, campaign(prize(min_tier=TIERS - 1)))
    [outcome] = await draws.draw([entrant(tier=TIERS + 3)], at(0, 12))
    assert won([outcome]) == ["p"]
