"""Scans answered over HTTP, sunk into ClickHouse by a running sink: one row per answered scan."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.config import Settings
from tests.helpers import batch_codes, order_shipped_batch, post_scan
from tests.sink_support import query, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]


def _rows(settings: Settings, sql: str) -> list[Any]:
    assert settings.clickhouse_url is not None
    return query(settings.clickhouse_url, sql)


async def test_concurrent_scans_of_one_code_are_one_row_each(
    app_client: TestClient[Any, Any], sunk_settings: Settings
) -> None:
    batch = await order_shipped_batch(app_client)
    [code] = await batch_codes(app_client, batch["batch_id"], limit=1)
    answers = await asyncio.gather(
        *(post_scan(app_client, {"code": code, "device_id": f"device-{i}"}) for i in range(200))
    )
    assert sum(a["first_scan"] for a in answers) == 1
    wait_until(
        lambda: _rows(sunk_settings, "SELECT count() FROM scans") == [(200,)], 20, "200 rows"
    )
    rows = _rows(
        sunk_settings,
        "SELECT scan_id, first_scan, scan_count, device_id FROM scans ORDER BY scan_count",
    )
    by_answer = {a["scan_id"]: (int(a["first_scan"]), a["scan_count"]) for a in answers}
    assert {scan_id: (first, count) for scan_id, first, count, _ in rows} == by_answer
    assert [count for _, _, count, _ in rows] == list(range(1, 201))
    assert len({device for *_, device in rows}) == 200


async def test_a_retried_scan_is_one_row(
    app_client: TestClient[Any, Any], sunk_settings: Settings
) -> None:
    batch = await order_shipped_batch(app_client)
    [code] = await batch_codes(app_client, batch["batch_id"], limit=1)
    body = {"code": code, "scan_id": "retried", "lat": 31.2, "lon": 121.4}
    answers = [await post_scan(app_client, body) for _ in range(3)]
    assert answers[1:] == answers[:1] * 2
    counterfeit = {"code": "not-ours", "scan_id": "fake-retried"}
    assert await post_scan(app_client, counterfeit) == await post_scan(app_client, counterfeit)
    wait_until(lambda: _rows(sunk_settings, "SELECT count() FROM scans") == [(2,)], 20, "2 rows")
    assert _rows(sunk_settings, "SELECT scan_id, verdict FROM scans ORDER BY scan_id") == [
        ("fake-retried", "counterfeit"),
        ("retried", "genuine"),
    ]
