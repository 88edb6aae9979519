"""Budget safety under real concurrency: thousands of first scans at once, spread over several
server processes, against a campaign with a budget of 50 and a daily cap of 10."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingest.config import Settings
from ingest.ops.local_services import free_port
from tests.conftest import serve_environment
from tests.helpers import (
    ADMIN,
    DISTRIBUTOR_BODY,
    DISTRIBUTOR_URL,
    ORDER,
)
from tests.sink_support import query, wait_until
from tests.test_api_campaigns import campaign, prize, zone_where_it_is
from tests.test_serve_workers import _wait_for_workers

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

WORKERS = 3
SCANS = 3_000


@pytest.fixture
def server(sunk_settings: Settings, keyring_path: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    assert sunk_settings.redis_url is not None
    env = serve_environment(sunk_settings.redis_url, keyring_path, tmp_path, port)
    command = [sys.executable, "-m", "ingest.cli", "serve", "--workers", str(WORKERS)]
    process = subprocess.Popen(command, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_workers(url, process, WORKERS)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


async def _scan_everything(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as session:

        async def call(method: str, path: str, body: object, status: int) -> Any:
            async with session.request(method, url + path, json=body, headers=ADMIN) as reply:
                assert reply.status == status, await reply.text()
                return await reply.json() if "json" in reply.content_type else await reply.text()

        late_evening = zone_where_it_is(22)  # the whole daily cap is released by then
        race = prize(total_budget=50, daily_cap=10, base_probability=1.0)
        body = campaign(prizes=[race], timezone=late_evening)
        await call("PUT", "/v1/campaigns/race", body, 201)
        batch = await call("POST", "/v1/batches", {**ORDER, "quantity": SCANS}, 201)
        await call("PUT", DISTRIBUTOR_URL, DISTRIBUTOR_BODY, 201)
        ship = {"distributor_id": "CN", "batch_id": batch["batch_id"]}
        await call("POST", "/v1/shipments", ship, 201)
        codes = (await call("GET", f"/v1/batches/{batch['batch_id']}/codes", None, 200)).split()

        async def scan(code: str, member: str) -> dict[str, Any]:
            answer: dict[str, Any] = await call(
                "POST", "/v1/scans", {"code": code, "member_id": member}, 200
            )
            return answer

        # every code twice at once, by two members: a code may win once
        scans = [scan(code, f"{who}{n}") for n, code in enumerate(codes) for who in "ab"]
        answers: list[dict[str, Any]] = await asyncio.gather(*scans)
        answers.append(await call("GET", "/v1/campaigns/race", None, 200))
        return answers


def test_no_cap_is_exceeded_and_every_award_is_recorded_once(
    server: str, sunk_settings: Settings
) -> None:
    *answers, shown = asyncio.run(_scan_everything(server))
    url = sunk_settings.clickhouse_url
    assert url is not None
    prizes = [a["prize"] for a in answers if a["prize"]]
    [budget] = shown["budgets"]

    assert len({a["scan_id"] for a in answers}) == 2 * SCANS
    assert len({a["product"]["code"] for a in answers if a["prize"]}) == len(prizes)
    assert len(prizes) == budget["awarded"] == budget["released_today"] == 10
    wait_until(lambda: query(url, "SELECT count() FROM draws") == [(SCANS,)], 30, "every draw sunk")
    assert query(url, "SELECT count(), uniqExact(code), uniqExact(seq) FROM awards") == [
        (len(prizes),) * 3
    ]
