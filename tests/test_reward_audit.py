"""The provably fair draws, end to end: scans through the API draw prizes, the sink writes the
draw log to ClickHouse, and ``scanward rewards audit`` recomputes every draw from the seed;
a tampered award row is reported."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient

from ingest.cli import main
from ingest.config import Settings
from rewards.store import campaign_key
from tests.helpers import ADMIN, batch_codes, order_shipped_batch, post_scan
from tests.sink_support import query, wait_until
from tests.test_api_campaigns import campaign, prize, put_campaign

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

Client = TestClient[Any, Any]
SHANGHAI = timezone(timedelta(hours=8))
DRAWS = 120


async def _draw_a_day(client: Client) -> None:
    prizes = [
        prize(id="phone", kind="item", base_probability=0.01, daily_cap=1, guaranteed_daily=1),
        prize(id="red5", kind="cash", value=500, base_probability=0.2, daily_cap=30),
        prize(id="pts", kind="points", base_probability=0.3, tier_weights={"2": 2}),
    ]
    await put_campaign(client, campaign(prizes=prizes, member_daily_win_limit=2))
    for member, tier in (("m1", 1), ("m2", 2)):
        await client.put(f"/v1/members/{member}", json={"tier": tier}, headers=ADMIN)
    batch = await order_shipped_batch(client)
    codes = await batch_codes(client, batch["batch_id"], DRAWS)
    scans = [
        post_scan(client, {"code": code, "member_id": f"m{n % 7}", "scan_id": f"s{n}"})
        for n, code in enumerate(codes)
    ]
    answers = await asyncio.gather(*scans)
    assert any(a["prize"] for a in answers)


def _audit(settings: Settings, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    assert settings.redis_url is not None
    assert settings.clickhouse_url is not None
    monkeypatch.setenv("SCANWARD_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SCANWARD_CLICKHOUSE_URL", settings.clickhouse_url)
    today = datetime.now(SHANGHAI).date().isoformat()
    return main(["rewards", "audit", "--campaign", "summer", "--day", today, *extra])


@pytest.fixture
async def drawn(app_client: Client, sunk_settings: Settings) -> str:
    """A day's draws made through the API and sunk; the ClickHouse URL."""
    url = sunk_settings.clickhouse_url
    assert url is not None
    await _draw_a_day(app_client)
    wait_until(lambda: query(url, "SELECT count() FROM draws")[0][0] == DRAWS, 20, "draws sunk")
    return url


async def test_every_draw_recomputes_from_the_seed_and_tampering_is_reported(
    drawn: str,
    sunk_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = drawn
    assert _audit(sunk_settings, monkeypatch) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["draws"], report["mismatch_count"], report["ok"]) == (DRAWS, 0, True)
    assert report["awards"] == query(url, "SELECT count() FROM awards")[0][0] > 0

    [(seq,)] = query(url, "SELECT min(seq) FROM draws WHERE won = 0")
    query(url, f"ALTER TABLE draws UPDATE won = 1, prize_id = 'red5' WHERE seq = {seq}")
    wait_until(
        lambda: query(url, "SELECT count() FROM system.mutations WHERE NOT is_done") == [(0,)],
        20,
        "the tampering mutation",
    )

    assert _audit(sunk_settings, monkeypatch) == 1
    tampered = orjson.loads(capsys.readouterr().out)
    assert tampered["mismatches"] == [
        {
            "seq": seq,
            "scan_id": tampered["mismatches"][0]["scan_id"],
            "field": "prize",
            "recorded": ["red5", False],
            "expected": ["", False],
        }
    ]


async def test_an_auditor_holding_another_seed_sees_every_draw_differ(
    drawn: str,
    sunk_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sunk_settings.redis_url is not None
    stored = redis.Redis.from_url(sunk_settings.redis_url)
    today = datetime.now(SHANGHAI).date().isoformat()
    seed = stored.hget(campaign_key("summer", "seeds"), today)
    stored.close()
    assert isinstance(seed, bytes)

    assert _audit(sunk_settings, monkeypatch, "--seed", seed.decode()) == 0
    capsys.readouterr()
    assert _audit(sunk_settings, monkeypatch, "--seed", "00" * 32) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["mismatch_count"] >= DRAWS
