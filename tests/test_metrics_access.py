"""``GET /metrics`` needs a token of the metrics role (or an admin's): it shows the prize budgets
and the sinks. A metrics token reads nothing else, and still reads the metrics while Redis is
down, so that ``scanward_redis_up`` can say so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.config import Settings
from ingest.http.app import create_app
from ingest.ops import local_services
from tests.conftest import api_settings
from tests.helpers import ADMIN, ORDER, AiohttpClient

Client = TestClient[Any, Any]


async def _metrics_token(client: Client) -> dict[str, str]:
    reply = await client.post(
        "/v1/tokens", json={"role": "metrics", "name": "prometheus"}, headers=ADMIN
    )
    assert reply.status == 201, await reply.text()
    return {"Authorization": f"Bearer {(await reply.json())['token']}"}


@pytest.mark.redis
async def test_anonymous_clients_get_401(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer sw_not-a-token"}):
        reply = await client.get("/metrics", headers=headers)

        assert reply.status == 401
        assert (await reply.json())["error"]["code"] == "unauthorized"
        assert "scanward_" not in await reply.text()


@pytest.mark.redis
async def test_a_metrics_token_reads_the_metrics_and_nothing_else(client: Client) -> None:
    metrics = await _metrics_token(client)

    reply = await client.get("/metrics", headers=metrics)

    assert reply.status == 200
    assert "scanward_redis_up 1.0" in await reply.text()
    assert (await client.get("/metrics", headers=ADMIN)).status == 200
    assert (await client.post("/v1/batches", json=ORDER, headers=metrics)).status == 403
    assert (await client.get("/v1/distributors", headers=metrics)).status == 403
    assert (await client.get("/v1/tokens", headers=metrics)).status == 403
    assert (await client.get("/v1/batches/b_1", headers=metrics)).status == 403


@pytest.mark.redis
async def test_a_line_token_cannot_read_the_metrics(client: Client) -> None:
    reply = await client.post("/v1/tokens", json={"role": "line", "name": "l"}, headers=ADMIN)
    line = {"Authorization": f"Bearer {(await reply.json())['token']}"}

    reply = await client.get("/metrics", headers=line)

    assert reply.status == 403
    assert (await reply.json())["error"]["code"] == "forbidden"


async def test_a_metrics_token_still_reads_them_while_redis_is_down(
    aiohttp_client: AiohttpClient, keyring_path: Path, tmp_path: Path
) -> None:
    redis = local_services.start_redis(tmp_path / "own")
    try:
        settings: Settings = api_settings(redis.url, keyring_path, tmp_path)
        client = await aiohttp_client(create_app(settings))
        metrics = await _metrics_token(client)
        assert (await client.get("/metrics", headers=metrics)).status == 200
    finally:
        redis.stop()

    reply = await client.get("/metrics", headers=metrics)

    assert reply.status == 200
    assert "scanward_redis_up 0.0" in await reply.text()
    assert (await client.get("/metrics")).status == 401
